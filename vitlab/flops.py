"""FLOP counts of what a model really computes: one image's forward, and one training step's forward
and backward.

The count runs the model once on a copy under ``torch.utils.flop_counter.FlopCounterMode`` and adds
up matrix multiplies, convolutions and attention (2 FLOPs per multiply-add); element-wise work
(norms, activations, softmax) is left out, as in the papers' tables.

Fused attention needs care: ``F.scaled_dot_product_attention`` runs as one kernel whose name depends
on the device and torch version, and some of these kernels are unknown to torch's FLOP counter
(torch 2.14's counter knows the CUDA kernels but not ``_scaled_dot_product_flash_attention_for_cpu``,
so on the CPU attention counted as zero). Here every attention kernel is counted by one formula
written below, so the count does not depend on which kernel the machine picked:

- forward: scores ``q k^T`` and ``scores v``, two matrix products of (Nq x d) by (d x Nk);
- backward: the scores are recomputed (flash attention keeps no (Nq x Nk) matrix), then the
  gradients of ``scores v`` (for the scores and for v) and of ``q k^T`` (for q and for k): five
  products.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import ConfigError

__all__ = ["count_forward_flops", "count_train_flops", "attention_flops"]


def attention_flops(query_shape: tuple, key_shape: tuple, value_shape: tuple, backward: bool = False) -> int:
    """FLOPs of softmax(q k^T) v for (..., Nq, d) queries and (..., Nk, d) keys, (..., Nk, dv) values.

    Args:
        query_shape, key_shape, value_shape: the shapes, heads in the leading dimensions (heads of
            the keys may divide those of the queries, as in grouped-query attention).
        backward: count the backward pass (recomputed scores + four gradient products) instead.
    Returns:
        FLOPs (2 per multiply-add).
    """
    *lead, nq, d = query_shape
    nk, dv = key_shape[-2], value_shape[-1]
    batch_heads = 1
    for size in lead:
        batch_heads *= size
    scores = 2 * batch_heads * nq * nk * d  # q k^T
    mix = 2 * batch_heads * nq * nk * dv  # scores v
    if not backward:
        return scores + mix
    # recompute q k^T; grad of scores v: d_scores (like mix) and d_v (like mix); grad of q k^T: d_q, d_k
    return scores + 2 * mix + 2 * scores


def _fused_attention_formulas() -> dict:
    """{aten op: formula} for every fused attention kernel this torch build has, ours replacing torch's."""
    aten = torch.ops.aten
    forward_names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                     "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")
    mapping = {}

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return attention_flops(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return attention_flops(query, key, value, backward=True)

    for name in forward_names:
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = forward
        if hasattr(aten, name + "_backward"):
            mapping[getattr(aten, name + "_backward")] = backward
    return mapping


def _count(model: nn.Module, input_shape: tuple, backward: bool, batch: int = 2) -> int:
    """FLOPs for ``batch`` images (forward, or forward + backward), on a float32 CPU copy of the model."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ConfigError(f"input_shape must be (C, H, W) of positive ints for one image, got {input_shape!r}.")
    probe = copy.deepcopy(model).cpu().float().eval()  # eval: batch norm does not update its statistics
    x = torch.zeros(batch, *shape)
    counter = FlopCounterMode(display=False, custom_mapping=_fused_attention_formulas())
    with counter:
        if backward:
            probe(x).sum().backward()
        else:
            with torch.no_grad():
                probe(x)
    return counter.get_total_flops()


def count_forward_flops(model: nn.Module, input_shape: "tuple[int, int, int]") -> int:
    """Forward-pass FLOPs for one image.

    Args:
        model: any classifier taking (B, C, H, W) images (a copy is run; the model is not touched).
        input_shape: one image's shape (C, H, W), e.g. (1, 28, 28).
    Returns:
        FLOPs per image (int).
    """
    return _count(model, input_shape, backward=False) // 2


def count_train_flops(model: nn.Module, input_shape: "tuple[int, int, int]", images_seen: int) -> int:
    """Training FLOPs: forward + backward for one image (counted, not the usual 3x guess) x images seen.

    The backward pass computes weight gradients everywhere and input gradients wherever a later layer
    needs them (not for the images themselves, so the first layer costs forward + weight gradient).

    Args:
        model: the classifier (a copy is run).
        input_shape: one image's shape (C, H, W).
        images_seen: images processed in training (epochs x train size, or steps x batch).
    Returns:
        Total training FLOPs (int).
    """
    if not isinstance(images_seen, int) or isinstance(images_seen, bool) or images_seen < 0:
        raise ConfigError(f"images_seen must be a whole number >= 0, got {images_seen!r}.")
    return _count(model, input_shape, backward=True) // 2 * images_seen
