"""Plots of attention weights: the (N, N) matrix of each head, and one query's weights over an image.

Both functions take weights that were computed elsewhere (by hand, by a hook, by a recorder) and
return a matplotlib ``Figure``; nothing here runs a model. Shapes: H heads, N tokens, G patches per
side (grid_size), so a ViT with a CLS token has N = 1 + G * G.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import InputShapeError
from ._axes import to_display

__all__ = ["plot_attention_matrix", "plot_attention_on_image"]

_MAX_LABELLED_TOKENS = 20  # above this many tokens, only every k-th tick is labelled
_MAX_ANNOTATED_TOKENS = 8  # at most this many tokens: the weights are written in the cells


def _as_numpy(values, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy()
    if isinstance(values, np.ndarray):
        return values.astype(np.float32)
    raise TypeError(f"{what} must be a torch.Tensor (or numpy array), got {type(values).__name__}.")


def _grid(num_panels: int, max_columns: int) -> tuple[int, int]:
    if not isinstance(max_columns, int) or max_columns < 1:
        raise ValueError(f"max_columns must be a positive int, got {max_columns!r}.")
    columns = min(num_panels, max_columns)
    return math.ceil(num_panels / columns), columns


def _colour_range(values: np.ndarray, vmin: Optional[float], vmax: Optional[float]) -> tuple[float, float]:
    low = float(values.min()) if vmin is None else float(vmin)
    high = float(values.max()) if vmax is None else float(vmax)
    if high <= low:  # all weights equal (e.g. exactly uniform attention): any non-empty range will do
        high = low + 1e-6
    return low, high


def _head_names(num_heads: int, head_names: Optional[Sequence[str]]) -> list[str]:
    if head_names is None:
        return [f"head {h}" for h in range(num_heads)] if num_heads > 1 else [""]
    if len(head_names) != num_heads:
        raise InputShapeError(f"head_names has {len(head_names)} names but the weights have {num_heads} heads; "
                              "give one name per head (or leave head_names=None).")
    return list(head_names)


def plot_attention_matrix(
    weights: torch.Tensor,
    labels: Optional[Sequence[str]] = None,
    *,
    title: str = "Attention weights (row = query, column = key)",
    head_names: Optional[Sequence[str]] = None,
    annotate: Optional[bool] = None,
    vmin: Optional[float] = 0.0,
    vmax: Optional[float] = None,
    max_columns: int = 4,
    panel_size: float = 2.6,
    cmap: str = "viridis",
    dpi: int = 90,
) -> Figure:
    """Heatmaps of attention weights, one panel per head, on one shared colour scale.

    Row i of a panel is query token i; its entries are how much token i takes from each key token
    (after the softmax each row sums to 1).

    Args:
        weights: (N, N) for one head or (H, N, N) for H heads, e.g. ``hooked[0]`` of a (B, H, N, N)
            batch. Rows are queries, columns keys.
        labels: N token names for the axes (e.g. ``['CLS', 'p0', ...]``); None numbers them.
        title: the figure's title.
        head_names: H panel titles; None gives 'head 0', 'head 1', ...
        annotate: write each weight in its cell; None does so when N <= 8.
        vmin: weight at the bottom of the colour scale; None uses the smallest weight shown, which
            makes the small differences of near-uniform attention visible.
        vmax: weight at the top of the colour scale; None uses the largest weight shown.
        max_columns: panels per row.
        panel_size: side of one panel, in inches.
        cmap: matplotlib colour map.
        dpi: figure resolution.

    Returns:
        The Figure (rows x columns panels, and one colour bar).

    Raises:
        InputShapeError: weights not (N, N) or (H, N, N), or labels / head_names of the wrong length.
    """
    values = _as_numpy(weights, "weights")
    if values.ndim == 2:
        values = values[None]  # (1, N, N)
    if values.ndim != 3 or values.shape[-1] != values.shape[-2]:
        hint = " For a batch (B, H, N, N), pick one image: weights[0]." if values.ndim == 4 else ""
        raise InputShapeError(f"plot_attention_matrix expects (N, N) or (H, N, N) weights, got shape "
                              f"{tuple(weights.shape)}.{hint}")
    num_heads, num_tokens, _ = values.shape
    if labels is not None and len(labels) != num_tokens:
        raise InputShapeError(f"labels has {len(labels)} names but the weights have {num_tokens} tokens; "
                              "give one label per token (or leave labels=None).")
    names = _head_names(num_heads, head_names)
    if annotate is None:
        annotate = num_tokens <= _MAX_ANNOTATED_TOKENS

    rows, columns = _grid(num_heads, max_columns)
    fig = Figure(figsize=(panel_size * columns + 0.8, panel_size * rows + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    low, high = _colour_range(values, vmin, vmax)
    image = None
    for h, ax in enumerate(axes.flat):
        if h >= num_heads:
            ax.set_axis_off()
            continue
        image = ax.imshow(values[h], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(names[h], fontsize=9)
        if labels is not None:
            step = max(1, math.ceil(num_tokens / _MAX_LABELLED_TOKENS))
            ticks = list(range(0, num_tokens, step))
            ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=7)
            ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=7)
        else:
            ax.tick_params(labelsize=7)
        if annotate:
            for i in range(num_tokens):
                for j in range(num_tokens):
                    dark = values[h, i, j] < low + 0.6 * (high - low)
                    ax.text(j, i, f"{values[h, i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
        if h % columns == 0:
            ax.set_ylabel("query", fontsize=8)
        if h >= num_heads - columns:
            ax.set_xlabel("key", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight (each row sums to 1)")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_attention_on_image(
    image: torch.Tensor,
    weights_row: torch.Tensor,
    grid_size: int,
    *,
    title: str = "Attention of one query over the patches",
    head_names: Optional[Sequence[str]] = None,
    alpha: float = 0.6,
    vmin: Optional[float] = 0.0,
    vmax: Optional[float] = None,
    max_columns: int = 5,
    panel_size: float = 2.2,
    cmap: str = "inferno",
    dpi: int = 90,
) -> Figure:
    """One query's attention weights laid over the image, one patch per cell of the G x G grid.

    The first panel is the image alone; then one panel per head with the weights (nearest
    neighbour, so each patch is one flat square) drawn over it on one shared colour scale.

    Args:
        image: (C, H, W) with C = 1 or 3, or (H, W); uint8 in [0, 255] or float (stretched to
            [0, 1] for display if outside it, e.g. a preprocessed image in [-1, 1]).
        weights_row: (G*G,) or (H, G*G): the weights one query gives to the patch tokens, in
            row-major patch order, e.g. ``weights[0, :, 0, 1:]`` for the CLS query of a
            (B, H, N, N) batch (the CLS key column dropped).
        grid_size: G, patches per side (``cfg.grid_size``).
        title: the figure's title.
        head_names: H panel titles; None gives 'head 0', 'head 1', ...
        alpha: opacity of the weights over the image.
        vmin: weight at the bottom of the colour scale; None uses the smallest weight shown, which
            makes the small differences of near-uniform attention visible.
        vmax: weight at the top of the colour scale; None uses the largest weight shown.
        max_columns: panels per row.
        panel_size: side of one panel, in inches.
        cmap: matplotlib colour map of the weights.
        dpi: figure resolution.

    Returns:
        The Figure (image + one overlay per head, and one colour bar).

    Raises:
        InputShapeError: an image that is not (C, H, W) / (H, W), or weights_row whose last
            dimension is not grid_size ** 2.
    """
    if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int (patches per side), got {grid_size!r}.")
    picture = to_display(image)
    values = _as_numpy(weights_row, "weights_row")
    if values.ndim == 1:
        values = values[None]  # (1, G*G)
    if values.ndim != 2:
        raise InputShapeError(f"weights_row must be (G*G,) or (H, G*G), got shape {tuple(weights_row.shape)}. "
                              "From (B, H, N, N) weights take one image and one query: weights[0, :, query, 1:].")
    num_patches = grid_size**2
    if values.shape[1] != num_patches:
        hint = ""
        if values.shape[1] > num_patches:
            extra = values.shape[1] - num_patches
            hint = (f" It has {extra} more: if those are prefix tokens (CLS), drop them first, "
                    f"e.g. weights_row[..., {extra}:].")
        raise InputShapeError(f"weights_row has {values.shape[1]} entries per head but a {grid_size}x{grid_size} "
                              f"grid has {num_patches} patches.{hint}")
    num_heads = values.shape[0]
    names = _head_names(num_heads, head_names)
    maps = values.reshape(num_heads, grid_size, grid_size)  # (H, G, G), row-major patches
    height, width = picture.shape[:2]
    grey = dict(cmap="gray", vmin=0.0, vmax=1.0) if picture.ndim == 2 else {}

    rows, columns = _grid(num_heads + 1, max_columns)
    fig = Figure(figsize=(panel_size * columns + 0.8, panel_size * rows + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    low, high = _colour_range(maps, vmin, vmax)
    overlay = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index > num_heads:
            ax.set_axis_off()
            continue
        ax.imshow(picture, extent=(0, width, height, 0), **grey)
        if index == 0:
            ax.set_title("image", fontsize=9)
            continue
        overlay = ax.imshow(maps[index - 1], extent=(0, width, height, 0), cmap=cmap, vmin=low, vmax=high,
                            alpha=alpha, interpolation="nearest")
        ax.set_title(names[index - 1], fontsize=9)
    fig.colorbar(overlay, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title, fontsize=10)
    return fig
