"""Attention rollout (Abnar & Zuidema, 2020), as used in the ViT paper's Appendix D.8.

For each layer: fuse the heads (mean by default), account for the residual connection as
0.5 * A + 0.5 * I, renormalise rows to sum to 1, then multiply the layers together with the last
layer on the left: R = A_L ... A_2 A_1. Row i of R says how much each input token contributes to token i
at the output; the CLS row, reshaped to the patch grid, is the familiar rollout map.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, InputShapeError
from ..patches import grid_shape

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, H, N, N) -> (B, N, N) by mean, max or min over the heads."""
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    if head_fusion == "min":
        return attn.amin(dim=1)
    raise ConfigError(f"head_fusion={head_fusion!r} is unknown; use one of {HEAD_FUSIONS}.")


def discard_lowest(attn: torch.Tensor, discard_ratio: float, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Zero the weakest ``discard_ratio`` of each image's (N, N) attention, never touching the prefix
    (CLS) columns. attn: (B, N, N)."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio}.")
    if discard_ratio == 0.0:
        return attn
    B, N, _ = attn.shape
    candidates = attn[:, :, num_prefix_tokens:].reshape(B, -1)  # (B, N * (N - prefix)), CLS columns excluded
    k = int(candidates.shape[1] * discard_ratio)
    if k == 0:
        return attn
    lowest = candidates.topk(k, dim=1, largest=False).indices  # (B, k)
    kept = candidates.scatter(1, lowest, 0.0).reshape(B, N, N - num_prefix_tokens)
    return torch.cat([attn[:, :, :num_prefix_tokens], kept], dim=2)


def attention_rollout(maps: "list[torch.Tensor]", head_fusion: str = "mean", discard_ratio: float = 0.0,
                      num_prefix_tokens: int = 1) -> torch.Tensor:
    """Attention rollout through all layers.

    Args:
        maps: per-layer attention (B, H, N, N), first layer first (``record_attention(...).maps``).
        head_fusion: 'mean' (the paper), 'max' or 'min' over heads.
        discard_ratio: fraction of each image's weakest attentions to zero before adding the identity
            (the CLS columns are never dropped).
        num_prefix_tokens: number of CLS-like tokens whose columns are protected from discarding.
    Returns:
        (B, N, N) rollout; every row sums to 1.
    """
    if isinstance(maps, torch.Tensor):
        raise InputShapeError(f"attention_rollout takes a list of per-layer maps, each (B, H, N, N) "
                              f"(recorder.maps), not one tensor of shape {tuple(maps.shape)}; for a stacked "
                              "(layers, B, H, N, N) tensor pass list(stacked).")
    if not maps:
        raise InputShapeError("attention_rollout needs at least one layer's attention map.")
    shape = maps[0].shape
    for i, attn in enumerate(maps):
        if attn.ndim != 4 or attn.shape != shape or shape[-1] != shape[-2]:
            raise InputShapeError(f"maps[{i}] has shape {tuple(attn.shape)}; every map must be (B, H, N, N) "
                                  f"like maps[0] {tuple(shape)}.")
    B, _, N, _ = shape
    eye = torch.eye(N, dtype=torch.float64, device=maps[0].device)
    rollout = None
    for attn in maps:
        fused = fuse_heads(attn, head_fusion).to(torch.float64)  # fuse first: 1/H of the data to convert
        a = discard_lowest(fused, discard_ratio, num_prefix_tokens)
        a = 0.5 * a + 0.5 * eye  # the residual path
        a = a / a.sum(dim=-1, keepdim=True)  # rows sum to 1
        rollout = a if rollout is None else a @ rollout  # later layer on the left
    return rollout.to(maps[0].dtype)


def rollout_to_map(rollout: torch.Tensor, grid_size=None, num_prefix_tokens: int = 1,
                   token: int = 0) -> torch.Tensor:
    """The row of one token (default CLS) over the patches, as a (B, rows, cols) map.

    Args:
        rollout: (B, N, N) from :func:`attention_rollout` (or one layer's fused attention).
        grid_size: patches per side or (rows, cols); default square.
        num_prefix_tokens: prefix tokens to drop from the columns.
        token: which row to read (0 = CLS).
    """
    if rollout.ndim != 3:
        raise InputShapeError(f"rollout must be (B, N, N), got {tuple(rollout.shape)}.")
    rows, cols = grid_shape(rollout.shape[-1] - num_prefix_tokens, grid_size)
    return rollout[:, token, num_prefix_tokens:].reshape(-1, rows, cols)


