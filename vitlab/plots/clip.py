"""Plots for lesson 12 (CLIP): the image-text similarity matrix, zero-shot accuracy by prompting,
and text-to-image retrieval. Each function takes computed results and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import InputShapeError

__all__ = ["plot_similarity_matrix", "plot_zero_shot", "plot_retrieval"]

DPI = 90


def plot_similarity_matrix(similarity: torch.Tensor, images: torch.Tensor, captions: Sequence[str],
                           title: str = "") -> Figure:
    """The (B, B) image-text similarity matrix of a batch, with the images along the left and the
    captions along the top; the diagonal holds the matching pairs.

    Args:
        similarity: (B, B) cosine similarities (row: image, column: caption).
        images: (B, 1, H, W) the images (uint8 or float).
        captions: B captions.
    """
    B = similarity.shape[0]
    if similarity.shape != (B, B) or images.shape[0] != B or len(captions) != B:
        raise InputShapeError(f"need a (B, B) similarity, B images and B captions; got {tuple(similarity.shape)}, "
                              f"{images.shape[0]} images, {len(captions)} captions.")
    fig = Figure(figsize=(1.6 + 0.55 * B, 1.4 + 0.5 * B), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    values = similarity.detach().cpu().float().numpy()
    im = ax.imshow(values, cmap="viridis", vmin=-1, vmax=1)  # cells at x, y = 0 .. B-1
    for i in range(B):  # each row's image, drawn left of the matrix in the same axes
        ax.imshow(images[i, 0].float().cpu().numpy(), cmap="gray", extent=(-1.45, -0.55, i + 0.45, i - 0.45))
        for j in range(B):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if values[i, j] > 0.3 else "white")
    ax.set_xlim(-1.5, B - 0.5)
    ax.set_ylim(B - 0.5, -0.5)
    ax.set_xticks(range(B), captions, rotation=60, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.6, label="cosine similarity")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_zero_shot(table: Mapping[str, Sequence[float]], title: str = "", chance: "float | None" = 0.1) -> Figure:
    """Zero-shot test accuracy for each way of prompting: a bar at the seed mean, a dot per seed.

    Args:
        table: {prompting: [accuracy per seed]} (``vitlab.experiments.clip.zero_shot_table``).
        chance: draw a line at this accuracy (None: no line).
    """
    if not table:
        raise InputShapeError("plot_zero_shot got no accuracies to plot.")
    names = list(table)
    fig = Figure(figsize=(6.2, 0.8 + 0.26 * len(names)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    means = [100 * np.mean(table[n]) for n in names]
    colors = ["tab:orange" if n.startswith("ensemble") else
              ("tab:gray" if n.startswith("held-out") else "tab:blue") for n in names]
    ax.barh(y, means, color=colors, alpha=0.8)
    for yi, n in zip(y, names):
        ax.plot([100 * a for a in table[n]], [yi] * len(table[n]), "k.", ms=4)
        ax.text(100 * np.mean(table[n]) + 0.5, yi, f"{100 * np.mean(table[n]):.1f}", va="center", fontsize=7)
    if chance is not None:
        ax.axvline(100 * chance, color="red", lw=1, ls=":", label="chance")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("zero-shot test accuracy (%)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_retrieval(queries: Sequence[str], images: torch.Tensor, correct: torch.Tensor,
                   scores: "torch.Tensor | None" = None) -> Figure:
    """Text-to-image retrieval: one row per text query, its best k images left to right; a green
    frame marks an image of the queried class, a red one an image of another class.

    Args:
        queries: Q texts.
        images: (Q, k, 1, H, W) the retrieved images.
        correct: (Q, k) bool.
        scores: (Q, k) similarities, printed under each image (optional).
    """
    if images.ndim != 5 or images.shape[:2] != correct.shape or len(queries) != images.shape[0]:
        raise InputShapeError(f"need Q queries, (Q, k, C, H, W) images and (Q, k) flags; got {len(queries)}, "
                              f"{tuple(images.shape)}, {tuple(correct.shape)}.")
    Q, k = correct.shape
    fig = Figure(figsize=(0.9 * k + 0.3, 1.05 * Q + 0.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(Q, k, squeeze=False)
    for q in range(Q):
        for j in range(k):
            ax = axes[q, j]
            ax.imshow(images[q, j, 0].float().cpu().numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_color("tab:green" if correct[q, j] else "tab:red")
                side.set_linewidth(2.5)
            if scores is not None:
                ax.set_xlabel(f"{scores[q, j]:.2f}", fontsize=6, labelpad=1)
        axes[q, 0].set_title(f"“{queries[q]}”", fontsize=8, loc="left")
    return fig
