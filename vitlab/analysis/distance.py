"""Mean attention distance (ViT paper, Fig. 7 right and Appendix D.7).

The paper: "the average distance in image space across which information is integrated, based on the
attention weights" -- for each query patch, the attention-weighted distance to every key patch,
averaged over query patches (and, in the figure, over 128 images).

vitlab's convention, stated exactly:
- distance between two patches = patch_size x Euclidean distance between their grid positions
  (row, column), in pixels; patch centres, so a patch's distance to itself is 0;
- prefix tokens (CLS) are left out both as queries and as keys;
- by default the remaining weights of a query row are used as they are (they sum to 1 minus the
  weight on CLS); ``renormalize=True`` rescales each patch row to sum to 1 first, i.e. asks "where
  among the patches does this query look".
"""

from __future__ import annotations


import math

import torch

from ..errors import ConfigError, InputShapeError
from ..patches import grid_shape


def patch_distances(grid_size: "int | tuple[int, int]", patch_size: float = 1.0) -> torch.Tensor:
    """(M, M) pixel distances between the patches of a row-major grid (M = rows * cols)."""
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")
    coords = torch.stack([r.flatten(), c.flatten()], dim=1)  # (M, 2)
    return torch.cdist(coords, coords) * patch_size  # (M, M)


def mean_attention_distance(attn: torch.Tensor, patch_size: float, grid_size=None,
                            num_prefix_tokens: int = 1, renormalize: bool = False) -> torch.Tensor:
    """Mean attention distance in pixels.

    Args:
        attn: attention weights (..., N, N), rows = queries, e.g. (B, H, N, N) from
            :func:`vitlab.record_attention`.
        patch_size: pixels per patch side (the distance unit).
        grid_size: patches per side (int) or (rows, cols); default: a square grid.
        num_prefix_tokens: tokens before the patches (1 for CLS, 0 for GAP models).
        renormalize: rescale each patch-to-patch row to sum to 1 before weighting.
    Returns:
        (...) tensor: for each leading index (e.g. image and head), the attention-weighted distance
        averaged over query patches.
    """
    if attn.ndim < 2 or attn.shape[-1] != attn.shape[-2]:
        raise InputShapeError(f"attn must be (..., N, N), got shape {tuple(attn.shape)}.")
    if not (isinstance(patch_size, (int, float)) and not isinstance(patch_size, bool)
            and math.isfinite(patch_size) and patch_size > 0):
        raise ConfigError(f"patch_size must be the pixels per patch side, a finite number > 0, got {patch_size!r}.")
    n = attn.shape[-1] - num_prefix_tokens
    if num_prefix_tokens < 0 or n < 1:
        raise InputShapeError(f"num_prefix_tokens={num_prefix_tokens} leaves no patch tokens in {tuple(attn.shape)}.")
    rows, cols = grid_shape(n, grid_size)
    dtype = attn.dtype if attn.is_floating_point() else torch.float32
    weights = attn[..., num_prefix_tokens:, num_prefix_tokens:].to(dtype)  # (..., M, M)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    dist = patch_distances((rows, cols), patch_size).to(device=weights.device, dtype=dtype)  # (M, M)
    per_query = torch.einsum("...qk,qk->...q", weights, dist)  # (..., M) weighted distance per query
    return per_query.mean(dim=-1)


def uniform_attention_distance(grid_size: "int | tuple[int, int]", patch_size: float,
                               num_prefix_tokens: int = 1) -> float:
    """The mean attention distance of a head that attends to every token equally: the reference line
    of every attention-distance plot (a head on it looks everywhere, below it it keeps near the query).

    It is :func:`mean_attention_distance` of uniform weights 1/N over all N tokens, prefix tokens
    included, so with a CLS token the patches hold (N - 1)/N of each row (the same convention as a
    recorded map). With ``num_prefix_tokens=0`` it is the mean distance between two patches of the grid.
    """
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if num_prefix_tokens < 0:
        raise InputShapeError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}.")
    n = rows * cols + num_prefix_tokens
    uniform = torch.full((n, n), 1.0 / n, dtype=torch.float64)
    return mean_attention_distance(uniform, patch_size, grid_size=(rows, cols),
                                   num_prefix_tokens=num_prefix_tokens).item()


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each query's attention row, averaged over the queries: (..., N, N) -> (...).

    0 when every query puts all its weight on one token, log(N) when it spreads it equally. Rows are
    used as they are (all N tokens, prefix tokens included), so it says how peaked a head is, where
    :func:`mean_attention_distance` says how far it looks.
    """
    if attn.ndim < 2 or attn.shape[-1] != attn.shape[-2]:
        raise InputShapeError(f"attn must be (..., N, N), got shape {tuple(attn.shape)}.")
    p = attn.to(torch.float64)
    per_query = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=-1)  # (..., N); 0 log 0 = 0
    return per_query.mean(dim=-1).to(attn.dtype if attn.is_floating_point() else torch.float32)


def prefix_attention_share(attn: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """How much of the patches' attention goes to the prefix tokens (CLS, registers, a distillation token).

    For each patch query, the summed weight on the first ``num_prefix_tokens`` keys, averaged over the
    patch queries: (..., N, N) -> (..., num_prefix_tokens), one share per prefix token (their sum is the
    share the patches give the prefix at all). Register tokens (Darcet et al., 2024, "Vision Transformers
    Need Registers") are meant to collect attention that would otherwise land on a few background patches;
    this measures how much they take. Uniform attention gives each prefix token 1 / N.

    Raises:
        InputShapeError: ``attn`` is not (..., N, N), or ``num_prefix_tokens`` is not in 1 .. N - 1.
    """
    if attn.ndim < 2 or attn.shape[-1] != attn.shape[-2]:
        raise InputShapeError(f"attn must be (..., N, N), got shape {tuple(attn.shape)}.")
    n = attn.shape[-1]
    if not isinstance(num_prefix_tokens, int) or not 1 <= num_prefix_tokens < n:
        raise InputShapeError(f"num_prefix_tokens must be a whole number from 1 to {n - 1} (the tokens before the "
                              f"patches: model.num_prefix_tokens), got {num_prefix_tokens!r}.")
    return attn[..., num_prefix_tokens:, :num_prefix_tokens].mean(dim=-2)  # (..., P): over the patch queries