def gradient_rollout(maps: "list[torch.Tensor]", grads: "list[torch.Tensor]") -> torch.Tensor:
    """Class-specific rollout (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model Explainability"):
    each layer's attention weighted by its gradient for the chosen class, positive part, mean over heads,
    accumulated as R <- R + A_bar R starting from R = I.

    Args:
        maps: per-layer attention (B, H, N, N), first layer first.
        grads: d(score of the target class) / d(maps), same shapes (from ``record_attention(model,
            keep_graph=True)`` then ``score.backward()``; see :func:`class_rollout`).
    Returns:
        (B, N, N) relevance; row 0 is the CLS token's.
    """
    if isinstance(maps, torch.Tensor) or isinstance(grads, torch.Tensor):
        raise InputShapeError("gradient_rollout takes lists of per-layer maps and gradients, not stacked tensors; "
                              "pass list(stacked).")
    if len(maps) != len(grads) or not maps:
        raise InputShapeError("gradient_rollout needs one gradient per attention map.")
    B, _, N, _ = maps[0].shape
    relevance = torch.eye(N, dtype=torch.float64, device=maps[0].device).expand(B, N, N).clone()
    for attn, grad in zip(maps, grads):
        if grad is None or grad.shape != attn.shape:
            raise InputShapeError("each gradient must exist and match its attention map's shape.")
        weighted = (grad.to(torch.float64) * attn.to(torch.float64)).clamp_min(0).mean(dim=1)  # (B, N, N)
        relevance = relevance + weighted @ relevance
    return relevance.to(maps[0].dtype)


def class_rollout(model: torch.nn.Module, images: torch.Tensor, target: "int | torch.Tensor | None" = None) -> torch.Tensor:
    """Gradient-weighted rollout of ``model`` for ``target`` classes (default: the predicted ones).

    Args:
        model: vitlab ViT or timm VisionTransformer (any mode; it is run in eval mode and restored).
        images: preprocessed (B, C, H, W).
        target: one class for all images, a (B,) tensor, or None for each image's top prediction.
    Returns:
        (B, N, N) relevance (see :func:`gradient_rollout`).
    """
    from .recorder import record_attention

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            with record_attention(model, keep_graph=True) as rec:
                logits = model(images)
            if target is None:
                target = logits.argmax(dim=1)
            target = torch.as_tensor(target, device=logits.device).expand(logits.shape[0])
            score = logits.gather(1, target[:, None]).sum()
            maps = rec.maps
            grads = torch.autograd.grad(score, maps)
    finally:
        model.train(was_training)
    return gradient_rollout([m.detach() for m in maps], [g.detach() for g in grads])


def share_on_mask(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The share of each map's total that falls on the masked patches: (B, rows, cols) -> (B,).

    E.g. a rollout map (:func:`rollout_to_map`) and a mask of the patches that hold the object: the
    result is how much of what reaches the CLS token comes from the object. Compare it with
    ``mask.float().mean(dim=(1, 2))``, the share a uniform map would put there (the base rate).

    Args:
        maps: (B, rows, cols) non-negative maps (they need not sum to 1; each is normalised).
        mask: (B, rows, cols) or (rows, cols) booleans.
    Raises:
        InputShapeError: shapes that do not match, a mask that is not boolean, or a map with no mass.
    """
    if maps.ndim != 3:
        raise InputShapeError(f"maps must be (B, rows, cols), got {tuple(maps.shape)}.")
    if mask.dtype != torch.bool:
        raise InputShapeError(f"mask must be boolean (True = the patch belongs to the object), got {mask.dtype}.")
    if mask.shape not in (maps.shape, maps.shape[1:]):
        raise InputShapeError(f"mask {tuple(mask.shape)} must be (B, rows, cols) or (rows, cols) like maps "
                              f"{tuple(maps.shape)}.")
    values = maps.to(torch.float64)
    total = values.sum(dim=(1, 2))
    if bool((total <= 0).any()):
        raise InputShapeError("every map needs a positive total to be shared out; got a map that sums to <= 0.")
    return ((values * mask).sum(dim=(1, 2)) / total).to(maps.dtype)
