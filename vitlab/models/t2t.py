"""Tokens-to-Token ViT (Yuan et al., ICCV 2021), built from the ViT step by step.

A ViT cuts the image into hard, non-overlapping patches: a pixel belongs to one token, and the
local structure inside a patch (edges, lines) is flattened away before any attention sees it.
T2T-ViT replaces that one cut with a *Tokens-to-Token module* that shrinks the token grid
gradually, with overlapping windows:

image (B, C, H, W)
-> soft split 0: ``nn.Unfold(k0, stride s0, padding p0)`` -> (B, L0, C*k0^2)   overlapping patches
-> [token transformer -> re-structurise to a (B, token_dim, g, g) grid -> soft split i] per step
-> linear projection -> (B, N, D)                                               N = last grid^2
-> [CLS] + position embedding -> ViT blocks -> norm -> head -> logits (B, num_classes)

The backbone after the T2T module is exactly the ViT's (``vitlab.layers.Block``).
Shapes: B batch, L tokens at a step, N tokens into the backbone, D width, g grid side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import (POOLS, check_fields, check_positive_ints, check_rates, register_config, register_preset,
                      replace_config)
from ..errors import ConfigError, InputShapeError
from ..layers import MLP, SoftmaxAttention, attend_heads
from .vit import ViT, build_encoder

T2T_POS_EMBEDS = ("learned", "sincos2d", "none")


def soft_split_grid_size(grid_size: int, kernel: int, stride: int, padding: int) -> int:
    """Side of the token grid after one soft split of a ``grid_size`` x ``grid_size`` input.

    The usual convolution arithmetic: ``(grid_size + 2 * padding - kernel) // stride + 1``.

    Raises:
        ConfigError: the kernel does not fit, or the windows leave the last pixels uncovered.
    """
    if kernel < 1 or stride < 1 or padding < 0:
        raise ConfigError(f"soft split needs kernel >= 1, stride >= 1, padding >= 0; got "
                          f"kernel={kernel}, stride={stride}, padding={padding}.")
    if padding >= kernel:
        raise ConfigError(f"soft split padding={padding} must be smaller than kernel={kernel}, or "
                          "some windows would hold nothing but padding.")
    span = grid_size + 2 * padding
    if kernel > span:
        raise ConfigError(f"soft split kernel={kernel} is larger than the padded {span}x{span} grid; "
                          "use a smaller kernel or more padding.")
    out = (span - kernel) // stride + 1
    covered = (out - 1) * stride + kernel  # padded columns the windows reach
    if covered < padding + grid_size:
        raise ConfigError(
            f"soft split (kernel={kernel}, stride={stride}, padding={padding}) on a {grid_size}x{grid_size} "
            f"grid leaves the last {padding + grid_size - covered} row(s)/column(s) outside every window; "
            "increase the padding or the kernel, or change the stride.")
    return out


@dataclass(frozen=True)
class T2TConfig:
    """A Tokens-to-Token ViT: a T2T module (soft splits + token transformers), then a ViT backbone."""

    img_size: int = 28  # side of the square input image, in pixels
    in_chans: int = 1  # input channels
    num_classes: int = 10  # classifier outputs; 0 = no head
    t2t_kernels: tuple = (7, 3)  # soft-split kernel per step (the paper, at 224 px: 7, 3, 3)
    t2t_strides: tuple = (2, 2)  # soft-split stride per step; each stride shrinks the grid (paper: 4, 2, 2)
    t2t_paddings: tuple = (3, 1)  # soft-split zero padding per step (paper: 2, 1, 1)
    token_dim: int = 32  # width of the token transformers inside the T2T module (paper: 64)
    token_heads: int = 1  # heads of a token transformer (paper: 1)
    token_mlp_ratio: float = 1.0  # token transformer MLP hidden width / token_dim (paper: 1)
    dim: int = 64  # backbone token width D
    depth: int = 5  # backbone transformer blocks
    heads: int = 4  # backbone attention heads; dim must be a multiple of it
    mlp_ratio: float = 2.0  # backbone MLP hidden width / dim
    pos_embed: str = "learned"  # 'learned' (as vitlab's ViT), 'sincos2d' (fixed, like the paper's sinusoid), 'none'
    pool: str = "cls"  # 'cls' or 'gap', as in ViTConfig
    qkv_bias: bool = True  # bias in the backbone's qkv projection
    norm_eps: float = 1e-6  # LayerNorm epsilon
    drop_rate: float = 0.0  # dropout after the position embedding and in MLP/projection outputs
    attn_drop_rate: float = 0.0  # dropout on the attention weights
    drop_path_rate: float = 0.0  # stochastic depth of the backbone, rising linearly to this value

    def __post_init__(self) -> None:
        for name in ("t2t_kernels", "t2t_strides", "t2t_paddings"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # JSON gives lists back
        check_positive_ints(self, ("img_size", "in_chans", "token_dim", "token_heads", "dim", "depth", "heads"))
        check_fields(self)
        steps = len(self.t2t_kernels)
        if steps < 1 or len(self.t2t_strides) != steps or len(self.t2t_paddings) != steps:
            raise ConfigError(
                f"t2t_kernels, t2t_strides and t2t_paddings need one entry per soft split (at least one), "
                f"got {len(self.t2t_kernels)}, {len(self.t2t_strides)} and {len(self.t2t_paddings)}.")
        for name in ("t2t_kernels", "t2t_strides", "t2t_paddings"):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in getattr(self, name)):
                raise ConfigError(f"T2TConfig.{name} must hold ints, got {getattr(self, name)!r}.")
        _ = self.grid_sizes  # raises ConfigError if a soft split does not fit
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}; choose heads among "
                              "the divisors of dim.")
        if self.token_dim % self.token_heads:
            raise ConfigError(f"token_dim={self.token_dim} is not divisible by token_heads={self.token_heads}.")
        if self.pos_embed not in T2T_POS_EMBEDS:
            raise ConfigError(f"pos_embed={self.pos_embed!r} is unknown; use one of {T2T_POS_EMBEDS}.")
        if self.pos_embed == "sincos2d" and self.dim % 4:
            raise ConfigError(f"pos_embed='sincos2d' needs dim divisible by 4, got dim={self.dim}.")
        if self.pool not in POOLS:
            raise ConfigError(f"pool={self.pool!r} is unknown; use one of {POOLS}.")
        check_rates(self, ratios=("mlp_ratio", "token_mlp_ratio"))

    @property
    def grid_sizes(self) -> tuple:
        """Grid side before the first and after every soft split, e.g. (28, 14, 7)."""
        sides = [self.img_size]
        for step, (k, s, p) in enumerate(zip(self.t2t_kernels, self.t2t_strides, self.t2t_paddings)):
            try:
                sides.append(soft_split_grid_size(sides[-1], k, s, p))
            except ConfigError as err:
                raise ConfigError(f"T2T soft split {step}: {err}") from None
        return tuple(sides)

    @property
    def grid_size(self) -> int:
        """Side of the grid of tokens that enter the backbone."""
        return self.grid_sizes[-1]

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "cls" else 0

    def replace(self, **changes: Any) -> "T2TConfig":
        """A copy with some fields changed (validated again)."""
        return replace_config(self, **changes)


def soft_split(images: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Overlapping patches as tokens (img2col): ``F.unfold`` then tokens first.

    Args:
        images: (B, C, H, W).
        kernel, stride, padding: of the sliding window.
    Returns:
        (B, L, C * kernel * kernel), one token per window position (row-major), each token the
        window's values ordered channel, then row, then column.
    """
    if images.ndim != 4:
        raise InputShapeError(f"soft_split expects (B, C, H, W), got shape {tuple(images.shape)}.")
    cols = F.unfold(images, kernel_size=kernel, stride=stride, padding=padding)  # (B, C*k*k, L)
    return cols.transpose(1, 2)  # (B, L, C*k*k)


