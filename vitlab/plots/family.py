"""Plots for the ViT family lessons (09 T2T-ViT, 10 Swin): img2col, soft-split windows, token counts,
Swin's windows, cyclic-shift regions and attention masks, and the experiments' results.

Each function takes computed results (tensors, dicts of numbers) and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import InputShapeError
from ._axes import SEEDS_CAPTION, draw_seeds_against_size, label_sizes

__all__ = ["plot_img2col", "plot_soft_split_windows", "plot_token_counts", "plot_window_grid",
           "plot_shift_regions", "plot_window_masks", "plot_accuracy_vs_train_size", "plot_arm_accuracies"]

DPI = 85  # small figures keep the notebooks light


def _numpy(values, what: str, ndim: int) -> np.ndarray:
    array = values.detach().cpu().float().numpy() if torch.is_tensor(values) else np.asarray(values, dtype=float)
    if array.ndim != ndim:
        raise InputShapeError(f"{what} must be {ndim}-D, got shape {tuple(array.shape)}.")
    return array


def _write_values(ax, array: np.ndarray, fmt: str = "{:g}", fontsize: float = 8) -> None:
    middle = (np.nanmax(array) + np.nanmin(array)) / 2
    for (r, c), value in np.ndenumerate(array):
        ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=fontsize,
                color="white" if value < middle else "black")


def plot_img2col(image: torch.Tensor, columns: torch.Tensor, *, kernel: int, title: str = "") -> Figure:
    """A tiny image and the matrix ``nn.Unfold`` makes of it: one row per window (a token).

    Args:
        image: (H, W) values of a one-channel image (small: every value is written).
        columns: (L, kernel * kernel) the unfolded windows, tokens first (``soft_split(...)[0]``).
        kernel: the window side (for the column labels).
        title: a title for the figure.
    Returns:
        a Figure with two panels: the image and the token matrix.
    """
    img = _numpy(image, "image", 2)
    cols = _numpy(columns, "columns", 2)
    if cols.shape[1] != kernel * kernel:
        raise InputShapeError(f"columns must have kernel*kernel = {kernel * kernel} entries per row, "
                              f"got shape {cols.shape}.")
    fig = Figure(figsize=(1.6 + 0.42 * (cols.shape[1] + img.shape[1]), 1.0 + 0.3 * max(cols.shape[0], img.shape[0])),
                 dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[img.shape[1], cols.shape[1]])
    for ax, array in ((left, img), (right, cols)):
        ax.imshow(array, cmap="viridis")
        _write_values(ax, array)
    left.set_title(f"image {img.shape[0]}x{img.shape[1]}", fontsize=9)
    left.set_xticks([]), left.set_yticks([])
    right.set_title(f"unfolded: {cols.shape[0]} tokens\nx {cols.shape[1]} values", fontsize=9)
    right.set_yticks(range(cols.shape[0]), [f"token {i}" for i in range(cols.shape[0])], fontsize=7)
    right.set_xticks(range(cols.shape[1]), [f"({r},{c})" for r in range(kernel) for c in range(kernel)],
                     fontsize=7, rotation=90)
    right.set_xlabel("position in the window (row, column)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_soft_split_windows(image: torch.Tensor, *, kernel: int, stride: int, padding: int,
                            windows: Sequence[tuple[int, int]] = ((0, 0), (6, 6), (6, 7), (7, 7)),
                            title: str = "") -> Figure:
    """Some windows of a soft split drawn over the zero-padded image (padding in grey): they overlap.

    Args:
        image: (H, W) or (1, H, W) image (uint8 or float).
        kernel, stride, padding: of the soft split.
        windows: (row, column) positions of the windows to outline, in the output token grid.
        title: figure title; default says the split and the number of tokens.
    Returns:
        a Figure with one panel.
    """
    img = _numpy(image[0] if torch.is_tensor(image) and image.ndim == 3 else image, "image", 2)
    H, W = img.shape
    padded = np.pad(img, padding, constant_values=np.nan)  # NaN: drawn in the colormap's "bad" grey
    grid_h = (H + 2 * padding - kernel) // stride + 1
    grid_w = (W + 2 * padding - kernel) // stride + 1
    fig = Figure(figsize=(4.6, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["gray"].with_extremes(bad="0.55")
    ax.imshow(padded, cmap=cmap, extent=(-padding - 0.5, W + padding - 0.5, H + padding - 0.5, -padding - 0.5))
    colours = colormaps["tab10"]
    for i, (r, c) in enumerate(windows):
        if not (0 <= r < grid_h and 0 <= c < grid_w):
            raise InputShapeError(f"window ({r}, {c}) is outside the {grid_h}x{grid_w} token grid.")
        top, left = r * stride - padding - 0.5, c * stride - padding - 0.5
        ax.add_patch(Rectangle((left, top), kernel, kernel, fill=False, ec=colours(i % 10), lw=2,
                               clip_on=False, label=f"token ({r}, {c})"))
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or f"soft split k={kernel}, s={stride}, p={padding}:\n{grid_h}x{grid_w} = "
                          f"{grid_h * grid_w} overlapping windows", fontsize=9)
    return fig


def plot_token_counts(stages: Sequence[Mapping], *, title: str = "Tokens at each stage") -> Figure:
    """Bars of the number of tokens at each stage, each labelled with its grid and token width.

    Args:
        stages: dicts with ``stage`` (name or index), ``tokens``, ``width`` and optionally ``grid``,
            e.g. ``T2TViT.token_counts()`` or ``Swin.token_counts()``.
        title: figure title.
    Returns:
        a Figure with one horizontal bar chart (log scale).
    """
    if not stages:
        raise InputShapeError("no stages to plot.")
    names = [s["stage"] if isinstance(s["stage"], str) else f"stage {s['stage']}" for s in stages]
    tokens = [s["tokens"] for s in stages]
    fig = Figure(figsize=(6.4, 0.5 + 0.42 * len(stages)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(stages))[::-1]
    ax.barh(y, tokens, color="tab:blue", alpha=0.75)
    for yi, s in zip(y, stages):
        grid = f"{s['grid']}x{s['grid']}, " if "grid" in s else ""
        ax.text(s["tokens"] * 1.05, yi, f"{s['tokens']} tokens ({grid}width {s['width']})", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(tokens) * 12)
    ax.set_xlabel("tokens (log scale)", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def _window_lines(ax, grid_size: int, window_size: int, offset: int, colour: str, lw: float = 2.0) -> None:
    starts = [p for p in range(offset % window_size, grid_size + 1, window_size)]
    for p in sorted(set([0, grid_size] + starts)):
        ax.axhline(p - 0.5, color=colour, lw=lw)
        ax.axvline(p - 0.5, color=colour, lw=lw)


def plot_window_grid(grid_size: int, window_size: int, shift_size: int, *,
                     image: "torch.Tensor | None" = None) -> Figure:
    """Swin's regular windows and its shifted windows on the token grid (the original, unrolled frame).

    Args:
        grid_size: side of the token grid.
        window_size: side of a window.
        shift_size: shift of the second block's windows.
        image: optional (H, W) or (1, H, W) image drawn under the grid (stretched over it).
    Returns:
        a Figure with two panels: W-MSA windows, SW-MSA windows.
    """
    fig = Figure(figsize=(6.4, 3.5), dpi=DPI, layout="constrained")
    panels = fig.subplots(1, 2)
    if image is not None:
        img = _numpy(image[0] if torch.is_tensor(image) and image.ndim == 3 else image, "image", 2)
    for ax, shift, name in ((panels[0], 0, "W-MSA: regular windows"),
                            (panels[1], shift_size, f"SW-MSA: windows moved by {shift_size}")):
        if image is not None:
            ax.imshow(img, cmap="gray", extent=(-0.5, grid_size - 0.5, grid_size - 0.5, -0.5))
        else:
            ax.imshow(np.zeros((grid_size, grid_size)), cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks(np.arange(-0.5, grid_size, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, grid_size, 1), minor=True)
        ax.grid(which="minor", color="0.75", lw=0.3)
        ax.tick_params(which="both", length=0, labelsize=7)
        _window_lines(ax, grid_size, window_size, shift, "tab:red")
        cuts = len({p for p in range(shift % window_size, grid_size + 1, window_size)} - {0, grid_size}) + 1
        ax.set_title(f"{name}\n{cuts}x{cuts} windows", fontsize=9)
    fig.suptitle(f"{grid_size}x{grid_size} tokens, window {window_size}", fontsize=10)
    return fig


def plot_shift_regions(region_ids: torch.Tensor, *, window_size: int,
                       title: str = "Region ids after the cyclic shift") -> Figure:
    """The rolled grid coloured by region id, with the windows of the rolled grid drawn on it.

    Args:
        region_ids: (h, w) ints, e.g. ``shifted_window_regions(14, 7, 3)``.
        window_size: side of a window (thick lines).
        title: figure title.
    Returns:
        a Figure with one panel; each token shows its region id.
    """
    ids = _numpy(region_ids, "region_ids", 2)
    h, w = ids.shape
    fig = Figure(figsize=(0.9 + 0.3 * w, 0.7 + 0.3 * h), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(ids, cmap="Pastel1", vmin=0, vmax=8.99)
    for (r, c), value in np.ndenumerate(ids):
        ax.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=7)
    _window_lines(ax, h, window_size, 0, "black", lw=2.5)
    ax.set_xticks(range(w)), ax.set_yticks(range(h))
    ax.tick_params(labelsize=6, length=0)
    ax.set_title(title, fontsize=9)
    return fig


def plot_window_masks(mask: torch.Tensor, *, window_names: "Sequence[str] | None" = None,
                      title: str = "Attention mask of each window (dark: blocked)") -> Figure:
    """Each window's (N, N) mask: light where query i may attend to key j, dark where it may not.

    Args:
        mask: (nW, N, N), 0 = allowed, negative = blocked (``shifted_window_mask(...)``).
        window_names: a title per window; default "window k".
        title: figure title.
    Returns:
        a Figure with one panel per window.
    """
    m = _numpy(mask, "mask", 3)
    nW = m.shape[0]
    names = list(window_names) if window_names is not None else [f"window {k}" for k in range(nW)]
    fig = Figure(figsize=(2.3 * nW + 0.3, 2.6), dpi=DPI, layout="constrained")
    for ax, window, name in zip(fig.subplots(1, nW, squeeze=False)[0], m, names):
        ax.imshow(window < 0, cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
        ax.set_title(f"{name}: {int((window == 0).sum())} of {window.size} pairs", fontsize=8)
        ax.set_xlabel("key token", fontsize=7)
        ax.set_ylabel("query token", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return fig


def _spread(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def plot_accuracy_vs_train_size(table: Mapping[str, Mapping[int, Sequence[float]]], *,
                                title: str = "Test accuracy against training-set size") -> Figure:
    """Test accuracy of each arm against the number of training images (:func:`draw_seeds_against_size`).

    Args:
        table: ``{arm: {train_size: [accuracy per seed, ...]}}`` with accuracies in [0, 1].
        title: figure title.
    Returns:
        a Figure with one panel (log-scale x axis): mean line, ± 1 std band (ddof=1), a dot per seed.
    """
    if not table:
        raise InputShapeError("no results to plot.")
    fig = Figure(figsize=(5.6, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    for i, (arm, by_size) in enumerate(table.items()):
        seeds = len(by_size[min(by_size)])
        draw_seeds_against_size(ax, by_size, color=colours(i), label=f"{arm} ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.set_xscale("log")
    label_sizes(ax, table)
    ax.set_xlabel("training images", fontsize=9)
    ax.set_ylabel("test accuracy (%)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}\n({SEEDS_CAPTION})", fontsize=10)
    return fig


def plot_arm_accuracies(table: Mapping[str, Sequence[float]], *, details: "Mapping[str, str] | None" = None,
                        title: str = "Test accuracy") -> Figure:
    """One column per arm: a dot per seed and the mean ± one standard deviation.

    Args:
        table: ``{arm: [accuracy per seed, ...]}`` with accuracies in [0, 1].
        details: optional text under each arm's name (e.g. parameters, FLOPs, time).
        title: figure title.
    Returns:
        a Figure with one panel.
    """
    if not table:
        raise InputShapeError("no results to plot.")
    fig = Figure(figsize=(1.6 + 1.7 * len(table), 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    for i, (arm, accs) in enumerate(table.items()):
        mean, std = _spread(accs)
        ax.errorbar([i], [100 * mean], yerr=[100 * std], color=colours(i), marker="_", markersize=24, capsize=6)
        ax.scatter(i + np.linspace(-0.12, 0.12, len(accs)), [100 * a for a in accs], color=colours(i), s=18,
                   alpha=0.7)
        ax.annotate(f"{100 * mean:.2f}%", (i + 0.2, 100 * mean), fontsize=8, va="center")
    labels = [arm + (f"\n{details[arm]}" if details and arm in details else "") for arm in table]
    ax.set_xticks(range(len(table)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(table) - 0.2)
    ax.set_ylabel("test accuracy (%)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig
