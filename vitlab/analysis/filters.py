"""Principal components of the patch-embedding filters (ViT paper, Fig. 7 left)."""

from __future__ import annotations

import torch

from ..errors import InputShapeError


def patch_embedding_components(weight: torch.Tensor, k: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k principal components of the D patch-embedding filters.

    Each of the D output channels of the patch embedding is a C x P x P filter; PCA treats them as D
    samples of a C*P*P vector, centres them, and finds the directions of largest variance.

    Args:
        weight: (D, C, P, P), e.g. ``model.patch_embed.proj.weight``.
        k: number of components (at most min(D, C*P*P)).
    Returns:
        components (k, C, P, P), unit-norm, in order of explained variance (each component's sign is
        fixed so its largest-magnitude entry is positive); explained-variance ratios (k,), descending.
    """
    if weight.ndim != 4:
        raise InputShapeError(f"weight must be (D, C, P, P), got {tuple(weight.shape)}.")
    D, C, P, Q = weight.shape
    limit = min(D, C * P * Q)
    if not 1 <= k <= limit:
        raise InputShapeError(f"k={k} components requested but at most min(D, C*P*P) = {limit} exist.")
    x = weight.detach().reshape(D, -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)  # vh: (min(D, CPP), CPP)
    var = s**2
    ratio = var / var.sum()
    comps = vh[:k]
    flip = comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)).sign()
    comps = comps * flip
    return comps.reshape(k, C, P, Q).to(weight.dtype), ratio[:k].to(weight.dtype)
