"""Swin Transformer (Liu et al., ICCV 2021), built from the ViT step by step.

A ViT's every token attends to every other: cost N^2 in the number of tokens. Swin keeps tokens on
their 2-D grid and lets each attend only inside a ws x ws *window* (cost N * ws^2); every second
block moves the windows by ws/2 so information crosses window borders; and between stages
*patch merging* halves the grid and doubles the width, giving a CNN-like pyramid:

image (B, C, H, W) -> patch embed -> (B, h, w, C0)                       tokens kept as a grid
-> stage 0: blocks [W-MSA, SW-MSA, ...]                       -> (B, h, w, C0)
-> stage i: patch merging (B, h/2^i, w/2^i, C0*2^i) then blocks
-> norm -> mean over the grid -> head -> logits (B, num_classes)

The shifted window is computed efficiently with a cyclic shift (``torch.roll``) and an attention
mask of large negative values that stops tokens which the roll brought together from different
regions of the image from attending to each other.

Shapes: B batch, (h, w) token grid, C width, ws window side, nW windows, N = ws*ws tokens per window,
H heads. Grids are channels-last (B, h, w, C), as in timm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import check_fields, check_positive_ints, check_rates, register_config, register_preset, replace_config
from ..errors import ConfigError, InputShapeError
from ..layers import MLP, DropPath, SoftmaxAttention, attend_heads, init_vit_weights

# Added to the scores of token pairs that must not attend to each other. The Swin paper's code (and
# timm) add -100, but exp(-100) ~ 4e-44 is a *subnormal* float32, and CPU matrix multiplies slow down
# many times over on subnormal inputs; exp(-1e4) is exactly 0, so the masked weights are true zeros.
MASK_VALUE = -1e4


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a grid of tokens into non-overlapping windows.

    Args:
        x: (B, h, w, C) tokens on their grid.
        window_size: side of a square window; must divide h and w.
    Returns:
        (B * nW, window_size, window_size, C), windows in row-major order within each image,
        images one after the other (nW = (h / window_size) * (w / window_size)).
    Raises:
        InputShapeError: x is not 4-D, or the window does not divide the grid.
    """
    if x.ndim != 4:
        raise InputShapeError(f"window_partition expects a (B, h, w, C) grid, got shape {tuple(x.shape)}.")
    B, h, w, C = x.shape
    if h % window_size or w % window_size:
        raise InputShapeError(
            f"window_size={window_size} does not divide the {h}x{w} token grid; windows that tile it: "
            f"{sorted(set(_divisors(h)) & set(_divisors(w)))} (or pad the grid first).")
    x = x.reshape(B, h // window_size, window_size, w // window_size, window_size, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, h/ws, w/ws, ws, ws, C): window row, window column, inside
    return x.reshape(-1, window_size, window_size, C)  # (B*nW, ws, ws, C)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Put windows back on the grid: the exact inverse of :func:`window_partition`.

    Args:
        windows: (B * nW, window_size, window_size, C).
        window_size: side of a window.
        height, width: the grid's size h, w (multiples of window_size).
    Returns:
        (B, h, w, C).
    """
    if windows.ndim != 4 or windows.shape[1:3] != (window_size, window_size):
        raise InputShapeError(f"window_reverse expects (B*nW, {window_size}, {window_size}, C) windows, "
                              f"got shape {tuple(windows.shape)}.")
    if height % window_size or width % window_size:
        raise InputShapeError(f"window_size={window_size} does not divide the {height}x{width} grid.")
    per_image = (height // window_size) * (width // window_size)
    if windows.shape[0] % per_image:
        raise InputShapeError(f"{windows.shape[0]} windows are not a whole number of {height}x{width} "
                              f"grids of {per_image} windows each.")
    C = windows.shape[-1]
    x = windows.reshape(-1, height // window_size, width // window_size, window_size, window_size, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, h/ws, ws, w/ws, ws, C)
    return x.reshape(-1, height, width, C)  # (B, h, w, C)


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the relative-position bias table for every (query, key) pair of one window.

    Two tokens at (r1, c1) and (r2, c2) of a window are (r1 - r2, c1 - c2) apart, each difference
    in [-(w-1), w-1]: (2w - 1)^2 possible offsets, numbered row-major after shifting both to start
    at 0: index = (r1 - r2 + w - 1) * (2w - 1) + (c1 - c2 + w - 1).

    Returns:
        (w*w, w*w) long tensor; entry [i, j] for query token i and key token j (row-major in the window).
    """
    if not isinstance(window_size, int) or window_size < 1:
        raise ConfigError(f"window_size must be a positive int, got {window_size!r}.")
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()  # (N,) each: position of token i in the window
    d_row = rows[:, None] - rows[None, :] + window_size - 1  # (N, N) in [0, 2w-2]
    d_col = cols[:, None] - cols[None, :] + window_size - 1  # (N, N)
    return d_row * (2 * window_size - 1) + d_col  # (N, N)


def shifted_window_regions(grid_size: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Region ids of the tokens of a grid after the cyclic shift ``torch.roll(x, -shift_size)``.

    Rolling moves the first ``shift_size`` rows (and columns) to the end of the grid. Along each axis
    the rolled grid then has three slices: [0, h - w) (whole windows, never wrapped), [h - w, h - s)
    (the start of the last window) and [h - s, h) (the rows that wrapped round). Tokens of the same
    window may attend to each other only if they are in the same slice along both axes: 3 x 3 = 9
    regions, numbered row-major.

    Args:
        grid_size: side h of the square token grid.
        window_size: side w of a window (divides h).
        shift_size: s, with 0 < s < w.
    Returns:
        (h, h) long tensor of region ids in 0..8, in the rolled frame.
    """
    _check_shift(grid_size, window_size, shift_size)
    edges = (0, grid_size - window_size, grid_size - shift_size, grid_size)
    slice_of = torch.zeros(grid_size, dtype=torch.long)  # which of the three slices each row is in
    for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
        slice_of[start:stop] = index
    return slice_of[:, None] * 3 + slice_of[None, :]  # (h, h)


def shifted_window_mask(grid_size: int, window_size: int, shift_size: int,
                        mask_value: float = MASK_VALUE) -> torch.Tensor:
    """Attention mask of shifted-window attention: 0 where two tokens of a window share a region.

    Args:
        grid_size: side h of the token grid.
        window_size: side w of a window (divides h).
        shift_size: the cyclic shift s (0 < s < w).
        mask_value: added to the attention scores of pairs from different regions.
    Returns:
        (nW, N, N) float tensor, nW = (h/w)^2 windows of the rolled grid, N = w*w; entry
        [window, i, j] is 0 if tokens i and j of that window are in the same region, else mask_value.
    """
    regions = shifted_window_regions(grid_size, window_size, shift_size)  # (h, h)
    windows = window_partition(regions[None, :, :, None], window_size)  # (nW, w, w, 1)
    windows = windows.reshape(-1, window_size * window_size)  # (nW, N)
    different = windows[:, :, None] != windows[:, None, :]  # (nW, N, N)
    return torch.zeros(different.shape).masked_fill(different, mask_value)


def _check_shift(grid_size: int, window_size: int, shift_size: int) -> None:
    if window_size < 1 or grid_size % window_size:
        raise ConfigError(f"window_size={window_size} does not divide the {grid_size}x{grid_size} grid; "
                          f"windows that tile it: {_divisors(grid_size)}.")
    if not 0 < shift_size < window_size:
        raise ConfigError(f"shift_size must be between 1 and window_size - 1 = {window_size - 1}, got "
                          f"{shift_size} (Swin uses window_size // 2).")


class WindowAttention(SoftmaxAttention):
    """Multi-head self-attention inside windows, with a learned relative-position bias per head.

    score(i, j) = q_i . k_j / sqrt(hd) + table[index[i, j], head] (+ mask[window, i, j])

    Two paths, as ``vitlab.layers.Attention``: fused ``F.scaled_dot_product_attention`` (default) and
    the explicit softmax through the named module ``attend`` (for hooks). The weights recorded there are
    (B, nW, H, N, N): image, window (row-major over the window grid; in a shifted block, of the *rolled*
    token grid), head, query and key (row-major inside the window); see :func:`window_attention_to_grid`
    for them over the image's own positions.
    """

    def __init__(self, *, dim: int, heads: int, window_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused_attn: bool = True) -> None:
        if dim % heads:
            raise ConfigError(f"dim={dim} is not divisible by heads={heads}.")
        super().__init__(head_dim=dim // heads, attn_drop=attn_drop, fused_attn=fused_attn)
        self.heads = heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> torch.Tensor:
        """(H, N, N): the bias each head adds to the score of query i and key j."""
        N = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]  # (N*N, H)
        return bias.reshape(N, N, self.heads).permute(2, 0, 1)  # (H, N, N)

    def forward(self, x: torch.Tensor, mask: "torch.Tensor | None" = None,
                num_windows: "int | None" = None) -> torch.Tensor:
        """Attention within each window.

        Args:
            x: (B*nW, N, C) the tokens of every window of every image (windows of one image together).
            mask: (nW, N, N) added to the scores (0 or MASK_VALUE), or None.
            num_windows: nW, the windows of one image (default: the mask's, else 1); it only groups the
                windows by image, as the recorded weights are laid out, and changes nothing computed.
        Returns:
            (B*nW, N, C).
        """
        BW, N, C = x.shape
        nW = num_windows or (1 if mask is None else mask.shape[0])
        if mask is not None and mask.shape[0] != nW:
            raise InputShapeError(f"The mask is for {mask.shape[0]} windows per image, but num_windows={nW}.")
        if BW % nW:
            raise InputShapeError(f"{BW} windows are not a whole number of images of {nW} windows each.")
        qkv = self.qkv(x).reshape(BW // nW, nW, N, 3, self.heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # each (B, nW, H, N, hd): the windows of one image side by side
        bias = self.relative_position_bias()  # (H, N, N), the same in every window
        if mask is not None:
            bias = bias + mask[:, None]  # (nW, H, N, N): broadcast over the images of the batch
        out = attend_heads(self, q, k, v, bias)  # (B, nW, H, N, hd)
        out = out.transpose(2, 3).reshape(BW, N, C)  # heads side by side again
        return self.proj_drop(self.proj(out))


class SwinBlock(nn.Module):
    """Pre-norm Swin block on a (B, h, w, C) grid: x + (S)W-MSA(LN(x)), then x + MLP(LN(x)).

    With ``shift_size = 0`` the windows are the regular grid (W-MSA); with ``shift_size = s > 0`` the
    grid is rolled by -s, cut into windows, attended with the region mask, and rolled back (SW-MSA).
    """

    def __init__(self, *, dim: int, heads: int, grid_size: int, window_size: int, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, norm_eps: float = 1e-5, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if grid_size % window_size:
            raise ConfigError(f"window_size={window_size} does not divide the {grid_size}x{grid_size} grid; "
                              f"windows that tile it: {_divisors(grid_size)}.")
        self.grid_size = grid_size
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim=dim, heads=heads, window_size=window_size, qkv_bias=qkv_bias,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim=dim, hidden=int(dim * mlp_ratio), drop=drop)
        mask = shifted_window_mask(grid_size, window_size, shift_size) if shift_size else None
        self.register_buffer("attn_mask", mask, persistent=False)  # (nW, N, N) or None

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention half of the block, without norm or residual: (B, h, w, C) -> (B, h, w, C)."""
        B, h, w, C = x.shape
        s, ws = self.shift_size, self.window_size
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # cyclic shift: the windows move by (s, s)
        windows = window_partition(x, ws).reshape(-1, ws * ws, C)  # (B*nW, N, C)
        windows = self.attn(windows, mask=self.attn_mask, num_windows=(h // ws) * (w // ws))  # (B*nW, N, C)
        x = window_reverse(windows.reshape(-1, ws, ws, C), ws, h, w)  # (B, h, w, C)
        return torch.roll(x, shifts=(s, s), dims=(1, 2)) if s else x  # undo the shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:3] != (self.grid_size, self.grid_size):
            raise InputShapeError(f"SwinBlock was built for a (B, {self.grid_size}, {self.grid_size}, C) grid, "
                                  f"got shape {tuple(x.shape)}.")
        x = x + self.drop_path(self.window_attention(self.norm1(x)))  # (B, h, w, C)
        return x + self.drop_path(self.mlp(self.norm2(x)))  # (B, h, w, C)


class PatchMerging(nn.Module):
    """Halve the grid, double the width: concatenate each 2x2 group of tokens (4C), norm, Linear(4C, 2C).

    The four neighbours are concatenated in the order of the Swin paper's code: (0, 0), (1, 0),
    (0, 1), (1, 1) as (row, column) offsets.
    """

    def __init__(self, *, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) -> (B, h/2, w/2, 2C)."""
        if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
            raise InputShapeError(f"PatchMerging needs a (B, h, w, C) grid with even h and w, got shape "
                                  f"{tuple(x.shape)}.")
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, h/2, w/2, 4C) -> (B, h/2, w/2, 2C)


def window_attention_to_grid(maps: torch.Tensor, grid_size: int, window_size: int, shift_size: int = 0
                             ) -> torch.Tensor:
    """One Swin block's recorded window attention, laid out over the image's own token positions.

    ``record_attention`` records a :class:`WindowAttention` as (B, nW, H, N, N): per image, per window of
    the block's token grid (row-major over the windows; in a shifted block, windows of the grid rolled
    by ``-shift_size`` in both directions), per head, per query and key token (row-major inside the
    window). This puts every weight where it belongs on the unrolled grid.

    Args:
        maps: (B, nW, H, N, N) for one block (``rec.maps[i]``).
        grid_size: the block's token grid side (``block.grid_size``).
        window_size: its window side (``block.window_size``).
        shift_size: its shift (``block.shift_size``; 0 for W-MSA).
    Returns:
        (B, H, L, L) with L = grid_size**2, rows and columns row-major over the grid: the weight each query
        position gives each key position, 0 outside the query's window; every row sums to 1.
    Raises:
        InputShapeError: ``maps`` does not have the windows and tokens of such a block.
    """
    ws, side = window_size, grid_size
    windows = (side // ws) ** 2 if ws and not side % ws else 0
    if maps.ndim != 5 or not windows or maps.shape[1] != windows or maps.shape[-2:] != (ws * ws, ws * ws):
        raise InputShapeError(f"Expected one Swin block's window attention of shape (B, {windows}, H, {ws * ws}, "
                              f"{ws * ws}) for a {side}x{side} grid and {ws}x{ws} windows, got {tuple(maps.shape)}.")
    B, nW, H, N, _ = maps.shape
    position = torch.arange(side * side).reshape(side, side)  # the original index of every grid cell
    if shift_size:
        position = torch.roll(position, shifts=(-shift_size, -shift_size), dims=(0, 1))  # as the block rolls x
    per_window = window_partition(position[None, :, :, None], ws).reshape(nW, N)  # original index of each token
    out = maps.new_zeros(B, H, side * side, side * side)
    queries = per_window[:, :, None].expand(nW, N, N)
    keys = per_window[:, None, :].expand(nW, N, N)
    out[:, :, queries, keys] = maps.permute(0, 2, 1, 3, 4)  # (B, H, nW, N, N)
    return out


@dataclass(frozen=True)
class SwinConfig:
    """A small hierarchical Swin Transformer."""

    img_size: int = 28  # side of the square input image, in pixels
    patch_size: int = 2  # side of a patch; 28 / 2 = a 14 x 14 token grid in stage 0
    in_chans: int = 1  # input channels
    num_classes: int = 10  # classifier outputs; 0 = no head
    embed_dim: int = 48  # width of stage 0; each patch merging doubles it
    depths: tuple = (2, 2)  # blocks per stage (even: W-MSA and SW-MSA alternate); Swin-T: (2, 2, 6, 2)
    heads: tuple = (3, 6)  # attention heads per stage; Swin-T: (3, 6, 12, 24)
    window_size: int = 7  # window side in tokens; must divide every stage's grid (Swin-T: 7)
    mlp_ratio: float = 2.0  # MLP hidden width / width (Swin-T: 4)
    qkv_bias: bool = True  # bias in the qkv projection
    norm_eps: float = 1e-5  # LayerNorm epsilon (timm's Swin: 1e-5)
    drop_rate: float = 0.0  # dropout in MLP/projection outputs
    attn_drop_rate: float = 0.0  # dropout on the attention weights
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly over all blocks to this value

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))  # JSON gives lists back
        object.__setattr__(self, "heads", tuple(self.heads))
        check_positive_ints(self, ("img_size", "patch_size", "in_chans", "embed_dim", "window_size"))
        check_fields(self)
        if not self.depths or len(self.heads) != len(self.depths):
            raise ConfigError(f"depths and heads need one entry per stage, got depths={self.depths}, "
                              f"heads={self.heads}.")
        if any(not isinstance(v, int) or v < 1 for v in self.depths + self.heads):
            raise ConfigError(f"depths and heads must be positive ints, got {self.depths}, {self.heads}.")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}; "
                              f"patch sizes that tile it: {_divisors(self.img_size)}.")
        grid = self.img_size // self.patch_size
        for stage in range(len(self.depths)):
            if stage and grid % 2:
                raise ConfigError(
                    f"stage {stage - 1}'s {grid}x{grid} grid is odd, so patch merging cannot halve it for "
                    f"stage {stage}; use fewer stages or another img_size / patch_size.")
            grid = grid // 2 if stage else grid
            if grid % self.window_size:
                raise ConfigError(
                    f"window_size={self.window_size} does not divide stage {stage}'s {grid}x{grid} token grid; "
                    f"windows that tile it: {_divisors(grid)}. (Grids per stage: {self.grid_sizes}.)")
            dim = self.embed_dim * 2**stage
            if dim % self.heads[stage]:
                raise ConfigError(f"stage {stage} has width {dim}, not divisible by heads={self.heads[stage]}.")
        check_rates(self)

    @property
    def grid_sizes(self) -> tuple:
        """Token-grid side of every stage, e.g. (14, 7)."""
        grid = self.img_size // self.patch_size
        return tuple(grid // 2**stage for stage in range(len(self.depths)))

    @property
    def dims(self) -> tuple:
        """Width of every stage, e.g. (48, 96)."""
        return tuple(self.embed_dim * 2**stage for stage in range(len(self.depths)))

    def shift_sizes(self, stage: int) -> tuple:
        """Cyclic shift of each block of a stage: 0 (W-MSA) and window // 2 (SW-MSA) alternating.

        A stage whose grid is one window has nothing to shift across, so all its shifts are 0 (as in
        the Swin paper's last stage and in timm).
        """
        one_window = self.grid_sizes[stage] == self.window_size
        shift = 0 if one_window else self.window_size // 2
        return tuple(0 if block % 2 == 0 else shift for block in range(self.depths[stage]))

    def replace(self, **changes: Any) -> "SwinConfig":
        """A copy with some fields changed (validated again)."""
        return replace_config(self, **changes)


class SwinStage(nn.Module):
    """Patch merging (stages after the first), then blocks alternating W-MSA and SW-MSA."""

    def __init__(self, cfg: SwinConfig, stage: int, drop_path_rates: list) -> None:
        super().__init__()
        dim, grid = cfg.dims[stage], cfg.grid_sizes[stage]
        self.downsample = PatchMerging(dim=dim // 2, norm_eps=cfg.norm_eps) if stage else nn.Identity()
        self.blocks = nn.Sequential(*[
            SwinBlock(dim=dim, heads=cfg.heads[stage], grid_size=grid, window_size=cfg.window_size,
                      shift_size=shift, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, norm_eps=cfg.norm_eps,
                      drop=cfg.drop_rate, attn_drop=cfg.attn_drop_rate, drop_path=rate)
            for shift, rate in zip(cfg.shift_sizes(stage), drop_path_rates)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))  # (B, h_stage, w_stage, C_stage)


class Swin(nn.Module):
    """Swin Transformer classifier built from a :class:`SwinConfig`.

    Parameter names follow timm's ``SwinTransformer`` except ``stages`` (timm: ``layers``) and
    ``head`` (timm: ``head.fc``).
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        if not isinstance(cfg, SwinConfig):
            raise ConfigError(f"Swin needs a SwinConfig, got {type(cfg).__name__}.")
        self.cfg = cfg
        self.patch_embed = nn.Module()  # proj (patch -> C0) and norm, as timm names them
        self.patch_embed.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.patch_embed.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(1, total - 1) for i in range(total)]
        starts = [sum(cfg.depths[:s]) for s in range(len(cfg.depths))]
        self.stages = nn.Sequential(*[SwinStage(cfg, s, rates[starts[s]:starts[s] + cfg.depths[s]])
                                      for s in range(len(cfg.depths))])
        self.num_features = cfg.dims[-1]
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.apply(init_vit_weights)
        for module in self.modules():
            if isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    @property
    def fused_attn(self) -> bool:
        """Whether the window attentions use fused scaled_dot_product_attention (default True)."""
        return all(m.fused_attn for m in self.modules() if isinstance(m, WindowAttention))

    @fused_attn.setter
    def fused_attn(self, value: bool) -> None:
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.fused_attn = bool(value)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputShapeError unless x is (B, in_chans, img_size, img_size)."""
        c = self.cfg
        if x.ndim != 4 or x.shape[1] != c.in_chans or tuple(x.shape[2:]) != (c.img_size, c.img_size):
            raise InputShapeError(
                f"Swin was built for (B, {c.in_chans}, {c.img_size}, {c.img_size}) images, got shape "
                f"{tuple(x.shape)}. For one image use x.unsqueeze(0); for another size build a new config.")

    def token_counts(self) -> list[dict]:
        """Per stage: grid side, tokens, width, windows, tokens per window, and the blocks' shifts."""
        c = self.cfg
        return [{"stage": s, "grid": g, "tokens": g * g, "width": d, "windows": (g // c.window_size) ** 2,
                 "window_tokens": c.window_size**2, "shifts": c.shift_sizes(s)}
                for s, (g, d) in enumerate(zip(c.grid_sizes, c.dims))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the last stage's normed grid (B, h_last, w_last, C_last)."""
        self.check_input(x)
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)  # (B, h, w, C0): channels last
        x = self.patch_embed.norm(x)
        x = self.stages(x)  # (B, h_last, w_last, C_last)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, h, w, C) -> logits (B, num_classes): mean over the grid, then the head."""
        x = x.mean(dim=(1, 2))  # (B, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _register() -> None:
    from . import register_model

    register_config("swin", SwinConfig)
    register_model(SwinConfig, Swin)
    # 28x28, patch 2 -> 14x14 tokens (4 windows of 7x7; W-MSA then SW-MSA), merge -> 7x7 (one window),
    # widths 48 -> 96: ~206k parameters, the size of fmnist-vit.
    register_preset("fmnist-swin", SwinConfig(img_size=28, patch_size=2, in_chans=1, num_classes=10,
                                              embed_dim=48, depths=(2, 2), heads=(3, 6), window_size=7,
                                              mlp_ratio=2.0))


_register()

__all__ = ["SwinConfig", "Swin", "SwinStage", "SwinBlock", "WindowAttention", "PatchMerging", "MASK_VALUE",
           "window_partition", "window_reverse", "relative_position_index", "shifted_window_regions",
           "shifted_window_mask", "window_attention_to_grid"]
