"""Images to sequences of flattened patches, and back (lesson 01).

The ViT's first step (Dosovitskiy et al., 2021, Sec. 3.1) reshapes an image x of shape (C, H, W) into
N = HW / P^2 flattened patches x_p of length C * P^2. In einops notation::

    patchify:    'b c (h p1) (w p2) -> b (h w) (c p1 p2)'
    unpatchify:  'b (h w) (c p1 p2) -> b c (h p1) (w p2)'

Patches are numbered row-major (left to right, then top to bottom) and each is flattened in
(c, p1, p2) order -- the order of ``Conv2d.weight[d]`` -- so that
``patchify(x, P) @ conv.weight.reshape(D, -1).T + conv.bias`` equals :class:`vitlab.layers.PatchEmbed`.

Shapes: B batch, C channels, H x W image, P patch side, h = H/P, w = W/P, N = h*w patches.
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError, InputShapeError

__all__ = ["valid_patch_sizes", "patch_grid_size", "grid_shape", "patchify", "unpatchify", "foreground_patches"]


def valid_patch_sizes(img_size: int) -> list[int]:
    """The patch sides that tile an ``img_size`` x ``img_size`` image exactly (its divisors).

    Args:
        img_size: side of the square image in pixels.
    Returns:
        the divisors of ``img_size`` in increasing order, e.g. 28 -> [1, 2, 4, 7, 14, 28].
    """
    _check_positive_int(img_size, "img_size")
    return [p for p in range(1, img_size + 1) if img_size % p == 0]


def patch_grid_size(img_size: int, patch_size: int) -> int:
    """Patches per side: ``img_size // patch_size``, after checking that the patches tile the image.

    Args:
        img_size: side of the (square) image in pixels.
        patch_size: side of a square patch in pixels.
    Returns:
        the grid side h, so the image gives h * h patches.
    Raises:
        InputShapeError: if ``patch_size`` does not divide ``img_size`` (the message lists those that do).
    """
    _check_positive_int(img_size, "img_size")
    _check_positive_int(patch_size, "patch_size")
    if img_size % patch_size:
        raise InputShapeError(
            f"An image side of {img_size} pixels is not divisible by patch_size={patch_size}; "
            f"patch sizes that tile it: {valid_patch_sizes(img_size)}. Choose one of them, or "
            "resize/crop the image to a multiple of the patch size."
        )
    return img_size // patch_size


def is_grid_size(value: object) -> bool:
    """Whether ``value`` is a grid size: a positive int, or (rows, cols) of positive ints."""
    pair = (value, value) if isinstance(value, int) else value
    return (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pair))


def grid_shape(num_patches: int, grid_size: "int | tuple[int, int] | None" = None,
               name: str = "grid_size") -> tuple[int, int]:
    """(rows, cols) of the row-major grid that ``num_patches`` patch tokens form.

    The one place vitlab works this out (unpatchify, the analyses, the widgets).

    Args:
        num_patches: patch tokens, prefix tokens (CLS, registers) already left out.
        grid_size: patches per side, or (rows, cols); None: the square grid, which must exist.
        name: what the caller calls ``grid_size``, for the messages.
    Raises:
        InputShapeError: no square grid holds ``num_patches`` (pass grid_size, or check
            num_prefix_tokens), or ``grid_size`` holds another number of patches.
    """
    if grid_size is not None and not is_grid_size(grid_size):
        raise InputShapeError(f"{name} must be a positive int or (rows, cols) of positive ints, got {grid_size!r}.")
    if grid_size is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise InputShapeError(
                f"{num_patches} patch tokens are not a square number, so not a square grid; pass "
                f"{name}=(rows, cols) for a non-square image (or check num_prefix_tokens).")
        return side, side
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if rows * cols != num_patches:
        raise InputShapeError(f"{name}={grid_size} holds {rows * cols} patches, but there are "
                              f"{num_patches} patch tokens (after the prefix tokens).")
    return rows, cols


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping P x P patches and flatten each one.

    ``'b c (h p1) (w p2) -> b (h w) (c p1 p2)'``: patch n = r * w + c covers rows r*P..r*P+P-1 and
    columns c*P..c*P+P-1; inside a patch the values are ordered channel, then row, then column.
    Works for any dtype (uint8 images too) and for non-square images whose sides are multiples of P.

    Args:
        images: (B, C, H, W) tensor.
        patch_size: P, the side of a square patch; must divide H and W.
    Returns:
        (B, N, C * P * P) tensor with N = (H / P) * (W / P).
    Raises:
        InputShapeError: for a tensor that is not 4-D, or sides not divisible by P.
    """
    _check_tensor(images, "images")
    if images.ndim != 4:
        hint = " For one image use images.unsqueeze(0)." if images.ndim == 3 else ""
        raise InputShapeError(
            f"patchify expects a batch of images (B, C, H, W); got a {images.ndim}-D tensor of shape "
            f"{tuple(images.shape)}.{hint}"
        )
    B, C, H, W = images.shape
    h = patch_grid_size(H, patch_size)
    w = patch_grid_size(W, patch_size)
    P = patch_size
    x = images.reshape(B, C, h, P, w, P)  # (B, C, h, p1, w, p2)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p1, p2)
    return x.reshape(B, h * w, C * P * P)  # (B, N, C*P*P)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int,
               grid_size: "int | tuple[int, int] | None" = None) -> torch.Tensor:
    """Put flattened patches back together into images; the exact inverse of :func:`patchify`.

    ``'b (h w) (c p1 p2) -> b c (h p1) (w p2)'``.

    Args:
        patches: (B, N, C * P * P) tensor, patches in row-major order.
        patch_size: P, the side of a square patch.
        channels: C, the number of image channels.
        grid_size: patches per side, ``h`` or ``(h, w)``; default: a square grid, h = w = sqrt(N).
    Returns:
        (B, C, h * P, w * P) tensor.
    Raises:
        InputShapeError: for a tensor that is not 3-D, a last dimension other than C * P * P, or an N
            that does not fit the grid.
    """
    _check_tensor(patches, "patches")
    _check_positive_int(patch_size, "patch_size")
    _check_positive_int(channels, "channels")
    if patches.ndim != 3:
        raise InputShapeError(
            f"unpatchify expects patches (B, N, C*P*P); got a {patches.ndim}-D tensor of shape "
            f"{tuple(patches.shape)}."
        )
    B, N, L = patches.shape
    P, C = patch_size, channels
    if L != C * P * P:
        raise InputShapeError(
            f"unpatchify got patches of length {L}, but channels={C} and patch_size={P} give "
            f"C*P*P = {C * P * P}. Pass the channels and patch size the patches were made with."
        )
    h, w = grid_shape(N, grid_size)
    x = patches.reshape(B, h, w, C, P, P)  # (B, h, w, C, p1, p2)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h, p1, w, p2)
    return x.reshape(B, C, h * P, w * P)  # (B, C, H, W)


