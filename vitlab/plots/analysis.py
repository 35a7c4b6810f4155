"""Figures of what a ViT learned (ViT paper, Fig. 6 and 7): each takes analysis results, returns a Figure."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["plot_filters", "plot_pos_similarity", "plot_attention_distance", "plot_rollout"]


def _image_for_display(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float -> (H, W) or (H, W, 3) array in [0, 1] for imshow."""
    img = image.detach().float().cpu()
    if image.dtype == torch.uint8:
        img = img / 255.0
    else:
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def plot_filters(components: torch.Tensor, explained: "torch.Tensor | None" = None, columns: int = 7,
                 title: str = "Principal components of the patch-embedding filters") -> Figure:
    """Grid of filters (k, C, P, P), each scaled to its own range, like the paper's Fig. 7 (left)."""
    k = components.shape[0]
    rows = math.ceil(k / columns)
    fig = Figure(figsize=(columns * 1.0, rows * 1.0 + 0.5), dpi=90)
    for i in range(k):
        ax = fig.add_subplot(rows, columns, i + 1)
        c = components[i].detach().float()
        c = (c - c.min()) / (c.max() - c.min()).clamp_min(1e-12)
        ax.imshow(c[0].numpy() if c.shape[0] == 1 else c.permute(1, 2, 0).numpy(), cmap="gray")
        ax.set_xticks([]), ax.set_yticks([])
        if explained is not None:
            ax.set_title(f"{100 * explained[i].item():.1f}%", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_pos_similarity(similarity: torch.Tensor, title: str = "Position-embedding similarity") -> Figure:
    """Grid of grids (rows, cols, rows, cols): panel (i, j) shows patch (i, j)'s cosine similarity with
    every patch, like the paper's Fig. 7 (centre)."""
    rows, cols = similarity.shape[:2]
    fig = Figure(figsize=(cols * 0.8 + 1.0, rows * 0.8 + 0.5), dpi=90)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            image = ax.imshow(similarity[i, j].numpy(), vmin=-1, vmax=1, cmap="viridis")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=7)
            if i == rows - 1:
                ax.set_xlabel(str(j + 1), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    return fig


def plot_attention_distance(distance: torch.Tensor, image_size: "int | None" = None,
                            title: str = "Mean attention distance per head", label: "str | None" = None,
                            ax=None) -> Figure:
    """One dot per head against network depth, like the paper's Fig. 7 (right).

    Args:
        distance: (L, H) mean attention distance in pixels (average over images first).
        image_size: draw the image side as a reference line.
        ax: draw into an existing Axes (to overlay two models); otherwise a new Figure.
    """
    L, H = distance.shape
    if ax is None:
        fig = Figure(figsize=(4.5, 3.2), dpi=90)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    depth = np.repeat(np.arange(1, L + 1), H)
    ax.scatter(depth, distance.flatten().numpy(), s=14, alpha=0.8, label=label)
    if image_size is not None:
        ax.axhline(image_size, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(range(1, L + 1))
    ax.set_title(title, fontsize=10)
    if label is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, titles: "list[str] | None" = None,
                 alpha: float = 0.55) -> Figure:
    """Images (B, C, H, W) with their rollout maps (B, h, w) upsampled and overlaid."""
    B = images.shape[0]
    fig = Figure(figsize=(2.2 * B, 4.6), dpi=90)
    for b in range(B):
        img = _image_for_display(images[b])
        H, W = img.shape[:2]
        m = maps[b].detach().float()
        m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
        ax = fig.add_subplot(2, B, b + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_xticks([]), ax.set_yticks([])
        if titles:
            ax.set_title(titles[b], fontsize=8)
        ax = fig.add_subplot(2, B, B + b + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.imshow(m.numpy(), cmap="jet", alpha=alpha, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
                  interpolation="bilinear")
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig
