"""Figures of what a ViT learned (ViT paper, Fig. 6 and 7): each takes analysis results, returns a Figure."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import ConfigError
from ._axes import to_display  # the one image-to-array conversion

__all__ = ["plot_filters", "plot_pos_similarity", "plot_attention_distance", "plot_rollout"]


def plot_filters(components: torch.Tensor, explained: "torch.Tensor | None" = None, columns: int = 7,
                 title: str = "Principal components of the patch-embedding filters") -> Figure:
    """Grid of filters, each scaled to its own range, like the paper's Fig. 7 (left).

    Args:
        components: (k, C, P, P) from :func:`vitlab.analysis.patch_embedding_components`; C = 1 is drawn
            in grey, C = 3 in colour.
        explained: (k,) explained-variance ratios, written above each filter as a percentage.
        columns: filters per row.
        title: the figure's title.
    Returns:
        Figure with one panel per component.
    """
    k = components.shape[0]
    columns = min(columns, k)
    rows = math.ceil(k / columns)
    fig = Figure(figsize=(columns * 1.0, rows * 1.2 + 0.6), dpi=90)
    for i in range(k):
        ax = fig.add_subplot(rows, columns, i + 1)
        c = components[i].detach().float()
        c = (c - c.min()) / (c.max() - c.min()).clamp_min(1e-12)
        ax.imshow(c[0].numpy() if c.shape[0] == 1 else c.permute(1, 2, 0).numpy(), cmap="gray")
        ax.set_xticks([]), ax.set_yticks([])
        if explained is not None:
            ax.set_title(f"{100 * explained[i].item():.1f}%", fontsize=7, pad=2)
    fig.suptitle(title + ("\n(above each: the share of the filters' variance it explains)" if explained is not None
                          else ""), fontsize=10)
    fig.tight_layout(h_pad=0.6)
    return fig


def plot_pos_similarity(similarity: torch.Tensor, title: str = "Position-embedding similarity") -> Figure:
    """Grid of grids, like the paper's Fig. 7 (centre): panel (i, j) shows patch (i, j)'s cosine
    similarity with every patch.

    Args:
        similarity: (rows, cols, rows, cols) from :func:`vitlab.analysis.pos_embed_similarity`.
        title: the figure's title.
    Returns:
        Figure with rows x cols panels on one colour scale from -1 to 1, and a colour bar.
    """
    rows, cols = similarity.shape[:2]
    panel = min(0.8, 8.0 / max(rows, cols))  # inches per panel: a 14 x 14 grid stays about 9 inches wide
    fig = Figure(figsize=(cols * panel + 1.2, rows * panel + 0.6), dpi=90, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            image = ax.imshow(similarity[i, j].detach().float().numpy(), vmin=-1, vmax=1, cmap="viridis")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=7)
            if i == rows - 1:
                ax.set_xlabel(str(j + 1), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("input patch column", fontsize=8)
    fig.supylabel("input patch row", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    return fig


def plot_attention_distance(distance: torch.Tensor, image_size: "int | None" = None,
                            title: str = "Mean attention distance per head", label: "str | None" = None,
                            ax=None, reference: "float | None" = None,
                            reference_label: str = "uniform attention", offset: float = 0.0,
                            largest: "float | None" = None) -> Figure:
    """One dot per head against network depth, like the paper's Fig. 7 (right).

    Args:
        distance: (L, H) mean attention distance in pixels (average over images first).
        image_size: draw the image side as a reference line.
        title: the axes' title.
        label: legend entry for these dots (to tell two overlaid models apart).
        ax: draw into an existing Axes (to overlay two models); otherwise a new Figure.
        reference: draw a labelled horizontal line at this distance, e.g. the distance of uniform
            attention (every head that looks everywhere equally sits on it).
        reference_label: the reference line's legend entry.
        offset: shift the dots this much along the depth axis (e.g. -0.1 and +0.1 for two overlaid
            models), so they do not hide each other.
        largest: the largest distance possible on the grid (corner patch to corner patch, e.g.
            ``patch_distances(grid, patch).max()``): drawn as a line, and the axis then runs from 0 to
            it, so that the dots are seen on the whole range a head could use rather than zoomed in.
    Returns:
        the Figure holding the axes.
    """
    L, H = distance.shape
    if ax is None:
        fig = Figure(figsize=(4.5, 3.2), dpi=90)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    depth = np.repeat(np.arange(1, L + 1), H) + offset
    ax.scatter(depth, distance.detach().float().flatten().numpy(), s=14, alpha=0.8, label=label)
    if image_size is not None:
        ax.axhline(image_size, color="gray", lw=0.8, ls="--", label=f"image side ({image_size} px)")
    if reference is not None:
        ax.axhline(reference, color="black", lw=0.8, ls=":", label=reference_label)
    if largest is not None:
        ax.axhline(largest, color="gray", lw=0.8, ls="-.", label=f"largest possible ({largest:.1f} px)")
        ax.set_ylim(0, 1.08 * largest)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(range(1, L + 1))
    ax.set_title(title, fontsize=10)
    if label is not None or reference is not None or image_size is not None or largest is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, titles: "list[str] | None" = None,
                 alpha: float = 0.55, vmax: "float | str | None" = None,
                 title: str = "Attention rollout: where the CLS token draws its information",
                 uniform: bool = True) -> Figure:
    """Images (top row) and the same images with their rollout maps upsampled and overlaid (bottom row).

    Args:
        images: (B, C, H, W) uint8 or float images.
        maps: (B, h, w) rollout maps, e.g. from :func:`vitlab.analysis.rollout_to_map`.
        titles: one title per image (e.g. the class).
        alpha: opacity of the overlay.
        vmax: the top of the one colour scale every map is drawn on, from 0: None takes the largest value
            of the maps shown; pass the same number to several figures to compare them. ``"each"``
            stretches every map to its own range instead (shows where a map is highest, however flat
            it is, but not how high: a nearly flat map then looks as peaked as a sharp one).
        title: the figure's title.
        uniform: mark on the colour bar the level every patch would have if a map spread its mass
            evenly (the mean of the maps shown); not drawn for stretched maps.
    Returns:
        Figure with 2 x B panels and a colour bar.
    """
    B = images.shape[0]
    stretched = vmax == "each"
    if isinstance(vmax, str) and not stretched:
        raise ConfigError(f"vmax must be a number, None (the largest value shown) or 'each', not {vmax!r}.")
    shown = maps[:B].detach().float()
    if vmax is None:
        vmax = shown.max().item()
    fig = Figure(figsize=(2.2 * B + 0.9, 4.9), dpi=90, layout="constrained")
    overlay = None
    for b in range(B):
        img = to_display(images[b])
        H, W = img.shape[:2]
        m = shown[b]
        if stretched:
            m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
        ax = fig.add_subplot(2, B, b + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_xticks([]), ax.set_yticks([])
        if titles:
            ax.set_title(titles[b], fontsize=8)
        if b == 0:
            ax.set_ylabel(f"image ({H}x{W} px)", fontsize=8)
        ax = fig.add_subplot(2, B, B + b + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        overlay = ax.imshow(m.numpy(), cmap="jet", alpha=alpha, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
                            interpolation="bilinear", vmin=0.0, vmax=1.0 if stretched else vmax)
        ax.set_xticks([]), ax.set_yticks([])
        if b == 0:
            ax.set_ylabel(f"rollout ({maps.shape[-2]}x{maps.shape[-1]} patches)", fontsize=8)
    bar = fig.colorbar(overlay, ax=fig.axes, shrink=0.6, pad=0.02)
    bar.set_label("rollout weight, each map stretched\nto its own range (1 = its largest)" if stretched
                  else "rollout weight (one scale for all maps)", fontsize=8)
    if uniform and not stretched:
        level = shown.mean().item()
        bar.ax.axhline(level, color="white", lw=1.5)
        bar.ax.axhline(level, color="black", lw=0.8, ls="--")
        top = bar.mappable.get_clim()[1]
        ticks = [t for t in bar.get_ticks() if 0 <= t <= top and abs(t - level) > 0.08 * top]
        bar.set_ticks(ticks + [level], labels=[f"{t:g}" for t in ticks] + [f"uniform {level:.3f}"])
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
