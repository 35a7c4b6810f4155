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

__all__ = ["plot_data_scale", "plot_accuracy_vs_compute", "plot_stage_choice", "plot_inside_by_size"]

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
    fig = Figure(figsize=(9.6 if paper else 5.6, 4.4), dpi=DPI, layout="constrained")
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
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: never over a curve
    ax.grid(alpha=0.3)
    return fig


def _size_label(size: float) -> str:
    return f"{size / 1000:g}k" if size >= 1000 else f"{size:g}"


def _mark_gap(ax, summary: Mapping, landmarks: Mapping) -> None:
    ahead, behind = landmarks.get("ahead", "cnn"), landmarks.get("behind", "vit")
    if ahead not in summary or behind not in summary:
        return

    def mean_at(arm: str, size: int) -> float:
        s = summary[arm]
        return 100 * float(np.asarray(s["mean"])[np.asarray(s["sizes"]) == size][0])

    # The gaps are named in the legend, not written beside the curves, where a label would cover a curve.
    size = landmarks["largest_at"]
    ax.annotate("", xy=(size, mean_at(behind, size)), xytext=(size, mean_at(ahead, size)),
                arrowprops=dict(arrowstyle="<->", color="black", lw=1.1))
    ax.plot([], [], ls="none", marker="$\\updownarrow$", ms=9, color="black",
            label=f"largest gap: {landmarks['largest_gap'] * 100:+.1f} pts at {_size_label(size)}")
    for before, after in landmarks.get("crossings", []):
        ax.axvspan(before, after, color="green", alpha=0.08)
        ax.annotate("crossing", xy=(np.sqrt(before * after), 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    ha="center", color="green")
    if not landmarks.get("crossings") and landmarks["smallest_at"] != landmarks["largest_at"]:
        size = landmarks["smallest_at"]
        ax.plot([size, size], [mean_at(behind, size), mean_at(ahead, size)], color="gray", lw=2.5, alpha=0.6,
                label=f"smallest gap: {landmarks['smallest_gap'] * 100:+.1f} pts at {_size_label(size)}")


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


UNTRAINED_X = 100  # where the untrained model sits on the log size axis (left of the smallest subset)


def _size_axis(ax, sizes: Sequence[int]) -> None:
    ax.set_xscale("log")
    ticks = [UNTRAINED_X] + list(sizes)
    ax.set_xticks(ticks, ["init"] + [_size_label(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale; init = untrained)", fontsize=8)
    ax.grid(alpha=0.3)


def plot_inside_by_size(rows: Sequence[Mapping], *, uniform: float, max_distance: float,
                        top: int = 4, title: str = "What training data does to the inside of the ViT") -> Figure:
    """The ViT paper's Fig. 7 analyses against training-set size, each beside its reference.

    Args:
        rows: :func:`vitlab.experiments.data_scale.inside_by_size` output (size 0 = untrained).
        uniform: the mean attention distance of uniform attention (dotted line).
        max_distance: the largest possible distance, corner to corner (dashed line).
        top: the filter panel shows the variance share of the first ``top`` PCA components.
    Returns:
        A Figure of six panels: lowest and highest layer's distance per head (from 0 to beyond the
        largest distance, then the same zoomed in), position-embedding correlation with grid distance (0: no 2-D layout),
        the rollout's share on the garment (against the base rate of garment patches), the filters'
        PCA spectrum per size (seed-averaged), and its first ``top`` components' share.
    """
    if not rows:
        raise ConfigError("plot_inside_by_size needs at least one row of inside_by_size.")
    sizes = sorted({int(r["size"]) for r in rows if r["size"] > 0})
    x_of = {0: UNTRAINED_X, **{s: s for s in sizes}}
    fig = Figure(figsize=(12.5, 6.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 3)
    depth = rows[0]["distance"].shape[0]
    layers = [(0, "lowest layer (1)", "tab:blue", 0.9), (depth - 1, f"highest layer ({depth})", "tab:red", 1.1)]
    zoom = [min(float(np.asarray(r["distance"]).min()) for r in rows), max(float(np.asarray(r["distance"]).max())
                                                                       for r in rows)]
    for ax, full in [(axes[0, 0], True), (axes[0, 1], False)]:
        for layer, name, colour, shift in layers:
            for r in rows:
                d = np.asarray(r["distance"][layer], dtype=float)  # (H,)
                ax.scatter(np.full(len(d), x_of[int(r["size"])] * shift), d, s=9, alpha=0.55, color=colour, lw=0)
            means = [np.mean([np.asarray(r["distance"][layer]).mean() for r in rows if r["size"] == s])
                     for s in [0] + sizes]
            ax.plot([x_of[s] * shift for s in [0] + sizes], means, color=colour, lw=1.2, marker="o", ms=3,
                    label=f"{name}: heads (dots), mean")
        ax.axhline(uniform, color="black", ls=":", lw=1, label=f"uniform attention ({uniform:.1f} px)")
        if full:
            ax.axhline(max_distance, color="gray", ls="--", lw=1, label=f"largest possible ({max_distance:.1f} px)")
            ax.set_ylim(0, max_distance * 1.25)
            ax.set_title("Mean attention distance per head", fontsize=9)
        else:
            pad = 0.15 * (zoom[1] - zoom[0] + 0.1)
            ax.set_ylim(zoom[0] - pad, zoom[1] + 3 * pad)
            ax.set_title(f"The same, zoomed (largest possible {max_distance:.1f} px is off the scale)", fontsize=9)
        ax.set_ylabel("mean attention distance (px)", fontsize=8)
        _size_axis(ax, sizes)
        ax.legend(fontsize=6.5, loc="upper center", ncol=2)
    panels = [(axes[0, 2], "pos_r", "corr(similarity, grid distance)", "Position embeddings: 2-D layout",
               0.0, "no 2-D layout (0)"),
              (axes[1, 0], "rollout_share", "rollout share on garment (%)", "Rollout: mass on the garment",
               100 * float(np.mean([r["mask_share"] for r in rows])), "uniform map (garment patches' share)")]
    spectra = {s: np.mean([np.asarray(r["spectrum"], dtype=float) for r in rows if r["size"] == s], axis=0)
               for s in [0] + sizes}
    for ax, key, ylabel, panel_title, reference, reference_label in panels:
        scale = 100 if key == "rollout_share" else 1
        by_size = {x_of[int(r["size"])]: [] for r in rows}
        for r in rows:
            by_size[x_of[int(r["size"])]].append(scale * float(r[key]))
        xs = sorted(by_size)
        ax.plot(xs, [np.mean(by_size[x]) for x in xs], marker="o", ms=4, color="tab:blue", label="mean over seeds")
        for x in xs:
            ax.scatter(np.full(len(by_size[x]), x), by_size[x], s=9, color="tab:blue", alpha=0.55, lw=0)
        ax.axhline(reference, color="black", ls=":", lw=1, label=reference_label)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(panel_title, fontsize=9)
        _size_axis(ax, sizes)
        ax.legend(fontsize=7, loc="best")
    ax = axes[1, 1]
    cmap = matplotlib_colormap("viridis")
    for i, s in enumerate([0] + sizes):
        colour = "black" if s == 0 else cmap(i / max(1, len(sizes)))
        ax.plot(np.arange(1, len(spectra[s]) + 1), 100 * spectra[s], color=colour, lw=1.2,
                ls=":" if s == 0 else "-", label="untrained" if s == 0 else f"{_size_label(s)}")
    equal = 100 / len(spectra[0])
    ax.axhline(equal, color="gray", ls="--", lw=0.8, label=f"equal share ({equal:.1f}%)")
    ax.set_xticks(range(1, len(spectra[0]) + 1, 3))
    ax.set_xlabel("principal component", fontsize=8)
    ax.set_ylabel("explained variance (%)", fontsize=8)
    ax.set_title("Patch filters: PCA spectrum (mean over seeds)", fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    ax.grid(alpha=0.3)
    ax = axes[1, 2]
    xs = [x_of[s] for s in [0] + sizes]
    shares = {x_of[int(r["size"])]: [] for r in rows}
    for r in rows:
        shares[x_of[int(r["size"])]].append(100 * float(np.asarray(r["spectrum"])[:top].sum()))
    ax.plot(xs, [np.mean(shares[x]) for x in xs], marker="o", ms=4, color="tab:blue", label="mean over seeds")
    for x in xs:
        ax.scatter(np.full(len(shares[x]), x), shares[x], s=9, color="tab:blue", alpha=0.55, lw=0)
    ax.axhline(np.mean(shares[UNTRAINED_X]), color="black", ls=":", lw=1, label="untrained")
    ax.set_ylabel(f"variance in the first {top} components (%)", fontsize=8)
    ax.set_title(f"Patch filters: first {top} components", fontsize=9)
    _size_axis(ax, sizes)
    ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return fig


def matplotlib_colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]
