"""Helpers shared by the plot modules: the one image-to-display conversion, and axis ticks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..errors import InputShapeError


def to_display(image: "torch.Tensor | np.ndarray", rgb: bool = False) -> np.ndarray:
    """The one way vitlab turns an image into what ``imshow`` shows.

    uint8 pixels are divided by 255; floats already in [0, 1] are kept; other floats (e.g. a
    preprocessed image in [-1, 1]) are stretched to [0, 1] for display only.

    Args:
        image: (H, W), (1, H, W) or (3, H, W).
        rgb: return (H, W, 3) for a grey image too (its channel repeated), e.g. to paste pieces together.
    Returns:
        (H, W) floats for a grey image (show with ``cmap='gray', vmin=0, vmax=1``), else (H, W, 3).
    """
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor):
        uint8 = image.dtype == torch.uint8
        values = image.detach().cpu().float().numpy()
    else:
        uint8 = image.dtype == np.uint8
        values = np.asarray(image, dtype=np.float64)
    if values.ndim == 3 and values.shape[0] in (1, 3):
        values = values[0] if values.shape[0] == 1 else values.transpose(1, 2, 0)
    elif values.ndim != 2:
        raise InputShapeError(f"an image must be (H, W), (1, H, W) or (3, H, W), got shape {shape}. "
                              "For a batch, pick one image: images[0].")
    if uint8:
        values = values / 255.0
    else:
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if rgb and values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    return values


def label_sizes(ax, table: Mapping[str, Mapping[int, object]]) -> None:
    """Tick a log x axis at every training-set size in ``table`` ({arm: {size: ...}}), labelled as plain
    numbers ("100", "1,000"), with no minor ticks."""
    sizes = sorted({size for by_size in table.values() for size in by_size})
    ax.set_xticks(sizes, [f"{size:,}" for size in sizes])
    ax.minorticks_off()


def draw_seeds_against_size(ax, by_size: Mapping[int, "list[float]"], *, color, label: str,
                            linestyle: str = "-") -> None:
    """The one way vitlab draws accuracy against training-set size: the mean over seeds as a line, a
    band of ± one standard deviation over seeds (the sample standard deviation, ddof=1; no band with
    one seed), and every seed as a dot. Accuracies are fractions; the axis shows percent.

    Args:
        ax: the matplotlib axes (its x axis is set to a log scale elsewhere).
        by_size: {training images: [accuracy per seed]}.
    """
    sizes = sorted(by_size)
    runs = [100 * np.asarray(by_size[s], dtype=float) for s in sizes]
    mean = np.array([r.mean() for r in runs])
    std = np.array([r.std(ddof=1) if len(r) > 1 else 0.0 for r in runs])
    ax.plot(sizes, mean, marker="o", ms=4, color=color, label=label, linestyle=linestyle)
    if any(len(r) > 1 for r in runs):
        ax.fill_between(sizes, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    for size, r in zip(sizes, runs):
        ax.scatter(np.full(len(r), size), r, s=9, color=color, alpha=0.55, lw=0)


SEEDS_CAPTION = "line: mean over seeds, band: ± 1 std (ddof=1), dots: seeds"
