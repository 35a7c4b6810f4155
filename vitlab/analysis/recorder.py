"""Record softmax attention weights from every vitlab model and from timm's VisionTransformer family.

The trap this avoids: with fused attention (``F.scaled_dot_product_attention``) the softmax never runs
as a separate step, so a hook on the softmax (or on timm's ``attn_drop``) silently records nothing.
The recorder switches every attention module to its explicit path while recording, hooks the point
where the softmax weights appear, and on exit puts every flag and hook back exactly as it was.
"""

from __future__ import annotations

from torch import nn
import torch

from ..errors import RecorderError




def _attention_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, kind) for every attention module it can record, in forward (registration) order.

    kind 'vitlab': a :class:`vitlab.layers.SoftmaxAttention` (every vitlab model), recorded at its
    ``attend`` softmax's output; kind 'timm': timm's ViT ``Attention`` (``fused_attn``, ``qkv``,
    ``attn_drop``), recorded at ``attn_drop``'s input, which is its softmax; kind 'hf': a transformers
    attention layer (``q_proj``, ``k_proj``, ``v_proj`` and the model's config), which returns its weights
    as the second output when the model runs its eager attention.
    """
    from ..layers import SoftmaxAttention

    found = []
    for name, module in model.named_modules():
        if isinstance(module, SoftmaxAttention):
            found.append((name, module, "vitlab"))
        elif hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module) \
                and hasattr(module, "qkv"):
            found.append((name, module, "timm"))
        elif all(isinstance(getattr(module, p, None), nn.Linear) for p in ("q_proj", "k_proj", "v_proj")) \
                and hasattr(getattr(module, "config", None), "_attn_implementation"):
            found.append((name, module, "hf"))
    return found


class AttentionRecorder:
    """Holds what :func:`record_attention` recorded.

    Attributes:
        names: the attention modules' names, in block order.
        maps: one (B, H, N, N) tensor per block, in block order; several forward passes inside the
            ``with`` are concatenated along B.
    """

    def __init__(self, model: nn.Module, keep_graph: bool = False) -> None:
        self.model = model
        self.keep_graph = keep_graph
        self._targets = _attention_modules(model)
        if not self._targets:
            raise RecorderError(
                f"{type(model).__name__} has no attention module vitlab knows how to record. Supported: every "
                "vitlab model (its attention layers are vitlab.layers.SoftmaxAttention: ViT, hybrid, MAE, CLIP, "
                "T2T-ViT, Swin), timm's VisionTransformer family (attention modules with fused_attn, qkv "
                "and attn_drop) and transformers' ViT, DeiT and DINOv2 (q_proj, k_proj, v_proj).")
        self.names = [name for name, _, _ in self._targets]
        self._calls: list[list[torch.Tensor]] = [[] for _ in self._targets]
        self._handles: list = []
        self._saved_flags: list[bool] = []

    def _hook_for(self, index: int, kind: str):
        def record(module, inputs, output):
            if kind == "hf":  # (attn_output, attn_weights); the weights are None unless attention ran eager
                weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
                if weights is None:
                    raise RecorderError(f"{type(module).__name__} returned no attention weights: its model does "
                                        "not run eager attention. Pass the transformers model itself (a "
                                        "PreTrainedModel) to record_attention, which switches it to eager.")
            else:
                weights = output if kind == "vitlab" else inputs[0]  # timm: attn_drop's input is the softmax
            self._calls[index].append(weights if self.keep_graph else weights.detach())
        return record

    def _hf_model(self):
        """The transformers model whose attention implementation is switched while recording."""
        if not any(kind == "hf" for _, _, kind in self._targets):
            return None
        if not hasattr(self.model, "set_attn_implementation"):
            raise RecorderError(f"{type(self.model).__name__} holds transformers attention layers but is not a "
                                "transformers PreTrainedModel; pass the PreTrainedModel (e.g. ViTModel) itself.")
        return self.model

    def __enter__(self) -> "AttentionRecorder":
        # Train mode: vitlab's and timm's maps are read before attention dropout (the softmax itself), so they
        # are recorded as they are; transformers returns its weights after dropout, so that case is refused.
        dropped = [name for name, module, kind in self._targets if kind == "hf" and module.training
                   and getattr(module, "attention_dropout", 0.0) > 0]
        if dropped:
            raise RecorderError(f"{type(self.model).__name__} is in train mode with attention dropout, and transformers "
                                f"returns its attention weights after dropout ({dropped[0]}): call model.eval() "
                                "before recording.")
        self._hf = hf = self._hf_model()
        if hf is not None:  # under SDPA transformers computes no weights: eager while recording, then back
            self._saved_hf = hf.config._attn_implementation
            if self._saved_hf != "eager":
                hf.set_attn_implementation("eager")
        for index, (_, module, kind) in enumerate(self._targets):
            if kind == "hf":
                self._saved_flags.append(None)
                point = module
            else:
                self._saved_flags.append(module.fused_attn)  # timm's flag name, which vitlab's layers share
                module.fused_attn = False
                point = module.attend if kind == "vitlab" else module.attn_drop
            self._handles.append(point.register_forward_hook(self._hook_for(index, kind)))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for handle in self._handles:
            handle.remove()
        for (_, module, kind), flag in zip(self._targets, self._saved_flags):
            if kind != "hf":
                module.fused_attn = flag
        if self._hf is not None and self._hf.config._attn_implementation != self._saved_hf:
            self._hf.set_attn_implementation(self._saved_hf)
        self._handles, self._saved_flags = [], []
        if exc_type is None and not any(self._calls):
            raise RecorderError(
                "record_attention recorded nothing: run the model inside the `with` block, e.g. "
                "`with record_attention(model) as rec: model(x)`.")
        if exc_type is None and len({len(c) for c in self._calls}) != 1:
            raise RecorderError("Some attention modules ran a different number of times than others; "
                                "the recorded maps would not line up by block.")

    @property
    def maps(self) -> list[torch.Tensor]:
        # one forward pass: the recorded tensors themselves (so autograd.grad can target them)
        return [calls[0] if len(calls) == 1 else torch.cat(calls, dim=0) for calls in self._calls if calls]

    def stacked(self) -> torch.Tensor:
        """All maps as one (L, B, H, N, N) tensor."""
        return torch.stack(self.maps)

    def clear(self) -> None:
        self._calls = [[] for _ in self._targets]


def record_attention(model: nn.Module, keep_graph: bool = False) -> AttentionRecorder:
    """Record every block's softmax attention weights during the forward passes inside a ``with``.

    Example::

        with vitlab.record_attention(model) as rec:
            model(x)
        rec.maps  # list over blocks of (B, H, N, N); rows sum to 1

    Works on every vitlab model, on timm's VisionTransformer family and on transformers' ViT, DeiT and
    DINOv2, also with fused attention or SDPA on (it switches to the explicit or eager path while
    recording and restores the flags on exit). In train mode the maps are the softmax weights before
    attention dropout (vitlab, timm: what the model attends with before some weights are dropped);
    transformers returns its weights after dropout, so recording one in train mode with attention
    dropout is refused.

    Args:
        model: the model to record.
        keep_graph: keep the maps in the autograd graph (for gradient-weighted rollout); by default
            they are detached.
    Raises:
        RecorderError: the model has no supported attention module, or nothing was recorded.
    """
    return AttentionRecorder(model, keep_graph=keep_graph)
