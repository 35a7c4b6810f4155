"""Centred kernel alignment (CKA): how similar two layers' representations of the same examples are.

Kornblith et al. (2019, "Similarity of Neural Network Representations Revisited") define linear CKA of
x (n, p) and y (n, q), features centred over the n examples, as

    CKA(x, y) = ||y^T x||_F^2 / (||x^T x||_F ||y^T y||_F),

1 for representations equal up to an orthogonal transform and a scale, 0 for unrelated ones. Raghu et al.
(2021, "Do Vision Transformers See Like Convolutional Neural Networks?") compare every layer of a ViT with
every layer of a ResNet this way; for datasets too big for one batch they use minibatch CKA with the
unbiased HSIC estimator of Nguyen, Raghu & Kornblith (2021, "Do Wide and Deep Networks Learn the Same
Things?"): HSIC is estimated on each batch, averaged over batches, and only then normalised.
"""

from __future__ import annotations

import torch

from ..errors import InputShapeError

__all__ = ["linear_cka", "unbiased_hsic", "MinibatchCKA"]


def _check_pair(x: torch.Tensor, y: torch.Tensor, least: int) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim < 2 or y.ndim < 2:
        raise InputShapeError(f"CKA compares (n, features) representations; got shapes {tuple(x.shape)} and "
                              f"{tuple(y.shape)} (flatten tokens first: x.flatten(1)).")
    if x.shape[0] != y.shape[0]:
        raise InputShapeError(f"CKA needs the same examples in both: x has {x.shape[0]} rows and y has "
                              f"{y.shape[0]}.")
    if x.shape[0] < least:
        raise InputShapeError(f"CKA needs at least {least} examples, got {x.shape[0]}.")
    return x.flatten(1).to(torch.float64), y.flatten(1).to(torch.float64)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (Kornblith et al., 2019).

    Args:
        x: (n, p) features (more dimensions are flattened: (n, tokens, D) -> (n, tokens * D)).
        y: (n, q) features of the same examples, in the same order.
    Returns:
        a number in [0, 1].
    Raises:
        InputShapeError: different numbers of examples, fewer than 2, or not (n, features).
    """
    x, y = _check_pair(x, y, 2)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    cross = (y.T @ x).pow(2).sum()
    return (cross / ((x.T @ x).norm() * (y.T @ y).norm())).item()


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of two (n, n) Gram matrices (Song et al., 2012), n >= 4."""
    n = k.shape[0]
    k = k.clone().fill_diagonal_(0)
    l = l.clone().fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    term = (k * l).sum() + (ones.T @ k @ ones) * (ones.T @ l @ ones) / ((n - 1) * (n - 2)) \
        - 2 * (ones.T @ k @ l @ ones) / (n - 2)
    return term.squeeze() / (n * (n - 3))


class MinibatchCKA:
    """Linear CKA accumulated over batches with the unbiased HSIC estimator (Nguyen et al., 2021).

    Example::

        cka = MinibatchCKA()
        for x, y in batches:          # the same examples through two layers, e.g. (B, tokens, D)
            cka.update(x, y)
        cka.value()                    # one number in [0, 1] (about: the estimator can stray slightly)

    Memory is one batch's Gram matrices; the result depends on the batch size only through the
    estimator's noise, not its bias, so it converges to the population CKA as batches are added.
    """

    def __init__(self) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64)  # HSIC(x, y), HSIC(x, x), HSIC(y, y)
        self.batches = 0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> "MinibatchCKA":
        x, y = _check_pair(x, y, 4)
        k, l = x @ x.T, y @ y.T  # linear kernels: (B, B)
        self._sums += torch.stack([unbiased_hsic(k, l), unbiased_hsic(k, k), unbiased_hsic(l, l)]).cpu()
        self.batches += 1
        return self

    def value(self) -> float:
        if not self.batches:
            raise InputShapeError("MinibatchCKA.value() before any update(x, y): nothing accumulated.")
        xy, xx, yy = self._sums / self.batches
        return (xy / (xx * yy).sqrt()).item()