def tokens_to_grid(tokens: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Re-structurisation: a token sequence back to an image-like grid (the inverse of flatten).

    Args:
        tokens: (B, L, C) with L = grid_size**2, row-major.
        grid_size: side g of the grid.
    Returns:
        (B, C, g, g).
    """
    if tokens.ndim != 3 or tokens.shape[1] != grid_size**2:
        raise InputShapeError(f"tokens_to_grid needs (B, {grid_size}*{grid_size}, C) tokens for a "
                              f"{grid_size}x{grid_size} grid, got shape {tuple(tokens.shape)}.")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid_size, grid_size)


class TokenAttention(SoftmaxAttention):
    """Attention whose output width differs from its input width (T2T's token transformer).

    The input tokens (width ``in_dim`` = C*k^2, large) are mapped to queries, keys and values of
    width ``dim`` (small). The residual ``x + attn(x)`` cannot be used (widths differ), so the
    residual path carries the values instead: out = v + proj(softmax(q k^T / sqrt(hd)) v).
    """

    def __init__(self, *, in_dim: int, dim: int, heads: int = 1, qkv_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused_attn: bool = True) -> None:
        super().__init__(head_dim=dim // heads, attn_drop=attn_drop, fused_attn=fused_attn)
        self.heads = heads
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, L, hd)
        out = attend_heads(self, q, k, v)  # (B, h, L, hd)
        out = out.transpose(1, 2).reshape(B, L, -1)  # (B, L, dim)
        v = v.transpose(1, 2).reshape(B, L, -1)  # (B, L, dim): the residual path
        return v + self.proj_drop(self.proj(out))


class TokenTransformer(nn.Module):
    """One T2T transformer layer: (B, L, in_dim) -> (B, L, dim).

    norm1 -> TokenAttention (with its value residual) -> x + MLP(norm2(x)).
    """

    def __init__(self, *, in_dim: int, dim: int, heads: int = 1, mlp_ratio: float = 1.0,
                 norm_eps: float = 1e-6, drop: float = 0.0, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim, eps=norm_eps)
        self.attn = TokenAttention(in_dim=in_dim, dim=dim, heads=heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim=dim, hidden=max(1, int(dim * mlp_ratio)), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))  # (B, L, dim)
        return x + self.mlp(self.norm2(x))  # (B, L, dim)


class T2TModule(nn.Module):
    """Soft split, then (token transformer, re-structurise, soft split) per further step, then project.

    Attributes:
        grid_sizes: the grid side before and after each soft split, e.g. (28, 14, 7).
        soft_splits: the ``nn.Unfold`` modules.
        token_transformers: one fewer than soft splits.
        project: ``Linear(token_dim * k_last^2, dim)``.
    """

    def __init__(self, cfg: T2TConfig) -> None:
        super().__init__()
        self.grid_sizes = cfg.grid_sizes
        self.soft_splits = nn.ModuleList(
            nn.Unfold(kernel_size=k, stride=s, padding=p)
            for k, s, p in zip(cfg.t2t_kernels, cfg.t2t_strides, cfg.t2t_paddings))
        widths = [cfg.in_chans * cfg.t2t_kernels[0] ** 2]
        widths += [cfg.token_dim * k**2 for k in cfg.t2t_kernels[1:]]
        self.token_widths = tuple(widths)  # token width right after each soft split
        self.token_transformers = nn.ModuleList(
            TokenTransformer(in_dim=width, dim=cfg.token_dim, heads=cfg.token_heads,
                             mlp_ratio=cfg.token_mlp_ratio, norm_eps=cfg.norm_eps, drop=cfg.drop_rate,
                             attn_drop=cfg.attn_drop_rate)
            for width in widths[:-1])
        self.project = nn.Linear(widths[-1], cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.soft_splits[0](x).transpose(1, 2)  # (B, L0, C*k0^2)
        for step, transformer in enumerate(self.token_transformers, start=1):
            x = transformer(x)  # (B, L_{step-1}, token_dim)
            x = tokens_to_grid(x, self.grid_sizes[step])  # (B, token_dim, g, g)
            x = self.soft_splits[step](x).transpose(1, 2)  # (B, L_step, token_dim*k^2)
        return self.project(x)  # (B, N, D)


class T2TViT(nn.Module):
    """Tokens-to-Token ViT built from a :class:`T2TConfig`.

    Everything after ``t2t`` is vitlab's ViT (:func:`vitlab.models.vit.build_encoder` and the ViT's own
    position-embedding, head and initialisation methods): a CLS token, a position embedding, ``depth``
    pre-norm blocks, a final LayerNorm and a linear head.
    """

    def __init__(self, cfg: T2TConfig) -> None:
        super().__init__()
        if not isinstance(cfg, T2TConfig):
            raise ConfigError(f"T2TViT needs a T2TConfig, got {type(cfg).__name__}.")
        self.cfg = cfg
        self.t2t = T2TModule(cfg)
        build_encoder(self, cfg)  # the ViT after the tokenizer, shared with vitlab.ViT
        self.reset_parameters()

    reset_parameters = ViT.reset_parameters
    _pos_embed = ViT._pos_embed
    forward_head = ViT.forward_head

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputShapeError unless x is (B, in_chans, img_size, img_size)."""
        c = self.cfg
        if x.ndim != 4 or x.shape[1] != c.in_chans or tuple(x.shape[2:]) != (c.img_size, c.img_size):
            raise InputShapeError(
                f"T2TViT was built for (B, {c.in_chans}, {c.img_size}, {c.img_size}) images, got shape "
                f"{tuple(x.shape)}. For one image use x.unsqueeze(0); for another size build a new config.")

    def token_counts(self) -> list[dict]:
        """Tokens and token width at every stage, from the image to the backbone.

        Returns:
            One dict per stage: ``stage`` (name), ``grid`` (side), ``tokens``, ``width``.
        """
        c, g = self.cfg, self.cfg.grid_sizes
        stages = [{"stage": "image (pixels)", "grid": g[0], "tokens": g[0] ** 2, "width": c.in_chans}]
        for step, width in enumerate(self.t2t.token_widths):
            stages.append({"stage": f"soft split {step}", "grid": g[step + 1], "tokens": g[step + 1] ** 2,
                           "width": width})
            if step < len(self.t2t.token_transformers):
                stages.append({"stage": f"token transformer {step}", "grid": g[step + 1],
                               "tokens": g[step + 1] ** 2, "width": c.token_dim})
        stages.append({"stage": "projection", "grid": c.grid_size, "tokens": c.num_patches, "width": c.dim})
        stages.append({"stage": "backbone (with CLS)" if c.pool == "cls" else "backbone", "grid": c.grid_size,
                       "tokens": c.num_patches + c.num_prefix_tokens, "width": c.dim})
        return stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + N, D) after the last block (normed if pool='cls')."""
        self.check_input(x)
        x = self._pos_embed(self.t2t(x))  # (B, prefix + N, D)
        x = self.blocks(x)
        return self.norm(x) if self.cfg.pool == "cls" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _register() -> None:
    from . import register_model

    register_config("t2t", T2TConfig)
    register_model(T2TConfig, T2TViT)
    # 28x28 -> soft split 7/2 -> 14x14 (196 tokens) -> token transformer -> soft split 3/2 -> 7x7
    # (49 tokens, as fmnist-vit's patch 4) -> the fmnist-vit backbone with one block fewer, so the
    # parameter count (~206k) matches fmnist-vit's.
    register_preset("fmnist-t2t", T2TConfig(img_size=28, in_chans=1, num_classes=10, t2t_kernels=(7, 3),
                                            t2t_strides=(2, 2), t2t_paddings=(3, 1), token_dim=40, dim=64,
                                            depth=5, heads=4, mlp_ratio=2.0))


_register()

__all__ = ["T2TConfig", "T2TViT", "T2TModule", "TokenTransformer", "TokenAttention", "soft_split",
           "soft_split_grid_size", "tokens_to_grid"]
