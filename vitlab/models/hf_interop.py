"""Hugging Face transformers' ViT as a vitlab ViT: :func:`from_hf` copies the weights so the logits agree.

transformers is an optional dependency (``pip install 'vitlab[hf]'``; ``make test`` installs it). Recording
the attention of transformers' models (ViT, DeiT, DINOv2) is done by :func:`vitlab.record_attention`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ViTConfig
from ..errors import ConfigError
from .vit import ViT

__all__ = ["from_hf", "config_from_hf"]

INSTALL_HINT = "transformers is not installed: pip install 'vitlab[hf]' (or pip install transformers)."


def _transformers():
    try:
        import transformers
    except ImportError as err:  # one line that says what to do
        raise ImportError(INSTALL_HINT) from err
    return transformers


def _parts(model: nn.Module):
    """(ViTModel, classifier or None) of a ViTModel or ViTForImageClassification."""
    tf = _transformers()
    if isinstance(model, tf.ViTForImageClassification):
        return model.vit, model.classifier
    if isinstance(model, tf.ViTModel):
        return model, None
    raise ConfigError(f"from_hf converts transformers' ViTModel and ViTForImageClassification, not "
                      f"{type(model).__name__}; record_attention works on it as it is.")


def config_from_hf(model: nn.Module) -> ViTConfig:
    """The ViTConfig of a transformers ViT (ConfigError when vitlab's ViT cannot compute the same thing)."""
    vit, classifier = _parts(model)
    c = vit.config
    size = c.image_size if isinstance(c.image_size, int) else tuple(c.image_size)
    patch = c.patch_size if isinstance(c.patch_size, int) else tuple(c.patch_size)
    unsupported = []
    if not isinstance(size, int) or not isinstance(patch, int):
        unsupported.append(f"a non-square image or patch ({size}, {patch})")
    if c.hidden_act != "gelu":
        unsupported.append(f"activation {c.hidden_act!r} (vitlab's MLP uses exact GELU)")
    if unsupported:
        raise ConfigError(f"This transformers ViT uses {', '.join(unsupported)}; it cannot be converted exactly.")
    return ViTConfig(img_size=size, patch_size=patch, in_chans=c.num_channels,
                     num_classes=0 if classifier is None or isinstance(classifier, nn.Identity) else classifier.out_features,
                     dim=c.hidden_size, depth=c.num_hidden_layers, heads=c.num_attention_heads,
                     mlp_ratio=c.intermediate_size / c.hidden_size, qkv_bias=bool(c.qkv_bias),
                     norm_eps=c.layer_norm_eps, pool="cls", pos_embed="learned")


def from_hf(model: nn.Module) -> ViT:
    """A vitlab ViT with the weights (and the logits) of a transformers ViT.

    Args:
        model: ``transformers.ViTForImageClassification`` (or ``ViTModel``, converted without a head).
    Returns:
        ViT in eval mode; its logits equal the transformers model's (fp32, within 1e-5).
    Raises:
        ImportError: transformers is not installed (one line saying how to install it).
        ConfigError: another model class, or a setting vitlab's ViT does not have.
    """
    vit, classifier = _parts(model)
    cfg = config_from_hf(model)
    hf = {k: v.detach() for k, v in vit.state_dict().items()}
    emb = "embeddings."
    state = {"cls_token": hf[emb + "cls_token"], "pos_embed": hf[emb + "position_embeddings"],
             "patch_embed.proj.weight": hf[emb + "patch_embeddings.projection.weight"],
             "patch_embed.proj.bias": hf[emb + "patch_embeddings.projection.bias"],
             "norm.weight": hf["layernorm.weight"], "norm.bias": hf["layernorm.bias"]}
    for i in range(cfg.depth):
        src, dst = f"layers.{i}.", f"blocks.{i}."
        attn = src + "attention."
        for part in ("weight", "bias"):
            state[dst + f"norm1.{part}"] = hf[src + f"layernorm_before.{part}"]
            state[dst + f"norm2.{part}"] = hf[src + f"layernorm_after.{part}"]
            state[dst + f"attn.proj.{part}"] = hf[attn + f"o_proj.{part}"]
            state[dst + f"mlp.fc1.{part}"] = hf[src + f"mlp.fc1.{part}"]
            state[dst + f"mlp.fc2.{part}"] = hf[src + f"mlp.fc2.{part}"]
        state[dst + "attn.qkv.weight"] = torch.cat([hf[attn + f"{p}_proj.weight"] for p in "qkv"])
        if cfg.qkv_bias:
            state[dst + "attn.qkv.bias"] = torch.cat([hf[attn + f"{p}_proj.bias"] for p in "qkv"])
    if cfg.num_classes:
        state["head.weight"], state["head.bias"] = classifier.weight.detach(), classifier.bias.detach()
    out = ViT(cfg)
    missing, unexpected = out.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"transformers -> vitlab conversion left missing={missing}, unexpected={unexpected}.")
    return out.eval()
