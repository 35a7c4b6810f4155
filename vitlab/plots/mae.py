"""Plots for lesson 11 (MAE): reconstructions at several mask ratios, loss curves, accuracy against
the number of labels. Each function takes computed results and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import InputShapeError
from ._axes import SEEDS_CAPTION, draw_seeds_against_size, label_sizes

__all__ = ["plot_reconstructions", "plot_loss_curves", "plot_label_efficiency", "MAE_ARM_LABELS"]

DPI = 90
MASK_COLOR = "#4a90d9"  # hidden patches are drawn in this colour

MAE_ARM_LABELS = {  # experiment arm -> legend text
    "probe-mae": "linear probe, MAE encoder (frozen)",
    "probe-random": "linear probe, random encoder (frozen)",
    "finetune-mae": "fine-tuned from MAE",
    "scratch": "trained from scratch",
}


def _grey(image: torch.Tensor) -> np.ndarray:
    """(1, H, W) float -> (H, W) array; NaN stays NaN (drawn in MASK_COLOR)."""
    if image.ndim != 3 or image.shape[0] != 1:
        raise InputShapeError(f"expected one grey image (1, H, W), got {tuple(image.shape)}.")
    return image[0].detach().cpu().float().numpy()


def plot_reconstructions(images: torch.Tensor, reconstructions: Mapping[float, Mapping[str, torch.Tensor]],
                         value_range: "tuple[float, float]" = (-1.0, 1.0),
                         title: str = "MAE reconstructions: hidden patches (blue) filled in by the decoder") -> Figure:
    """One row per image: the original, then for each mask ratio what the encoder saw and the
    reconstruction (visible patches true, masked patches predicted).

    Args:
        images: (B, 1, H, W) preprocessed images.
        reconstructions: {mask_ratio: MAE.reconstruct(images, mask_ratio)} (``masked``, ``pasted`` used).
        value_range: pixel values mapped to black and white.
        title: the figure's title ("" for none).
    """
    if not reconstructions:
        raise InputShapeError("plot_reconstructions needs at least one mask ratio's reconstruction.")
    if images.ndim != 4:
        raise InputShapeError(f"images must be (B, 1, H, W), got {tuple(images.shape)}.")
    ratios = list(reconstructions)
    B = images.shape[0]
    cols = 1 + 2 * len(ratios)
    fig = Figure(figsize=(1.1 * cols, 1.15 * B + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(B, cols, squeeze=False)
    cmap = mpl.colormaps["gray"].with_extremes(bad=MASK_COLOR)
    for b in range(B):
        panels = [("original", images[b])]
        for r in ratios:
            panels += [(f"{r:.0%} masked", reconstructions[r]["masked"][b]),
                       (f"{r:.0%}: rebuilt", reconstructions[r]["pasted"][b])]
        for ax, (label, image) in zip(axes[b], panels):
            ax.imshow(np.ma.masked_invalid(_grey(image)), cmap=cmap, vmin=value_range[0], vmax=value_range[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_loss_curves(histories: Mapping[str, Sequence[Mapping]], ylabel: str = "training loss") -> Figure:
    """Loss per epoch for one or more runs.

    Args:
        histories: {run name: [{'epoch': int, 'loss': float}, ...]}.
    """
    fig = Figure(figsize=(4.2, 2.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for name, history in histories.items():
        ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_label_efficiency(table: Mapping[str, Mapping[int, Sequence[float]]], title: str = "") -> Figure:
    """Test accuracy against the number of labelled training images, one line per arm.

    Args:
        table: {arm: {labelled images: [accuracy per seed]}} (``vitlab.experiments.mae.accuracy_table``).
            Drawn by :func:`~vitlab.plots._axes.draw_seeds_against_size` (mean, ± 1 std band, seeds).
    """
    if not table:
        raise InputShapeError("plot_label_efficiency got no results to plot.")
    fig = Figure(figsize=(5.0, 3.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for i, (arm, by_size) in enumerate(table.items()):
        draw_seeds_against_size(ax, by_size, color=f"C{i}", label=MAE_ARM_LABELS.get(arm, arm),
                                linestyle="--" if arm.startswith("probe") else "-")
    ax.set_xscale("log")
    label_sizes(ax, table)
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{title}\n({SEEDS_CAPTION})" if title else SEEDS_CAPTION, fontsize=9)
    return fig
