"""The hybrid model of the ViT paper (Dosovitskiy et al., 2021, Sec. 3.1 "Hybrid Architecture"):
a CNN's feature map, not the raw image, is cut into patches, here 1x1, so every position of the
map becomes one token.

image (B, C, H, W) -> ResNet stem + the first ``stage`` stages -> feature map (B, C_s, h, w)
-> 1x1 patch embedding -> h*w tokens (B, h*w, D) -> [CLS] + position embedding -> transformer
blocks -> head

With the small 3x3 stem on 28x28 images the stages give maps of 28x28 (stage 1), 14x14 (stage 2),
7x7 (stage 3) and 4x4 (stage 4): 784, 196, 49 or 16 tokens. The transformer half is exactly a
:class:`~vitlab.models.vit.ViT` whose "image" is the feature map and whose patch size is 1, so
everything that works on a ViT (attention recorder, fused/explicit attention) works here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ResNetConfig, ViTConfig, check_fields, register_config, register_preset, replace_config
from ..errors import ConfigError, InputShapeError
from .resnet import ResNet
from .vit import ViT


@dataclass(frozen=True)
class HybridConfig:
    """A ResNet trunk whose ``stage``-th feature map becomes the tokens of a ViT (1x1 patches)."""

    img_size: int = 28  # input side in pixels
    in_chans: int = 1  # input channels
    num_classes: int = 10  # classifier outputs; 0 = no head
    cnn_width: int = 16  # channels of the first ResNet stage; stage s has cnn_width * 2**(s-1)
    cnn_blocks: tuple = (2, 2, 2, 2)  # basic blocks per ResNet stage (ResNet-18 layout); only the first `stage` are built
    stage: int = 3  # the stage whose output feeds the ViT (1 = first); later stages are not built
    small_stem: bool = True  # 3x3 stride-1 stem (28x28 images) or the ImageNet 7x7/2 + max-pool stem
    dim: int = 64  # token width D of the transformer
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads per block
    mlp_ratio: float = 2.0  # MLP hidden width = mlp_ratio * dim
    pos_embed: str = "learned"  # 'learned', 'sincos2d' or 'none', over the feature-map grid
    pool: str = "cls"  # 'cls' or 'gap'
    qkv_bias: bool = True  # bias in the query/key/value projection
    norm_eps: float = 1e-6  # LayerNorm epsilon
    drop_rate: float = 0.0  # dropout after the position embedding and in MLP/projection outputs
    attn_drop_rate: float = 0.0  # dropout on the attention weights
    drop_path_rate: float = 0.0  # stochastic depth of the transformer blocks

    def __post_init__(self) -> None:
        object.__setattr__(self, "cnn_blocks", tuple(self.cnn_blocks))  # JSON gives lists back
        check_fields(self)
        if not isinstance(self.stage, int) or isinstance(self.stage, bool) or self.stage < 1:
            raise ConfigError(f"HybridConfig.stage must be a positive int (1 = the first ResNet stage), "
                              f"got {self.stage!r}.")
        if self.stage > len(self.cnn_blocks):
            raise ConfigError(
                f"HybridConfig.stage={self.stage} but cnn_blocks={self.cnn_blocks} has only "
                f"{len(self.cnn_blocks)} stages; give cnn_blocks at least {self.stage} entries "
                f"(e.g. cnn_blocks={(2,) * self.stage}) or choose stage <= {len(self.cnn_blocks)}.")
        self.cnn_config  # noqa: B018 -- validate both halves now, with their own messages
        self.vit_config  # noqa: B018

    @property
    def grid_size(self) -> int:
        """Side of the feature map that feeds the ViT: each stage after the first halves it (rounding up)."""
        side = self.img_size
        if not self.small_stem:
            side = (side + 1) // 2  # 7x7 conv, stride 2
            side = (side + 1) // 2  # 3x3 max-pool, stride 2
        for _ in range(self.stage - 1):
            side = (side + 1) // 2  # 3x3 conv, stride 2, padding 1
        return side

    @property
    def num_patches(self) -> int:
        """Tokens from the feature map (1x1 patches): grid_size ** 2."""
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "cls" else 0

    @property
    def feature_channels(self) -> int:
        """Channels of the feature map: cnn_width * 2 ** (stage - 1)."""
        return self.cnn_width * 2 ** (self.stage - 1)

    @property
    def cnn_config(self) -> ResNetConfig:
        """The ResNet trunk: the first ``stage`` stages, no head."""
        return ResNetConfig(img_size=self.img_size, in_chans=self.in_chans, num_classes=0, width=self.cnn_width,
                            blocks=self.cnn_blocks[:self.stage], small_stem=self.small_stem)

    @property
    def vit_config(self) -> ViTConfig:
        """The transformer half: a ViT over the (grid_size x grid_size x feature_channels) map, patch 1."""
        return ViTConfig(img_size=self.grid_size, patch_size=1, in_chans=self.feature_channels,
                         num_classes=self.num_classes, dim=self.dim, depth=self.depth, heads=self.heads,
                         mlp_ratio=self.mlp_ratio, pos_embed=self.pos_embed, pool=self.pool,
                         qkv_bias=self.qkv_bias, norm_eps=self.norm_eps, drop_rate=self.drop_rate,
                         attn_drop_rate=self.attn_drop_rate, drop_path_rate=self.drop_path_rate)

    def replace(self, **changes: Any) -> "HybridConfig":
        """A copy with some fields changed (validated again)."""
        return replace_config(self, **changes)


class HybridViT(nn.Module):
    """ResNet stages -> feature map -> ViT with 1x1 patches (the paper's "R50+ViT" hybrids, small).

    Attributes:
        backbone: a :class:`~vitlab.models.resnet.ResNet` with the first ``cfg.stage`` stages and no head.
        vit: a :class:`~vitlab.models.vit.ViT` over the feature map (``vit.patch_embed`` is the 1x1
            projection, ``vit.blocks`` the transformer).

    Args:
        cfg: the model's configuration.
    """

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        if not isinstance(cfg, HybridConfig):
            raise ConfigError(f"HybridViT needs a HybridConfig, got {type(cfg).__name__}; "
                              "use vitlab.build_model(cfg) for any vitlab config.")
        self.cfg = cfg
        self.backbone = ResNet(cfg.cnn_config)
        self.vit = ViT(cfg.vit_config)

    @property
    def blocks(self) -> nn.Sequential:
        """The transformer blocks (so attention tools that look for ``model.blocks`` find them)."""
        return self.vit.blocks

    @property
    def fused_attn(self) -> bool:
        return self.vit.fused_attn

    @fused_attn.setter
    def fused_attn(self, value: bool) -> None:
        self.vit.fused_attn = value

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputShapeError unless x is (B, in_chans, img_size, img_size)."""
        c = self.cfg
        if x.ndim != 4 or x.shape[1] != c.in_chans or tuple(x.shape[2:]) != (c.img_size, c.img_size):
            raise InputShapeError(
                f"HybridViT was built for (B, {c.in_chans}, {c.img_size}, {c.img_size}) images, got shape "
                f"{tuple(x.shape)}. Resize or convert the images, or build the model with matching "
                "img_size / in_chans.")

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the chosen stage's feature map (B, feature_channels, grid, grid)."""
        self.check_input(x)
        return self.backbone.forward_features(x)  # (B, C_s, h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + grid**2, D) after the last transformer block."""
        return self.vit.forward_features(self.feature_map(x))  # (B, prefix + h*w, D)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, prefix + N, D) -> logits (B, num_classes), or pooled (B, D) if pre_logits."""
        return self.vit.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Plug into presets, build_model, checkpoints and `vitlab train` (vitlab.models must import this module
# after defining register_model, i.e. at the bottom of vitlab/models/__init__.py).
from . import register_model  # noqa: E402

register_config("hybrid", HybridConfig)
register_model(HybridConfig, HybridViT)
# The default small hybrid for 28x28 grey images: ResNet stages 1-3 at width 16 (a 7x7x64 map: 49
# tokens, as many as fmnist-vit's patch-4 tokens), then 4 transformer blocks of width 64.
register_preset("fmnist-hybrid", HybridConfig())

__all__ = ["HybridConfig", "HybridViT"]
