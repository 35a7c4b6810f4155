"""Plots for lesson 03 (training): learning curves, confusion matrix, image grids.

Each function takes computed results (histories, counts, images) and returns a matplotlib Figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import InputShapeError
from ._axes import to_display

__all__ = ["plot_history", "plot_confusion_matrix", "plot_mistakes", "plot_samples"]

DPI = 90  # small figures keep the notebooks light


def _check_images(images: torch.Tensor) -> int:
    if images.ndim != 4:
        raise InputShapeError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}.")
    return images.shape[0]


def _image_grid(images: torch.Tensor, titles: Sequence[str], columns: int, title_colors: Sequence[str]) -> Figure:
    n = _check_images(images)
    if n == 0:
        raise InputShapeError("no images to plot (N = 0).")
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(1.35 * columns, 1.55 * rows + 0.3), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        array = to_display(images[i])
        ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(titles[i], fontsize=7, color=title_colors[i])
    return fig


def _labels_list(name: str, values: "torch.Tensor | Sequence[int]", n: int) -> list[int]:
    values = [int(v) for v in (values.tolist() if torch.is_tensor(values) else values)]
    if len(values) != n:
        raise InputShapeError(f"{name} must have one entry per image ({n}), got {len(values)}.")
    return values


def plot_samples(images: torch.Tensor, labels: "torch.Tensor | Sequence[int]", class_names: Sequence[str],
                 columns: int = 10) -> Figure:
    """A grid of images, each titled with its class name.

    Args:
        images: (N, C, H, W), uint8 in [0, 255] (or float, stretched for display).
        labels: class index of each image (N,).
        class_names: name of each class, indexed by label.
        columns: images per row.
    Returns:
        The Figure.
    """
    labels = _labels_list("labels", labels, _check_images(images))
    fig = _image_grid(images, [class_names[y] for y in labels], columns, ["black"] * len(labels))
    fig.suptitle(f"{len(labels)} images and their classes", fontsize=9)
    return fig


def plot_mistakes(images: torch.Tensor, true: "torch.Tensor | Sequence[int]",
                  pred: "torch.Tensor | Sequence[int]", class_names: Sequence[str],
                  confidence: "torch.Tensor | Sequence[float] | None" = None, columns: int = 8) -> Figure:
    """A grid of misclassified images titled "predicted / true" (and the model's confidence if given).

    Args:
        images: (N, C, H, W) images, e.g. ``test.images[top_mistakes(logits, labels, k)]``.
        true: true class of each image (N,).
        pred: predicted class of each image (N,).
        class_names: name of each class, indexed by label.
        confidence: optional softmax probability of each prediction (N,), shown as a percentage.
        columns: images per row.
    Returns:
        The Figure.
    """
    n = _check_images(images)
    true, pred = _labels_list("true", true, n), _labels_list("pred", pred, n)
    conf = None if confidence is None else [float(c) for c in
                                            (confidence.tolist() if torch.is_tensor(confidence) else confidence)]
    if conf is not None and len(conf) != n:
        raise InputShapeError(f"confidence must have one entry per image ({n}), got {len(conf)}.")
    titles = [f"{class_names[p]}" + (f" {100 * conf[i]:.0f}%" if conf else "") + f"\n(true: {class_names[t]})"
              for i, (t, p) in enumerate(zip(true, pred))]
    colors = ["tab:red" if t != p else "tab:green" for t, p in zip(true, pred)]
    fig = _image_grid(images, titles, columns, colors)
    fig.suptitle("predicted (confidence) / true class" if conf else "predicted / true class", fontsize=9)
    return fig


def plot_confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], title: str = "") -> Figure:
    """A confusion matrix as a heat map: colour = fraction of the true class (row), text = count.

    Args:
        confusion: (K, K) counts, rows = true class, columns = predicted class.
        class_names: the K class names.
        title: the title; default "Confusion matrix".
    Returns:
        The Figure.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise InputShapeError(f"confusion must be a square (K, K) matrix, got shape {tuple(confusion.shape)}.")
    K = confusion.shape[0]
    if len(class_names) != K:
        raise InputShapeError(f"class_names has {len(class_names)} names for a {K}x{K} confusion matrix.")
    counts = confusion.detach().cpu().to(torch.int64).numpy()  # (K, K)
    row_fraction = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (K, K)
    fig = Figure(figsize=(0.55 * K + 2.2, 0.5 * K + 1.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(row_fraction, cmap="Blues", vmin=0, vmax=1)
    for t in range(K):
        for p in range(K):
            if counts[t, p]:
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=7,
                        color="white" if row_fraction[t, p] > 0.5 else "black")
    ax.set_xticks(range(K), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(K), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return fig


def plot_history(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Learning curves of one or several runs: loss (train solid, test dashed) and accuracy per epoch.

    Args:
        histories: run name -> the per-epoch list of dicts that ``vitlab.train`` returns (``.history``)
            and saves in ``history.json`` (keys epoch, lr, train_loss, train_accuracy, and test_loss,
            test_accuracy when a test set was given).
    Returns:
        The Figure (two panels: loss, accuracy in %).
    """
    if not histories:
        raise InputShapeError("histories is empty; pass {'run name': result.history}.")
    fig = Figure(figsize=(9, 3.3), dpi=DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, history) in enumerate(histories.items()):
        if not history:
            continue
        color = colors[i % len(colors)]
        epochs = [record["epoch"] for record in history]
        marker = "o" if len(epochs) < 12 else None
        loss_ax.plot(epochs, [r["train_loss"] for r in history], color=color, marker=marker, ms=3,
                     label=f"{name} train")
        acc_ax.plot(epochs, [100 * r["train_accuracy"] for r in history], color=color, marker=marker, ms=3,
                    alpha=0.45, label=f"{name} train")
        if all("test_loss" in r for r in history):
            loss_ax.plot(epochs, [r["test_loss"] for r in history], color=color, ls="--", marker=marker, ms=3,
                         label=f"{name} test")
            acc_ax.plot(epochs, [100 * r["test_accuracy"] for r in history], color=color, ls="--",
                        marker=marker, ms=3, label=f"{name} test")
    loss_ax.set_title("loss", fontsize=9)
    acc_ax.set_title("accuracy", fontsize=9)
    loss_ax.set_ylabel("cross-entropy loss (nats)")
    acc_ax.set_ylabel("top-1 accuracy (%)")
    fig.suptitle("Learning curves (solid: training set, dashed: test set)", fontsize=10)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig
