"""Position-embedding similarity (ViT paper, Fig. 7 centre)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputShapeError
from ..patches import grid_shape


def pos_embed_similarity(pos_embed: torch.Tensor, grid_size=None, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Cosine similarity of each patch's position embedding with every other patch's.

    Args:
        pos_embed: (1, N, D) or (N, D) position-embedding table, prefix (CLS) rows first.
        grid_size: patches per side or (rows, cols); default square.
        num_prefix_tokens: rows to drop before the patch rows.
    Returns:
        (rows, cols, rows, cols): entry [i, j, k, l] is the cosine similarity between the embeddings
        of patch (i, j) and patch (k, l). Plot [i, j] as an image for the paper's grid of grids.
    """
    table = pos_embed[0] if pos_embed.ndim == 3 else pos_embed
    if table.ndim != 2 or (pos_embed.ndim == 3 and pos_embed.shape[0] != 1):
        raise InputShapeError(f"pos_embed must be (1, N, D) or (N, D), got {tuple(pos_embed.shape)}.")
    patches = table[num_prefix_tokens:].detach().to(torch.float64)  # (M, D)
    rows, cols = grid_shape(patches.shape[0], grid_size)
    unit = F.normalize(patches, dim=-1)
    sim = unit @ unit.T  # (M, M)
    return sim.reshape(rows, cols, rows, cols).to(torch.float32)


def pos_embed_distance_correlation(pos_embed: torch.Tensor, grid_size=None, num_prefix_tokens: int = 1) -> float:
    """One number for "closer patches have more similar position embeddings" (ViT paper, Fig. 7 centre).

    The Pearson correlation, over all ordered pairs of *different* patches, between the cosine
    similarity of their position embeddings (:func:`pos_embed_similarity`) and their Euclidean
    distance on the patch grid. Negative: nearby patches are more alike (the table has learned the
    2-D layout); about 0 for random embeddings; -1 is a similarity that falls linearly with distance.

    Raises:
        InputShapeError: as :func:`pos_embed_similarity`; or fewer than 3 patches (no correlation).
    """
    from .distance import patch_distances

    sim = pos_embed_similarity(pos_embed, grid_size, num_prefix_tokens)  # (rows, cols, rows, cols)
    rows, cols = sim.shape[:2]
    m = rows * cols
    if m < 3:
        raise InputShapeError(f"a correlation over patch pairs needs at least 3 patches, got {m}.")
    different = ~torch.eye(m, dtype=torch.bool)
    s = sim.reshape(m, m).to(torch.float64)[different]
    d = patch_distances((rows, cols)).to(torch.float64)[different]
    return torch.corrcoef(torch.stack([s, d]))[0, 1].item()
