"""Reading a ViT's residual stream: the logit lens, and what removing a head does.

Logit lens (nostalgebraist, 2020, for language models; used on ViTs by ViT-Prisma): apply the model's
final norm and classifier head to the residual stream after every block, for every token. The last
block's row of the CLS token is the model's own logits; earlier rows show when the answer appears.

Head ablation: replace one head's output, before the attention's output projection, by zero or by its
mean, and see how much the model's answer changes: which heads matter.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError, InputShapeError

__all__ = ["residual_stream", "logit_lens", "ablate_heads"]


def _vit_parts(model: nn.Module):
    from ..models.vit import ViT

    if not isinstance(model, ViT):
        raise ConfigError(f"The logit lens reads a vitlab ViT (from_timm / from_hf convert others), not "
                          f"{type(model).__name__}.")
    return model


@torch.no_grad()
def residual_stream(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens before the first block and after every block: (depth + 1, B, prefix + N, D)."""
    vit = _vit_parts(model)
    vit.check_input(images)
    x = vit._pos_embed(vit.patch_embed(images))
    states = [x]
    for block in vit.blocks:
        x = block(x)
        states.append(x)
    return torch.stack(states)


@torch.no_grad()
def logit_lens(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The final norm and head applied to every token after every block.

    Args:
        model: a vitlab ViT in eval mode (``pool='cls'`` or ``'gap'``).
        images: (B, C, H, W) preprocessed images.
    Returns:
        (depth, B, prefix + N, num_classes) logits; for ``pool='cls'`` entry ``[-1, :, 0]`` is the model's
        own output, for ``'gap'`` the model's output is the head of the mean of the patch tokens, which
        ``logit_lens(...)[-1, :, prefix:]`` does not average (read it per token).
    Raises:
        ConfigError: not a vitlab ViT, or a model with no classifier head (num_classes=0).
    """
    vit = _vit_parts(model)
    if vit.cfg.num_classes == 0:
        raise ConfigError("This ViT has no classifier head (num_classes=0): there are no logits to read.")
    states = residual_stream(vit, images)[1:]  # (depth, B, T, D): after each block
    return vit.head(vit.norm(states))


@contextmanager
def ablate_heads(model: nn.Module, heads: "dict[tuple[int, int], str]"):
    """Inside the ``with``, the listed heads' outputs are replaced before each attention's projection.

    Args:
        model: a vitlab ViT (its blocks' ``attn.proj`` receives the heads side by side).
        heads: ``{(block, head): 'zero' | 'mean'}``; 'mean' uses the head's mean output over the batch and
            tokens of the same forward pass (mean ablation), 'zero' sets it to 0.
    Raises:
        ConfigError: an unknown mode. InputShapeError: a block or head index out of range.
    """
    vit = _vit_parts(model)
    depth, count = len(vit.blocks), vit.cfg.heads
    for (block, head), mode in heads.items():
        if not (0 <= block < depth and 0 <= head < count):
            raise InputShapeError(f"Head ({block}, {head}) does not exist: this ViT has blocks 0..{depth - 1} "
                                  f"and heads 0..{count - 1}.")
        if mode not in ("zero", "mean"):
            raise ConfigError(f"Ablation mode {mode!r} is unknown; use 'zero' or 'mean'.")
    width = vit.cfg.dim // count

    def hook_for(block: int):
        chosen = {h: m for (b, h), m in heads.items() if b == block}

        def replace(module, args):
            x = args[0].clone()  # (B, T, H * hd): the heads side by side
            for h, mode in chosen.items():
                part = x[..., h * width:(h + 1) * width]
                if mode == "zero":
                    part.zero_()
                else:
                    part.copy_(part.mean(dim=(0, 1), keepdim=True).expand_as(part))
            return (x,) + tuple(args[1:])
        return replace

    handles = [vit.blocks[b].attn.proj.register_forward_pre_hook(hook_for(b)) for b in sorted({b for b, _ in heads})]
    try:
        yield vit
    finally:
        for handle in handles:
            handle.remove()
