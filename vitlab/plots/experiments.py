"""Plots for the data-scale (lesson 04) and hybrid (lesson 05) reproductions.

Each function takes the summaries made by ``vitlab.experiments.data_scale`` / ``.hybrid`` (plain dicts
of numbers) and returns a matplotlib Figure; nothing here trains or analyses anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import ConfigError
from ._axes import SEEDS_CAPTION, draw_seeds_against_size

__all__ = ["plot_data_scale", "plot_accuracy_vs_compute", "plot_stage_choice"]

DPI = 90  # small figures keep the notebooks light
COLORS = {"vit": "tab:blue", "hybrid": "tab:purple", "cnn": "tab:orange"}
NAMES = {"vit": "ViT", "hybrid": "hybrid", "cnn": "ResNet"}


def _color(arm: str, i: int) -> str:
    return COLORS.get(arm, f"C{(i + 3) % 10}")


def _paper_data_scale_panel(ax, paper: Mapping) -> None:
    """The paper's Table 5: ImageNet top-1 against pre-training images, one line per ViT."""
    sizes = np.array(list(paper["sizes"].values()), dtype=float)
    for i, (model, top1) in enumerate(paper["top1"].items()):
        ax.plot(sizes, top1, marker="o", ms=4, color=f"C{i}", label=model)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{name}\n{size / 1e6:g}M" for name, size in paper["sizes"].items()], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("pre-training images")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.set_title("Paper, Table 5 (ViT only)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def plot_data_scale(summary: Mapping[str, Mapping], landmarks: "Mapping | None" = None,
                    paper: "Mapping | None" = None, labels: "Mapping[str, str] | None" = None,
                    title: str = "Fashion-MNIST, trained from scratch") -> Figure:
    """Test accuracy against training-set size (log axis), drawn by :func:`draw_seeds_against_size`.

    Args:
        summary: ``{arm: {'sizes': (S,), 'mean': (S,), 'std': (S,), 'per_seed': [S arrays]}}``,
            accuracies as fractions (:func:`vitlab.experiments.data_scale.summarize`).
        landmarks: :func:`vitlab.experiments.data_scale.gap_landmarks` output; marks the largest gap
            (an arrow) and the smallest gap or the crossing.
        paper: the paper's numbers (``data_scale.PAPER_TABLE5``) for a panel on the left.
        labels: legend text per arm.
        title: title of our panel.
    Returns:
        The Figure (one panel, or two with ``paper``).
    """
    if not summary:
        raise ConfigError("plot_data_scale needs at least one arm's results.")
    labels = dict(labels or {})
    fig = Figure(figsize=(9.6 if paper else 5.6, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if paper else 1, squeeze=False)[0]
    if paper:
        _paper_data_scale_panel(axes[0], paper)
    ax = axes[-1]
    for i, (arm, s) in enumerate(summary.items()):
        by_size = {int(size): list(accs) for size, accs in zip(s["sizes"], s["per_seed"])}
        draw_seeds_against_size(ax, by_size, color=_color(arm, i), label=labels.get(arm, NAMES.get(arm, arm)))
    if landmarks is not None:
        _mark_gap(ax, summary, landmarks)
    ax.set_xscale("log")
    all_sizes = sorted({int(x) for s in summary.values() for x in s["sizes"]})
    ax.set_xticks(all_sizes, [_size_label(x) for x in all_sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + (f"\n({SEEDS_CAPTION})" if paper is None else ""), fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def _size_label(size: float) -> str:
    return f"{size / 1000:g}k" if size >= 1000 else f"{size:g}"


def _mark_gap(ax, summary: Mapping, landmarks: Mapping) -> None:
    ahead, behind = landmarks.get("ahead", "cnn"), landmarks.get("behind", "vit")
    if ahead not in summary or behind not in summary:
        return
    sizes = np.asarray(landmarks["sizes"])

    def mean_at(arm: str, size: int) -> float:
        s = summary[arm]
        return 100 * float(np.asarray(s["mean"])[np.asarray(s["sizes"]) == size][0])

    def label(size: int, text: str, color: str) -> None:
        top, bottom = mean_at(ahead, size), mean_at(behind, size)
        left = size == sizes.max()  # the last size: write on the left, inside the axes
        ax.annotate(text, xy=(size, (top + bottom) / 2), xytext=(-6 if left else 6, 0), textcoords="offset points",
                    fontsize=7, va="center", ha="right" if left else "left", color=color)

    size = landmarks["largest_at"]
    ax.annotate("", xy=(size, mean_at(behind, size)), xytext=(size, mean_at(ahead, size)),
                arrowprops=dict(arrowstyle="<->", color="black", lw=1.1))
    label(size, f"largest gap\n{landmarks['largest_gap'] * 100:+.1f} pts", "black")
    for before, after in landmarks.get("crossings", []):
        ax.axvspan(before, after, color="green", alpha=0.08)
        ax.annotate("crossing", xy=(np.sqrt(before * after), 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    ha="center", color="green")
    if not landmarks.get("crossings") and landmarks["smallest_at"] != landmarks["largest_at"]:
        size = landmarks["smallest_at"]
        ax.plot([size, size], [mean_at(behind, size), mean_at(ahead, size)], color="gray", lw=2.5, alpha=0.6)
        label(size, f"smallest gap\n{landmarks['smallest_gap'] * 100:+.1f} pts", "dimgray")


def _one_two_five_ticks(ax, values) -> None:
    """Label a log x axis at 1, 2, 5 x 10^k within the range of ``values``, as plain numbers ("0.05", "2",
    "500"), with no minor labels: matplotlib's own minor labels overlap on ranges of one or two decades."""
    values = np.asarray(values, dtype=float)
    low, high = values.min(), values.max()
    ticks = [m * 10.0 ** k for k in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)
             for m in (1, 2, 5)]
    ticks = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _paper_compute_panel(ax, paper: Mapping) -> None:
    for i, (family, points) in enumerate(paper.items()):
        flops = [p[1] for p in points]
        top1 = [p[2] for p in points]
        ax.plot(flops, top1, marker="o", ms=5, color=_color(family, i), label=NAMES.get(family, family))
        for name, x, y in points:
            ax.annotate(name, (x, y), xytext=(-4, 5) if family == "hybrid" else (3, -9), textcoords="offset points",
                        fontsize=6, ha="right" if family == "hybrid" else "left")
    ax.set_xscale("log")
    _one_two_five_ticks(ax, [p[1] for points in paper.values() for p in points])
    ax.set_xlabel("pre-training compute (exaFLOPs)")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.set_title("Paper, Table 6 (JFT-300M pre-training)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both")


def plot_accuracy_vs_compute(points: Sequence[Mapping], paper: "Mapping | None" = None,
                             title: str = "Fashion-MNIST, trained from scratch") -> Figure:
    """Test accuracy against counted training FLOPs, one line per family (like the paper's Figure 5).

    Args:
        points: dicts with 'model', 'family', 'epochs', 'train_flops', 'mean', 'std', 'accuracies'
            (:func:`vitlab.experiments.hybrid.summarize`, filtered to the points to show).
        paper: the paper's Table 6 (``hybrid.PAPER_TABLE6``) for a panel on the left.
        title: title of our panel.
    Returns:
        The Figure.
    """
    if not points:
        raise ConfigError("plot_accuracy_vs_compute needs at least one point.")
    fig = Figure(figsize=(9.8 if paper else 5.6, 3.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if paper else 1, squeeze=False)[0]
    if paper:
        _paper_compute_panel(axes[0], paper)
    ax = axes[-1]
    families = list(dict.fromkeys(p["family"] for p in points))
    for i, family in enumerate(families):
        color = _color(family, i)
        mine = sorted((p for p in points if p["family"] == family), key=lambda p: p["train_flops"])
        x = np.array([p["train_flops"] for p in mine]) / 1e12  # teraFLOPs
        y = 100 * np.array([p["mean"] for p in mine])
        err = 100 * np.array([p["std"] for p in mine])
        ax.errorbar(x, y, yerr=err, marker="o", ms=4, color=color, capsize=2, label=NAMES.get(family, family))
        for p, xi in zip(mine, x):
            ax.scatter(np.full(len(p["accuracies"]), xi), 100 * np.asarray(p["accuracies"]), s=8, color=color,
                       alpha=0.45, lw=0)
            tag = p["model"].split("-", 1)[1].upper() + (f" ({p['epochs']} ep)" if p["epochs"] == 1 else "")
            ax.annotate(tag, (xi, 100 * p["mean"]), xytext=(3, -10), textcoords="offset points", fontsize=6,
                        color=color)
    ax.set_xscale("log")
    _one_two_five_ticks(ax, [p["train_flops"] / 1e12 for p in points])
    ax.set_xlabel("training compute (teraFLOPs, counted)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return fig


def plot_stage_choice(points: Sequence[Mapping], title: str = "Which ResNet stage feeds the ViT") -> Figure:
    """Accuracy (mean ± std, every seed) and training compute of hybrids fed by different stages.

    Args:
        points: dicts with 'stage', 'tokens', 'train_flops', 'mean', 'std', 'accuracies'
            (:func:`vitlab.experiments.hybrid.stage_points`).
        title: the figure's title.
    Returns:
        The Figure: accuracy per stage (left), training compute per stage (right).
    """
    if not points:
        raise ConfigError("plot_stage_choice needs at least one hybrid point.")
    fig = Figure(figsize=(7.2, 3.0), dpi=DPI, layout="constrained")
    acc_ax, flop_ax = fig.subplots(1, 2)
    names = [f"stage {p['stage']}\n{p['tokens']} tokens" for p in points]
    x = np.arange(len(points))
    acc_ax.errorbar(x, [100 * p["mean"] for p in points], yerr=[100 * p["std"] for p in points], fmt="o",
                    color=COLORS["hybrid"], capsize=3)
    for xi, p in zip(x, points):
        acc_ax.scatter(np.full(len(p["accuracies"]), xi), 100 * np.asarray(p["accuracies"]), s=10,
                       color=COLORS["hybrid"], alpha=0.45, lw=0)
    acc_ax.set_xticks(x, names, fontsize=8)
    acc_ax.set_xlim(-0.5, len(points) - 0.5)
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.grid(alpha=0.3, axis="y")
    flop_ax.bar(x, [p["train_flops"] / 1e12 for p in points], color=COLORS["hybrid"], alpha=0.6)
    flop_ax.set_xticks(x, names, fontsize=8)
    flop_ax.set_ylabel("training compute (teraFLOPs)")
    flop_ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    return fig
