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
