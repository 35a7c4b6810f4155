"""Models: the ViT, the CNN baseline, and conversion to and from timm."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig, ResNetConfig, ViTConfig, get_preset
from ..errors import ConfigError
from .resnet import ResNet
from .vit import ViT


# config class -> model class; extended by register_model.
MODEL_CLASSES: dict[type, type] = {ViTConfig: ViT, ResNetConfig: ResNet}


def register_model(cfg_cls: type, model_cls: type) -> None:
    """Let :func:`build_model` (and so ``load_checkpoint`` and ``vitlab train``) build ``model_cls``
    from a ``cfg_cls`` config. Pair it with :func:`vitlab.config.register_config`."""
    MODEL_CLASSES[cfg_cls] = model_cls


def build_model(cfg: "ModelConfig | str", **overrides) -> nn.Module:
    """Build the model a config (or a preset name) describes.

    Args:
        cfg: a ViTConfig / ResNetConfig, or a preset name such as ``'fmnist-vit'``.
        **overrides: config fields to change (with a preset name).
    """
    if isinstance(cfg, str):
        cfg = get_preset(cfg, **overrides)
    elif overrides:
        cfg = cfg.replace(**overrides)
    model_cls = MODEL_CLASSES.get(type(cfg))
    if model_cls is not None:
        return model_cls(cfg)
    raise ConfigError(f"Cannot build a model from {type(cfg).__name__}; pass a vitlab config or preset name.")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ViT", "ResNet", "build_model", "count_parameters", "register_model"]

# Model families outside the core register their configs, presets and classes when imported.
from . import clip, hybrid, mae, swin, t2t  # noqa: E402,F401  (after register_model: they call it)