def _check_tensor(value: object, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; "
                        "convert with torch.as_tensor(...).")


def _check_positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}.")


def foreground_patches(images: torch.Tensor, patch_size: int, threshold: float = 0.1) -> torch.Tensor:
    """Which patches hold the object of a dark-background image (Fashion-MNIST's garments).

    A patch is foreground when its mean pixel value (over channels and pixels) exceeds ``threshold``
    of white. The reference for "does the map sit on the object?": a uniform map puts the share
    ``mask.float().mean()`` of its mass there.

    Args:
        images: (B, C, H, W) uint8 images (0-255), as the datasets hold them, or floats in [0, 1].
        patch_size: the model's patch side (the mask is on its grid).
        threshold: fraction of white (0.1: 25.5 of 255).
    Returns:
        (B, H / P, W / P) booleans.
    Raises:
        InputShapeError: as :func:`patchify`, or floats outside [0, 1] (preprocessed images: pass
            the raw ones).
    """
    _check_tensor(images, "images")
    if images.dtype == torch.uint8:
        white = 255.0
    elif images.is_floating_point() and (images.numel() == 0 or (images.min() >= 0 and images.max() <= 1)):
        white = 1.0
    else:
        raise InputShapeError(f"images must be uint8 (0-255) or floats in [0, 1], got {images.dtype}"
                              + (f" in [{images.min().item():.2f}, {images.max().item():.2f}]"
                                 if images.is_floating_point() and images.numel() else "")
                              + ": pass the raw images, not preprocessed ones.")
    patches = patchify(images, patch_size).float().mean(dim=-1)  # (B, N)
    rows, cols = images.shape[-2] // patch_size, images.shape[-1] // patch_size
    return (patches > threshold * white).reshape(images.shape[0], rows, cols)
