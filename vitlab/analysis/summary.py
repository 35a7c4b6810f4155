"""Dataset-level summaries of a ViT's attention, streamed in batches so memory stays bounded.

Recording every map of every image does not scale: ViT-B/16's 12 layers x 12 heads x 197 x 197 maps
are 22 MB per image in float32. :func:`summarize` records one batch at a time, reduces it to per-layer,
per-head numbers at once, and keeps only those running sums.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InputShapeError
from ..patches import grid_shape
from .distance import attention_entropy, mean_attention_distance
from .recorder import record_attention
from .rollout import attention_rollout, rollout_to_map, share_on_mask

ANALYSES = ("distance", "entropy", "rollout")


def _pair(value) -> tuple:
    return (value, value) if isinstance(value, int) else tuple(value)


def model_geometry(model: nn.Module, grid_size=None, patch_size=None, num_prefix_tokens=None) -> dict:
    """Patch size (pixels), grid (rows, cols) and prefix tokens of a vitlab or timm ViT.

    Read from the model (vitlab: ``model.cfg``; timm: ``model.patch_embed`` and
    ``model.num_prefix_tokens``), never guessed from the token count; an argument given overrides it.

    Raises:
        ConfigError: the model does not say, and the argument was not given.
    """
    cfg = getattr(model, "cfg", None)
    embed = getattr(model, "patch_embed", None)
    if patch_size is None:
        patch_size = getattr(cfg, "patch_size", None) or getattr(embed, "patch_size", None)
    if grid_size is None:
        grid_size = getattr(cfg, "grid_size", None) or getattr(embed, "grid_size", None)
    if num_prefix_tokens is None:
        num_prefix_tokens = getattr(model, "num_prefix_tokens", None)
    missing = [name for name, value in [("patch_size", patch_size), ("grid_size", grid_size),
                                        ("num_prefix_tokens", num_prefix_tokens)] if value is None]
    if missing:
        raise ConfigError(f"{type(model).__name__} does not say its {', '.join(missing)}: pass "
                          f"{', '.join(f'{m}=...' for m in missing)} to the analysis.")
    patch = _pair(patch_size)
    if patch[0] != patch[1]:
        raise ConfigError(f"non-square patches {patch} are not supported by the distance analyses.")
    return {"patch_size": patch[0], "grid_size": _pair(grid_size), "num_prefix_tokens": int(num_prefix_tokens)}


@torch.no_grad()
def summarize(model: nn.Module, images: torch.Tensor, *, analyses: "tuple[str, ...]" = ANALYSES,
              masks: "torch.Tensor | None" = None, batch_size: int = 250, grid_size=None, patch_size=None,
              num_prefix_tokens=None, progress: bool = True) -> dict:
    """Per-layer, per-head attention statistics over a whole set of images, one batch in memory at a time.

    The model runs in eval mode (no dropout on the maps; its mode is restored afterwards) with its
    attention recorded by :func:`record_attention`, batch by batch.

    Args:
        model: a vitlab ViT or a timm VisionTransformer.
        images: (B, C, H, W) preprocessed images.
        analyses: any of 'distance' (:func:`mean_attention_distance`), 'entropy'
            (:func:`attention_entropy`) and 'rollout' (:func:`attention_rollout`, the CLS row).
        masks: (B, rows, cols) booleans, the patches that hold the object; with 'rollout', the share of
            each image's rollout map on them (:func:`share_on_mask`).
        batch_size: images per forward pass (the memory bound).
        grid_size, patch_size, num_prefix_tokens: only for a model that does not say them
            (:func:`model_geometry`).
        progress: a tqdm bar over the batches.
    Returns:
        a dict with ``images`` (B), ``predictions`` (B,) (argmax of the logits), ``geometry``, and per
        analysis asked for: ``distance`` and ``entropy`` (L, H) averages over the images (pixels, nats);
        ``rollout_peak`` (B,) the largest patch share of each rollout map; with masks
        ``rollout_share`` (B,) and ``mask_share`` (B,) (the share of patches in the mask, what a uniform
        map would put there).
    Raises:
        ConfigError: an unknown analysis or a batch size < 1; InputShapeError: images or masks of the
        wrong shape.
    """
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown or not analyses:
        raise ConfigError(f"unknown analyses {unknown or list(analyses)}; choose from {list(ANALYSES)}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if images.ndim != 4:
        raise InputShapeError(f"images must be (B, C, H, W), got {tuple(images.shape)}.")
    geometry = model_geometry(model, grid_size, patch_size, num_prefix_tokens)
    rows, cols = geometry["grid_size"]
    if masks is not None and tuple(masks.shape) != (images.shape[0], rows, cols):
        raise InputShapeError(f"masks must be (B, rows, cols) = {(images.shape[0], rows, cols)} for these images "
                              f"and this model's grid, got {tuple(masks.shape)}.")
    prefix = geometry["num_prefix_tokens"]
    if "rollout" in analyses and prefix < 1:
        raise ConfigError("'rollout' reads the CLS token's row, and this model has no prefix token (a GAP "
                          "model): leave 'rollout' out of analyses.")
    sums: dict = {}
    per_image: dict = {"predictions": [], "rollout_peak": [], "rollout_share": []}
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, images.shape[0], batch_size), desc="summarize", disable=not progress,
                          leave=False):
            batch = images[start:start + batch_size]
            with record_attention(model) as recorder:
                logits = model(batch)
            maps = recorder.maps  # L tensors (b, H, N, N)
            grid_shape(maps[0].shape[-1] - prefix, (rows, cols))  # the maps must fit the geometry
            per_image["predictions"].append(logits.argmax(dim=-1))
            if "distance" in analyses:
                d = torch.stack([mean_attention_distance(m, geometry["patch_size"], (rows, cols), prefix)
                                 for m in maps])  # (L, b, H)
                sums["distance"] = sums.get("distance", 0) + d.double().sum(dim=1)
            if "entropy" in analyses:
                e = torch.stack([attention_entropy(m) for m in maps])  # (L, b, H)
                sums["entropy"] = sums.get("entropy", 0) + e.double().sum(dim=1)
            if "rollout" in analyses:
                cls_map = rollout_to_map(attention_rollout(maps, num_prefix_tokens=prefix), (rows, cols),
                                         prefix)  # (b, rows, cols): the CLS row over the patches
                per_image["rollout_peak"].append(cls_map.amax(dim=(1, 2)) / cls_map.sum(dim=(1, 2)))
                if masks is not None:
                    per_image["rollout_share"].append(share_on_mask(cls_map, masks[start:start + batch_size]))
            del maps, recorder
    finally:
        model.train(was_training)
    n = images.shape[0]
    out = {"images": n, "geometry": geometry, "predictions": torch.cat(per_image["predictions"])}
    for name, total in sums.items():
        out[name] = (total / n).float()
    if "rollout" in analyses:
        out["rollout_peak"] = torch.cat(per_image["rollout_peak"])
        if masks is not None:
            out["rollout_share"] = torch.cat(per_image["rollout_share"])
            out["mask_share"] = masks.float().mean(dim=(1, 2))
    return out


__all__ = ["ANALYSES", "model_geometry", "summarize"]
