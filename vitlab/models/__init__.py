"""Models: the ViT, the CNN baseline, and conversion to and from timm."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig, ResNetConfig, ViTConfig, get_preset
from ..errors import ConfigError
from .resnet import ResNet
from .vit import ViT


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
    if isinstance(cfg, ViTConfig):
        return ViT(cfg)
    if isinstance(cfg, ResNetConfig):
        return ResNet(cfg)
    raise ConfigError(f"Cannot build a model from {type(cfg).__name__}; pass a vitlab config or preset name.")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["ViT", "ResNet", "build_model", "count_parameters"]
