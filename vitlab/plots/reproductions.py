"""Figures of the reproductions (ablations, higher resolution): every seed shown, the published number beside.

Each function takes the arrays the experiment modules make from their records
(:func:`vitlab.experiments.ablations.arm_accuracies`, :func:`~vitlab.experiments.ablations.learning_rate_sweep`,
:func:`vitlab.experiments.resolution.condition_accuracies`) and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import ConfigError, InputShapeError

__all__ = ["plot_seed_comparison", "plot_ablation", "plot_lr_sweep", "plot_resolution", "plot_resampled_channels"]

DPI = 90  # small figures keep the notebooks light

# DeiT-B as trained at 224 px, and interpolated + fine-tuned at 384 px: our 28x28 and 56x56 counterparts.
PUBLISHED_ROWS_DEIT_B = {"224x224, as trained": "28x28, as trained",
                         "384x384, interpolated + fine-tuned": "56x56, interpolated + fine-tuned"}


def _rows(panels: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    rows: list[str] = []
    for groups in panels.values():
        rows.extend(label for label in groups if label not in rows)
    return rows


def _draw_seeds(ax, rows: list[str], groups: Mapping[str, Sequence[float]], color: str) -> list[float]:
    """Dots for every seed, a bar for mean ± std, the mean written above; returns every value drawn (%)."""
    drawn = []
    for y, label in enumerate(rows):
        if label not in groups:
            continue
        values = 100 * np.asarray(groups[label], dtype=float)
        if values.size == 0:
            continue
        offsets = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else np.zeros(1)
        ax.scatter(values, y + offsets, s=14, color=color, alpha=0.75, zorder=3)
        mean, std = values.mean(), values.std(ddof=1) if values.size > 1 else 0.0
        ax.errorbar(mean, y, xerr=std if values.size > 1 else None, fmt="|", markersize=14, color="black",
                    capsize=3, zorder=4)
        text = f"{mean:.2f} ± {std:.2f}" if values.size > 1 else f"{mean:.2f}"
        ax.annotate(text, (mean, y - 0.3), ha="center", fontsize=7)
        drawn.extend(values.tolist())
    return drawn


def _pad_limits(ax, values: list[float]) -> None:
    if values:
        low, high = min(values), max(values)
        pad = max(0.5, 0.12 * (high - low))
        ax.set_xlim(low - pad, high + pad)


def plot_seed_comparison(panels: Mapping[str, Mapping[str, Sequence[float]]],
                         reference: "Mapping[str, float] | None" = None, reference_title: str = "published",
                         title: str = "", xlabel: str = "test accuracy (%)",
                         reference_rows: "Mapping[str, str] | None" = None) -> Figure:
    """Accuracy of several conditions, one panel per setting, every seed visible; the published numbers beside.

    Args:
        panels: ``{panel title: {condition label: per-seed accuracies in [0, 1]}}``; the rows are the
            conditions, in order of first appearance, shared by all panels.
        reference: ``{label: accuracy in [0, 1]}`` drawn in a last panel (the paper's table), each number
            on the row of the condition it corresponds to, and labelled with the paper's own name on the
            right; a number with no condition of ours gets a row of its own, empty in our panels. None
            for no such panel.
        reference_title: that panel's title (say which model, data and metric).
        title: the figure's title.
        xlabel: the horizontal axis' label.
        reference_rows: ``{reference label: our condition label}`` where the names differ.
    Returns:
        Figure: dots are seeds, black bars the mean ± standard deviation over seeds, the mean written
        above; each panel's axis is zoomed to its own values, so compare panels by their numbers.
    Raises:
        ConfigError: nothing to plot.
    """
    rows = _rows(panels)
    if not rows:
        raise ConfigError("plot_seed_comparison got no accuracies to plot; run the experiment first.")
    placed = {(reference_rows or {}).get(label, label): (label, 100 * float(value))
              for label, value in (reference or {}).items()}  # our row -> (the paper's name, value in %)
    rows += [row for row in placed if row not in rows]
    n = len(panels) + (1 if reference else 0)
    fig = Figure(figsize=(2.3 + 2.9 * n, 0.55 * len(rows) + 1.3), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, (name, groups) in enumerate(panels.items()):
        ax = axes[i]
        _pad_limits(ax, _draw_seeds(ax, rows, groups, color=f"C{i}"))
        ax.set_yticks(range(len(rows)), rows if i == 0 else [""] * len(rows), fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    if reference:
        ax = axes[-1]
        ys = [y for y, row in enumerate(rows) if row in placed]
        values = [placed[rows[y]][1] for y in ys]
        ax.scatter(values, ys, marker="D", s=22, color="0.3", zorder=3)
        for y, value in zip(ys, values):
            ax.annotate(f"{value:.2f}", (value, y - 0.3), ha="center", fontsize=7)
        _pad_limits(ax, values)
        ax.set_yticks(range(len(rows)), [placed[row][0] if row in placed else "" for row in rows], fontsize=8)
        ax.yaxis.tick_right()
        ax.set_ylim(len(rows) - 0.5, -0.7)
        ax.set_title(reference_title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_ablation(panels: Mapping[str, Mapping[str, Sequence[float]]], paper: "Mapping[str, float] | None" = None,
                  title: str = "Position embedding and classifier head (Fashion-MNIST, fmnist-vit)") -> Figure:
    """The ablations beside the paper's Table 8.

    Args:
        panels: ``{scale title: arm_accuracies(results, scale)}``.
        paper: e.g. :data:`vitlab.experiments.ablations.PAPER_TABLE_8` (fractions).
        title: the figure's title.
    Returns:
        Figure from :func:`plot_seed_comparison`.
    """
    return plot_seed_comparison(panels, reference=paper,
                                reference_title="paper, Table 8\n(ViT-B/16, ImageNet 5-shot linear)",
                                title=title,
                                # Table 8's rows all use the CLS token (the paper's default head); it has no
                                # sin-cos row and we have no relative one: those rows stay empty on one side.
                                reference_rows={name: f"CLS, {name}" for name in paper or {}})


def plot_lr_sweep(sweeps: Mapping[str, Mapping], title: str = "Learning-rate sweep per head (seed of the sweep)"
                  ) -> Figure:
    """Validation accuracy against learning rate for the CLS and the GAP head, the chosen rate starred.

    Args:
        sweeps: ``{scale title: learning_rate_sweep(results, scale)}``: each with 'lrs' (L,),
            'val_accuracy' {'cls': (L,), 'gap': (L,)} in [0, 1], and 'best_lr' {'cls': lr, 'gap': lr}.
        title: the figure's title.
    Returns:
        Figure with one panel per scale, learning rate on a log axis.
    Raises:
        ConfigError: no sweep given.
    """
    if not sweeps:
        raise ConfigError("plot_lr_sweep got no sweeps to plot; run the experiment first.")
    fig = Figure(figsize=(0.6 + 3.2 * len(sweeps), 2.9), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
    for ax, (name, sweep) in zip(axes, sweeps.items()):
        lrs = np.asarray(sweep["lrs"], dtype=float)
        for color, (pool, label) in zip(("C0", "C3"), (("cls", "CLS token"), ("gap", "global average pool"))):
            accs = 100 * np.asarray(sweep["val_accuracy"][pool], dtype=float)
            ax.plot(lrs, accs, "o-", color=color, label=label, markersize=4)
            best = float(sweep["best_lr"][pool])
            ax.plot([best], [accs[int(np.argmin(np.abs(lrs - best)))]], "*", color=color, markersize=13,
                    markeredgecolor="black", zorder=4)
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("peak learning rate", fontsize=8)
        ax.set_ylabel("validation accuracy (%)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="star: chosen", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_resolution(panels: Mapping[str, Mapping[str, Sequence[float]]],
                    published: "Mapping[str, float] | None" = None,
                    title: str = "Moving a 28x28 ViT to 56x56 (Fashion-MNIST, fmnist-vit)") -> Figure:
    """The higher-resolution experiment beside a published pair (DeiT-B at 224 and fine-tuned at 384).

    Args:
        panels: ``{scale title: condition_accuracies(results, scale)}``.
        published: e.g. :data:`vitlab.experiments.resolution.PUBLISHED_DEIT_B` (fractions).
        title: the figure's title.
    Returns:
        Figure from :func:`plot_seed_comparison`.
    """
    return plot_seed_comparison(panels, reference=published,
                                reference_title="DeiT-B, ImageNet top-1\n(Touvron et al., 2021)", title=title,
                                reference_rows=PUBLISHED_ROWS_DEIT_B)


def plot_resampled_channels(before, after, channels: Sequence[int] = (0, 1, 2, 3),
                            title: str = "Position-embedding channels, before and after resampling") -> Figure:
    """A few channels of a position-embedding table drawn as images on the patch grid, before (top row)
    and after (bottom row) resampling to another grid; each channel keeps one colour scale.

    Args:
        before: (rows, cols, D) table on the old grid (patch rows only, no CLS).
        after: (rows', cols', D) the same table resampled.
        channels: which of the D channels to draw.
        title: the figure's title.
    Returns:
        Figure with 2 x len(channels) panels.
    Raises:
        InputShapeError: tables that are not (rows, cols, D) with the same D, or a channel out of range.
    """
    if before.ndim != 3 or after.ndim != 3 or before.shape[-1] != after.shape[-1]:
        raise InputShapeError(f"before and after must be (rows, cols, D) with the same D, got "
                              f"{tuple(before.shape)} and {tuple(after.shape)}; reshape a (1, N, D) table's "
                              "patch rows first.")
    dim = before.shape[-1]
    if not channels or any(not 0 <= c < dim for c in channels):
        raise InputShapeError(f"channels must be non-empty and in [0, {dim}), got {list(channels)}.")
    fig = Figure(figsize=(1.6 * len(channels) + 0.6, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, len(channels), squeeze=False)
    for j, c in enumerate(channels):
        old, new = before[..., c].detach().float().numpy(), after[..., c].detach().float().numpy()
        low, high = min(old.min(), new.min()), max(old.max(), new.max())
        for i, (array, grid) in enumerate(((old, before.shape[:2]), (new, after.shape[:2]))):
            ax = axes[i][j]
            ax.imshow(array, vmin=low, vmax=high, cmap="coolwarm")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"channel {c}, {grid[0]}x{grid[1]}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
