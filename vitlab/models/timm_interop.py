"""Convert weights between vitlab's ViT and timm's ``VisionTransformer``, and fetch pretrained ones.

vitlab's parameter names follow timm's, so conversion is a rename plus a check that the two
architectures really are the same (no register tokens, no layer scale, no pre-norm ...).
"""

from __future__ import annotations

import functools

from torch import nn

from ..config import ViTConfig
from ..errors import ConfigError, PretrainedUnavailableError
from .vit import ViT


def _timm_vit_class():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def _is_identity(module) -> bool:
    return module is None or isinstance(module, nn.Identity)


def config_from_timm(model: nn.Module) -> ViTConfig:
    """The ViTConfig that describes a timm VisionTransformer (raises ConfigError if none does)."""
    VisionTransformer = _timm_vit_class()
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"from_timm expects a timm VisionTransformer, got {type(model).__name__}.")
    pe = model.patch_embed
    img = pe.img_size
    patch = pe.patch_size
    if img[0] != img[1] or patch[0] != patch[1]:
        raise ConfigError(f"vitlab's ViT is square; this timm model has img_size={img}, patch_size={patch}.")
    unsupported = []
    if getattr(model, "num_reg_tokens", 0):
        unsupported.append("register tokens")
    if getattr(model, "no_embed_class", False):
        unsupported.append("no_embed_class")
    if getattr(model, "dynamic_img_size", False):
        unsupported.append("dynamic_img_size")
    if not _is_identity(getattr(model, "norm_pre", None)):
        unsupported.append("a pre-norm (norm_pre, as in CLIP)")
    if not _is_identity(getattr(pe, "norm", None)):
        unsupported.append("a norm in the patch embedding")
    if model.global_pool not in ("token", "avg"):
        unsupported.append(f"global_pool={model.global_pool!r}")
    if getattr(model, "attn_pool", None) is not None:
        unsupported.append("attention pooling")
    b0 = model.blocks[0]
    for name in ("ls1", "ls2", "drop_path1"):
        if not _is_identity(getattr(b0, name, None)) and name.startswith("ls"):
            unsupported.append("layer scale")
            break
    if not (_is_identity(getattr(b0.attn, "q_norm", None)) and _is_identity(getattr(b0.attn, "k_norm", None))):
        unsupported.append("q/k norm")
    if getattr(b0.attn, "gate", None) is not None:
        unsupported.append("gated attention")
    if not _is_identity(getattr(b0.attn, "norm", None)):
        unsupported.append("a norm inside attention")
    if type(b0).__name__ != "Block" or type(b0.mlp).__name__ != "Mlp":
        unsupported.append(f"block type {type(b0).__name__}/{type(b0.mlp).__name__}")
    if model.global_pool == "token" and not model.has_class_token:
        unsupported.append("token pooling without a class token")
    if model.global_pool == "avg" and model.has_class_token:
        unsupported.append("average pooling with a class token")
    if model.global_pool == "token" and not _is_identity(model.fc_norm):
        unsupported.append("fc_norm with token pooling")
    if model.global_pool == "avg" and not _is_identity(model.norm):
        unsupported.append("a final norm before average pooling")
    if unsupported:
        raise ConfigError(f"This timm ViT uses {', '.join(unsupported)}, which vitlab's ViT does not have; "
                          "it cannot be converted exactly.")
    norm = model.norm if model.global_pool == "token" else model.fc_norm
    dim = model.embed_dim
    return ViTConfig(
        img_size=img[0], patch_size=patch[0], in_chans=pe.proj.in_channels,
        num_classes=model.num_classes, dim=dim, depth=len(model.blocks), heads=b0.attn.num_heads,
        mlp_ratio=b0.mlp.fc1.out_features / dim,
        pos_embed="learned" if model.pos_embed is not None else "none",
        pool="cls" if model.global_pool == "token" else "gap",
        qkv_bias=b0.attn.qkv.bias is not None, norm_eps=norm.eps,
    )


def from_timm(model: nn.Module) -> ViT:
    """A vitlab ViT with the same weights (and the same outputs) as a timm VisionTransformer.

    Args:
        model: e.g. ``timm.create_model('vit_tiny_patch16_224')``.
    Returns:
        ViT in eval mode whose logits equal the timm model's (fp32, to ~1e-6).
    """
    cfg = config_from_timm(model)
    vit = ViT(cfg)
    state = {}
    for key, value in model.state_dict().items():
        if cfg.pool == "gap" and key.startswith("fc_norm."):
            key = "norm." + key[len("fc_norm."):]
        state[key] = value
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"timm -> vitlab conversion left missing={missing}, unexpected={unexpected}.")
    return vit.eval()


def to_timm(vit: ViT) -> nn.Module:
    """A timm VisionTransformer with the same weights (and outputs) as a vitlab ViT.

    A fixed sin-cos position embedding becomes timm's (learnable) ``pos_embed`` holding the same values.
    """
    if not isinstance(vit, ViT):
        raise ConfigError(f"to_timm expects a vitlab ViT, got {type(vit).__name__}.")
    cfg = vit.cfg
    if cfg.pos_embed == "learned2d":
        raise ConfigError(
            "to_timm cannot convert pos_embed='learned2d': timm's VisionTransformer has no factorised "
            "(row + column) position embedding. Train with pos_embed='learned' or 'sincos2d' to export "
            "to timm; vit.pos_embed_table() gives the equivalent 1-D table if you need its values.")
    VisionTransformer = _timm_vit_class()
    model = VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
        num_classes=cfg.num_classes, global_pool="token" if cfg.pool == "cls" else "avg",
        embed_dim=cfg.dim, depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias, class_token=cfg.pool == "cls",
        pos_embed="none" if cfg.pos_embed == "none" else "learn",
        norm_layer=functools.partial(nn.LayerNorm, eps=cfg.norm_eps),
    )
    state = {}
    for key, value in vit.state_dict().items():
        if cfg.pool == "gap" and key.startswith("norm."):
            key = "fc_norm." + key[len("norm."):]
        state[key] = value.clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"vitlab -> timm conversion left missing={missing}, unexpected={unexpected}.")
    return model.eval()


def load_pretrained(name: str, **timm_kwargs) -> ViT:
    """timm's pretrained weights for ``name`` (e.g. 'vit_base_patch16_224.augreg2_in21k_ft_in1k'),
    as a vitlab ViT.

    Needs the Hugging Face hub (or timm's local cache) the first time. Offline without a cache it
    raises PretrainedUnavailableError saying so; nothing else in vitlab downloads anything.
    """
    import timm

    base = name.split(".")[0]
    if not timm.list_models(base):
        raise ConfigError(f"timm has no model called {name!r}; see timm.list_models('vit_*').")
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as err:  # offline, hub refused, no cache: timm/huggingface raise many kinds
        raise PretrainedUnavailableError(
            f"Could not get timm's pretrained weights for {name!r}: {type(err).__name__}: {err}. "
            "They come from the Hugging Face hub on first use and are cached after; this machine "
            "seems offline (or HF_HUB_OFFLINE=1 is set) and has no cached copy. Use a vitlab "
            "checkpoint (data/checkpoints/) or an untrained model instead.") from err
    return from_timm(model)
