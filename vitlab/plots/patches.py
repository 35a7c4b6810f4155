"""Plots for lesson 01 (patches to tokens): the patch grid over a photo, the patches as a sequence,
and a position-embedding table.

Images are (C, H, W) tensors: uint8 in [0, 255] is shown as is; float images (e.g. after
``vitlab.data.preprocess``) are rescaled from their min..max to [0, 1] for display only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure

from ..errors import InputShapeError
from ._axes import to_display
from ..patches import patch_grid_size, unpatchify

__all__ = ["plot_patch_grid", "plot_patch_sizes", "plot_patches", "plot_embedding_table"]


def plot_patch_grid(image: torch.Tensor, patch_size: int, *, number_patches: bool = False,
                    dpi: int = 80) -> Figure:
    """The image with its P x P patch grid drawn over it; the title gives the token count.

    Args:
        image: (C, H, W) tensor, C = 1 or 3, H and W multiples of ``patch_size``.
        patch_size: P, the side of a square patch.
        number_patches: write each patch's position in the token sequence (row-major) on it.
        dpi: figure resolution.
    Returns:
        a Figure with one panel.
    """
    fig = Figure(figsize=(4.2, 4.4), dpi=dpi, layout="constrained")
    _draw_patch_grid(fig.add_subplot(), image, patch_size, number_patches=number_patches)
    return fig


def plot_patch_sizes(image: torch.Tensor, patch_sizes: Sequence[int], *, dpi: int = 80) -> Figure:
    """The same image cut with several patch sizes, side by side (smaller P: more, finer tokens).

    Args:
        image: (C, H, W) tensor.
        patch_sizes: the patch sides to show, each dividing H and W.
        dpi: figure resolution.
    Returns:
        a Figure with one panel per patch size.
    """
    fig = Figure(figsize=(3.6 * len(patch_sizes), 4.3), dpi=dpi, layout="constrained")
    for ax, patch_size in zip(fig.subplots(1, len(patch_sizes), squeeze=False)[0], patch_sizes):
        _draw_patch_grid(ax, image, patch_size)
    fig.suptitle("The same image cut with different patch sizes P (smaller P: more tokens)")
    return fig


def plot_patches(patches: torch.Tensor, patch_size: int, channels: int, *,
                 per_row: "int | None" = None, dpi: int = 80) -> Figure:
    """One image's flattened patches laid out in sequence order, wrapping like a line of text.

    Args:
        patches: (N, C * P * P) tensor, one image's patches as :func:`vitlab.patches.patchify` makes
            them (row-major patch order, (c, p1, p2) inside a patch).
        patch_size: P.
        channels: C.
        per_row: patches per line; default twice the grid side, so each line holds two image rows.
        dpi: figure resolution.
    Returns:
        a Figure; the label at the left of each line is the index of its first token.
    """
    if patches.ndim != 2:
        raise InputShapeError(f"plot_patches expects one image's patches (N, C*P*P); got shape "
                              f"{tuple(patches.shape)}. For a batch pass patches[0].")
    N = patches.shape[0]
    P, C = patch_size, channels
    cells = unpatchify(patches[None], P, C, grid_size=(1, N))[0]  # (C, P, N*P): all patches in one row
    cells = to_display(cells, rgb=True).reshape(P, N, P, -1).transpose(1, 0, 2, 3)  # (N, P, P, 3)
    per_row = per_row or min(N, 2 * max(1, math.isqrt(N)))
    rows = math.ceil(N / per_row)
    gap = max(1, P // 6)
    step = P + gap
    canvas = np.ones((rows * step - gap, per_row * step - gap, 3))  # white between patches
    for n in range(N):
        r, c = divmod(n, per_row)
        canvas[r * step: r * step + P, c * step: c * step + P] = cells[n]
    width = min(11.0, max(5.0, canvas.shape[1] / 45))
    fig = Figure(figsize=(width, width * canvas.shape[0] / canvas.shape[1] + 0.7), dpi=dpi,
                 layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([r * step + P / 2 for r in range(rows)], [str(r * per_row) for r in range(rows)])
    ax.set_xticks([])
    ax.set_xlabel(f"tokens in sequence order, left to right (each patch {P}x{P} px)")
    ax.set_ylabel("index of the line's first token")
    ax.set_title(f"{N} patch tokens in sequence order, each {C}x{P}x{P} = {C * P * P} numbers")
    return fig


def plot_embedding_table(table: torch.Tensor, *, similarity_map: "torch.Tensor | None" = None,
                         query_patch: "tuple[int, int] | None" = None,
                         similarity_range: "tuple[float, float] | None" = None,
                         title: str = "position embedding", dpi: int = 80) -> Figure:
    """A (N, D) position-embedding table as an image, optionally next to one patch's similarity map.

    Args:
        table: (N, D) tensor, one row per patch (row-major), without the CLS row.
        similarity_map: optional (h, w) tensor, e.g. the cosine similarity of one patch's row with
            every row, reshaped to the patch grid (computed by the caller).
        query_patch: (row, column) of the patch the similarity map is about; marked on the map.
        similarity_range: (low, high) of the map's colour scale; default the map's own min and max,
            so the ordering of similarities is visible even when they are all close (pass (-1, 1)
            to compare maps on one scale).
        title: title of the table panel.
        dpi: figure resolution.
    Returns:
        a Figure with one or two panels.
    """
    if table.ndim != 2:
        raise InputShapeError(f"plot_embedding_table expects an (N, D) table; got shape {tuple(table.shape)}. "
                              "For a model's (1, 1 + N, D) pos_embed pass pos_embed[0, 1:].")
    values = table.detach().float().cpu().numpy()
    panels = 1 if similarity_map is None else 2
    fig = Figure(figsize=(4.8 * panels, 3.8), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    limit = float(np.abs(values).max()) or 1.0
    image = axes[0].imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                           interpolation="nearest")
    axes[0].set_xlabel(f"channel (of D = {values.shape[1]})")
    axes[0].set_ylabel(f"patch index (of N = {values.shape[0]})")
    axes[0].set_title(title)
    fig.colorbar(image, ax=axes[0], shrink=0.85, label="embedding value")
    if similarity_map is not None:
        sim = similarity_map.detach().float().cpu().numpy()
        low, high = similarity_range if similarity_range is not None else (sim.min(), sim.max())
        image = axes[1].imshow(sim, cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        if query_patch is not None:
            axes[1].scatter([query_patch[1]], [query_patch[0]], marker="s", s=60, facecolors="none",
                            edgecolors="red", linewidths=1.5)
        where = f" to patch {tuple(query_patch)}" if query_patch is not None else ""
        axes[1].set_title(f"cosine similarity{where}")
        axes[1].set_xlabel("patch column")
        axes[1].set_ylabel("patch row")
        fig.colorbar(image, ax=axes[1], shrink=0.85, label="cosine similarity")
    return fig


def _draw_patch_grid(ax, image: torch.Tensor, patch_size: int, *, number_patches: bool = False) -> None:
    if image.ndim != 3:
        raise InputShapeError(f"Expected one image (C, H, W); got shape {tuple(image.shape)}. "
                              "For a batch pass images[0].")
    _, H, W = image.shape
    h, w = patch_grid_size(H, patch_size), patch_grid_size(W, patch_size)
    ax.imshow(to_display(image, rgb=True), interpolation="nearest")
    for k in range(1, h):
        ax.axhline(k * patch_size - 0.5, color="white", linewidth=0.8)
    for k in range(1, w):
        ax.axvline(k * patch_size - 0.5, color="white", linewidth=0.8)
    if number_patches:
        for n in range(h * w):
            r, c = divmod(n, w)
            ax.text((c + 0.5) * patch_size - 0.5, (r + 0.5) * patch_size - 0.5, str(n), color="yellow",
                    ha="center", va="center", fontsize=8,
                    path_effects=[patheffects.withStroke(linewidth=2, foreground="black")])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"width {W} px = {w} patches of {patch_size} px")
    ax.set_ylabel(f"height {H} px = {h} patches of {patch_size} px")
    ax.set_title(f"P = {patch_size}: {h} x {w} = {h * w} tokens\n(+ CLS = {h * w + 1})")


