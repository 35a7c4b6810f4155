"""Move a ViT to another image size: resample its position embeddings (ViT paper, Section 3.2).

The paper fine-tunes at a higher resolution than it pre-trains at, keeping the patch size: the grid
of patches grows, and the learned position embeddings, which only exist for the old grid, are
interpolated in 2-D to the new one ("the only points at which an inductive bias about the 2D structure
of the images is manually injected"). Everything else (patch embedding, blocks, head) works on any
number of tokens and is copied unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputShapeError
from ..patches import grid_shape, is_grid_size
from .vit import ViT

RESAMPLE_MODES = ("nearest", "bilinear", "bicubic")
RESIZE_POS_EMBEDS = ("interpolate", "reinit")


def _as_grid(grid: "int | tuple[int, int] | list[int]", name: str) -> tuple[int, int]:
    if not is_grid_size(grid):
        raise ConfigError(f"{name} must be a positive int or (rows, cols) of positive ints, got {grid!r}.")
    return (grid, grid) if isinstance(grid, int) else tuple(grid)


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: "int | tuple[int, int]",
                       old_grid: "int | tuple[int, int] | None" = None, num_prefix_tokens: int = 1,
                       mode: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Interpolate a position-embedding table from one grid of patches to another.

    The prefix rows (CLS) are kept as they are; the patch rows are laid out as an image of D channels
    on the old grid, resized with ``F.interpolate`` to the new grid (in float32), and flattened back
    row-major. Same result as timm's ``resample_abs_pos_embed(pos_embed, new_size=new_grid,
    old_size=old_grid, num_prefix_tokens=..., interpolation=mode, antialias=antialias)``.

    Args:
        pos_embed: (1, prefix + rows * cols, D) table, prefix rows first, patches row-major.
        new_grid: patches per side of the new grid, or (rows, cols).
        old_grid: the table's grid; default square, inferred from the number of patch rows.
        num_prefix_tokens: rows before the patch rows (1 for a CLS token, 0 with average pooling).
        mode: 'bicubic' (the default, as in timm and the paper's released code), 'bilinear' or 'nearest'.
        antialias: low-pass filter when shrinking (bilinear / bicubic only; it changes nothing when
            enlarging, and torch has none for 'nearest', where it is ignored).
    Returns:
        (1, prefix + new_rows * new_cols, D) table, same dtype and device as ``pos_embed``.
    Raises:
        InputShapeError: the table is not (1, N, D), or its patch rows do not fill ``old_grid``.
        ConfigError: a bad grid, prefix count or mode.
    """
    if not isinstance(pos_embed, torch.Tensor) or pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        shape = tuple(pos_embed.shape) if isinstance(pos_embed, torch.Tensor) else type(pos_embed).__name__
        raise InputShapeError(f"pos_embed must be a (1, N, D) table, got {shape}; "
                              "for an (N, D) table pass table[None].")
    if mode not in RESAMPLE_MODES:
        raise ConfigError(f"mode={mode!r} is unknown; use one of {RESAMPLE_MODES}.")
    num_tokens, dim = pos_embed.shape[1:]
    if not isinstance(num_prefix_tokens, int) or not 0 <= num_prefix_tokens < num_tokens:
        raise ConfigError(f"num_prefix_tokens must be an int in [0, {num_tokens}) for a table of "
                          f"{num_tokens} rows, got {num_prefix_tokens!r}.")
    num_patches = num_tokens - num_prefix_tokens
    new_rows, new_cols = _as_grid(new_grid, "new_grid")
    if old_grid is None:
        old_rows, old_cols = grid_shape(num_patches, None, name="old_grid")
    else:
        old_rows, old_cols = _as_grid(old_grid, "old_grid")
        if old_rows * old_cols != num_patches:
            raise InputShapeError(
                f"old_grid={old_grid!r} has {old_rows * old_cols} patches but the table has {num_patches} "
                f"patch rows (shape {tuple(pos_embed.shape)}, num_prefix_tokens={num_prefix_tokens}); "
                "pass the grid the table was trained on.")
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    image = patches.float().reshape(1, old_rows, old_cols, dim).permute(0, 3, 1, 2)  # (1, D, rows, cols)
    smooth = antialias and mode != "nearest"
    image = F.interpolate(image, size=(new_rows, new_cols), mode=mode,
                          antialias=smooth)  # (1, D, new_rows, new_cols)
    patches = image.permute(0, 2, 3, 1).reshape(1, new_rows * new_cols, dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)  # (1, prefix + new_rows * new_cols, D)


