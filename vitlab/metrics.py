"""Classification metrics, pure tensor in / tensor out: confusion matrix, per-class accuracy and the
most confident mistakes. No plotting here (see :mod:`vitlab.plots.training`).
"""

from __future__ import annotations

import torch

from .errors import ConfigError, InputShapeError

__all__ = ["confusion_matrix", "per_class_accuracy", "most_confused", "top_mistakes"]


def _check_labels(name: str, values: torch.Tensor, num_classes: int) -> None:
    if values.ndim != 1:
        hint = " (for logits (N, K) take .argmax(dim=1) first)" if values.ndim == 2 else ""
        raise InputShapeError(f"{name} must be a 1-D tensor of class indices (N,), got shape "
                              f"{tuple(values.shape)}{hint}.")
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise InputShapeError(f"{name} must hold integer class indices, got dtype {values.dtype}; "
                              "for logits take .argmax(dim=1) first.")
    if values.numel() and (values.min() < 0 or values.max() >= num_classes):
        raise InputShapeError(f"{name} holds values outside [0, {num_classes - 1}] (min {values.min().item()}, "
                              f"max {values.max().item()}); check num_classes={num_classes}.")


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count how often each true class was predicted as each class.

    Args:
        predictions: predicted class indices (N,), integer.
        labels: true class indices (N,), integer.
        num_classes: K, the number of classes.
    Returns:
        int64 tensor (K, K): entry ``[t, p]`` counts images of true class ``t`` predicted as ``p``
        (rows = true class, columns = prediction; the diagonal holds the correct ones).
    Raises:
        InputShapeError: the inputs are not 1-D integer tensors of the same length, or hold a class
            index outside ``[0, num_classes)``.
        ConfigError: ``num_classes`` is not a positive int.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}.")
    _check_labels("predictions", predictions, num_classes)
    _check_labels("labels", labels, num_classes)
    if predictions.shape != labels.shape:
        raise InputShapeError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} must have "
                              "the same length (one prediction per image).")
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()  # (N,) index into the K*K cells
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)  # (K, K)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Accuracy within each true class (recall): the diagonal divided by the row sums.

    Args:
        confusion: (K, K) counts, rows = true class, as made by :func:`confusion_matrix`.
    Returns:
        float32 tensor (K,); a class with no images gets NaN (there is nothing to be right about).
    Raises:
        InputShapeError: ``confusion`` is not a square 2-D tensor.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise InputShapeError(f"confusion must be a square (K, K) matrix, got shape {tuple(confusion.shape)}.")
    totals = confusion.sum(dim=1).float()  # (K,)
    correct = confusion.diagonal().float()  # (K,)
    return torch.where(totals > 0, correct / totals.clamp_min(1), torch.full_like(totals, float("nan")))


def most_confused(confusion: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest off-diagonal cells of a confusion matrix: which class is most often taken for which.

    Args:
        confusion: (K, K) counts, rows = true class, as made by :func:`confusion_matrix`.
        k: how many (true, predicted) pairs to return; at most K * (K - 1).
    Returns:
        int64 tensor (k', 3) with rows ``(true class, predicted class, count)``, largest count first
        (ties in row-major order); k' = min(k, K * (K - 1)). Pairs with count 0 are included if k asks
        for them.
    Raises:
        InputShapeError: ``confusion`` is not a square 2-D tensor.
        ConfigError: ``k`` is not a non-negative int.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise InputShapeError(f"confusion must be a square (K, K) matrix, got shape {tuple(confusion.shape)}.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ConfigError(f"k must be a non-negative int, got {k!r}.")
    K = confusion.shape[0]
    counts = confusion.detach().cpu().to(torch.int64).flatten()  # (K*K,)
    off_diagonal = torch.nonzero(torch.arange(K * K) % (K + 1) != 0).flatten()  # (K*(K-1),) flat indices
    order = torch.argsort(counts[off_diagonal], descending=True, stable=True)[:k]  # (k',)
    flat = off_diagonal[order]  # (k',)
    return torch.stack([flat // K, flat % K, counts[flat]], dim=1)  # (k', 3)


def top_mistakes(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k wrong predictions the model was most sure of (highest softmax probability).

    Args:
        logits: (N, K) class scores.
        labels: true class indices (N,).
        k: how many mistakes to return; fewer come back if there are fewer than k mistakes.
    Returns:
        int64 tensor (min(k, number of mistakes),) of indices into the N images, most confident first.
    Raises:
        InputShapeError: ``logits`` is not (N, K), ``labels`` is not (N,), or a label is out of range.
        ConfigError: ``k`` is not a non-negative int.
    """
    if logits.ndim != 2:
        raise InputShapeError(f"logits must be (N, K) class scores, got shape {tuple(logits.shape)}.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ConfigError(f"k must be a non-negative int, got {k!r}.")
    _check_labels("labels", labels, logits.shape[1])
    if labels.shape[0] != logits.shape[0]:
        raise InputShapeError(f"logits has {logits.shape[0]} rows but labels has {labels.shape[0]}; "
                              "they must describe the same images.")
    confidence, predicted = logits.float().softmax(dim=1).max(dim=1)  # (N,), (N,)
    wrong = torch.nonzero(predicted != labels.to(predicted.device)).flatten()  # (M,)
    order = torch.argsort(confidence[wrong], descending=True, stable=True)  # (M,)
    return wrong[order[:k]].cpu()