def resize_vit(model: ViT, new_img_size: int, pos_embed: str = "interpolate", mode: str = "bicubic",
               antialias: bool = True) -> ViT:
    """A copy of a ViT for another image size, with the same patch size (so a different grid).

    Every weight is copied; only the position embedding changes, as ``pos_embed`` says:

    - ``'interpolate'``: the old table resampled to the new grid with :func:`resample_pos_embed`
      (for 'learned2d', the row and the column tables each along their own axis; for 'sincos2d',
      the fixed table is resampled too, so positions keep their old range).
    - ``'reinit'``: the new grid's patch rows start afresh -- random as in a new model for 'learned'
      and 'learned2d', the standard sin-cos table of the new grid for 'sincos2d'. The prefix (CLS)
      rows are kept: they do not depend on the grid.

    With ``pos_embed='none'`` in the model's config both give the same model.

    Args:
        model: a trained (or not) vitlab ViT; it is left unchanged.
        new_img_size: the new image side in pixels, a multiple of the patch size.
        pos_embed: 'interpolate' or 'reinit'.
        mode: interpolation for 'interpolate' ('bicubic', 'bilinear', 'nearest').
        antialias: see :func:`resample_pos_embed` (matters only when shrinking).
    Returns:
        A new ViT whose config has ``img_size=new_img_size``, on the model's device, in its train/eval mode.
    Raises:
        ConfigError: not a vitlab ViT, an unknown ``pos_embed`` choice, or a size the patches do not tile.
    """
    if not isinstance(model, ViT):
        raise ConfigError(f"resize_vit needs a vitlab ViT, got {type(model).__name__}.")
    if pos_embed not in RESIZE_POS_EMBEDS:
        raise ConfigError(f"pos_embed={pos_embed!r} is unknown; use one of {RESIZE_POS_EMBEDS}.")
    if mode not in RESAMPLE_MODES:
        raise ConfigError(f"mode={mode!r} is unknown; use one of {RESAMPLE_MODES}.")
    old_cfg = model.cfg
    new_cfg = old_cfg.replace(img_size=new_img_size)  # validates: ConfigError if the patches do not tile it
    reference = next(model.parameters())
    resized = ViT(new_cfg).to(device=reference.device, dtype=reference.dtype)  # its fresh rows serve 'reinit'
    state = model.state_dict()
    fresh = resized.state_dict()
    old_grid, new_grid = old_cfg.grid_size, new_cfg.grid_size
    prefix = old_cfg.num_prefix_tokens
    if old_cfg.pos_embed in ("learned", "sincos2d"):
        if pos_embed == "interpolate":
            state["pos_embed"] = resample_pos_embed(state["pos_embed"], new_grid, old_grid, prefix,
                                                    mode, antialias)
        else:
            table = fresh["pos_embed"].clone()  # (1, prefix + N', D)
            table[:, :prefix] = state["pos_embed"][:, :prefix]
            state["pos_embed"] = table
    elif old_cfg.pos_embed == "learned2d":
        for axis in ("row", "col"):
            key = f"pos_embed.{axis}_pos_embed"
            if pos_embed == "interpolate":  # a (1, side, D) table is a side x 1 grid: resample along it
                state[key] = resample_pos_embed(state[key], (new_grid, 1), (old_grid, 1), 0, mode, antialias)
            else:
                state[key] = fresh[key]
    resized.load_state_dict(state)
    resized.fused_attn = model.fused_attn
    return resized.train(model.training)


__all__ = ["resample_pos_embed", "resize_vit"]
