"""The ViT's building blocks, bottom-up: patch embedding, position embeddings, attention, MLP, block.

Shapes: B batch, N tokens, D width (dim), H heads, P patch side, C channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def check_image_tensor(x: object, model: nn.Module) -> None:
    """Raise InputShapeError unless ``x`` is a floating-point tensor of the model's dtype: the images a
    model takes are already preprocessed (uint8 pixels go through ``vitlab.data.preprocess`` first)."""
    from .errors import InputShapeError

    name = type(model).__name__
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"{name} expects a torch.Tensor of images (B, C, H, W), got {type(x).__module__}."
                              f"{type(x).__name__}; convert it with torch.as_tensor(x, dtype=torch.float32).")
    if x.dtype == torch.uint8:
        raise InputShapeError(f"{name} got uint8 pixels; preprocess them first: vitlab.data.preprocess(images) "
                              "scales and normalises them to the float32 the model takes.")
    weight = next(model.parameters(), None)
    dtype = weight.dtype if weight is not None else torch.float32
    if not x.is_floating_point():
        raise InputShapeError(f"{name} expects floating-point images, got {x.dtype}; convert with x.to({dtype}).")
    if x.dtype != dtype and not torch.is_autocast_enabled():
        raise InputShapeError(f"{name}'s weights are {dtype} but the images are {x.dtype}; convert with "
                              f"x.to({dtype}) (or the model with model.to({x.dtype})).")


class PatchEmbed(nn.Module):
    """Cut an image into P x P patches and project each to D: a strided Conv2d (kernel = stride = P).

    The convolution is exactly "flatten each patch, multiply by a (C*P*P, D) matrix" -- lesson 01
    shows the two agree.
    """

    def __init__(self, *, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, D, h, w)
        return x.flatten(2).transpose(1, 2)  # (B, h*w, D)


def sincos_2d_pos_embed(dim: int, grid_size: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (as in MAE / "Simple ViT"), row-major patches.

    A quarter of the channels encode sin(y), cos(y), sin(x), cos(x) ... at geometrically spaced
    frequencies; here the order is [sin(x), cos(x), sin(y), cos(y)] blocks of dim/4 channels.

    Returns:
        (grid_size * grid_size, dim) float32 tensor; row r*grid_size + c is patch (row r, column c).
    """
    if dim % 4:
        raise ValueError(f"sincos_2d_pos_embed needs dim divisible by 4, got {dim}.")
    rows, cols = torch.meshgrid(
        torch.arange(grid_size, dtype=torch.float32),
        torch.arange(grid_size, dtype=torch.float32),
        indexing="ij",
    )
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)  # (D/4,)
    x = cols.flatten()[:, None] * omega[None, :]  # (N, D/4)
    y = rows.flatten()[:, None] * omega[None, :]  # (N, D/4)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)  # (N, D)


class FactorizedPosEmbed2d(nn.Module):
    """Learned 2-D position embedding, factorised: patch (r, c) gets ``row[r] + col[c]``.

    A 1-D table learns one vector per patch (rows * cols of them); this learns one per row and one
    per column (rows + cols), so the grid structure is built in. The prefix tokens (CLS) get their
    own learned vectors. (The paper's Appendix D.4 concatenates two D/2-wide tables instead; that is
    the special case where the row table is zero in the second half of the channels and the column
    table in the first.)

    Parameter names end in ``pos_embed`` so the training loop exempts them from weight decay, like
    the 1-D table.
    """

    def __init__(self, *, grid_size: "int | tuple[int, int]", dim: int, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        self.grid_size = (rows, cols)
        self.num_prefix_tokens = num_prefix_tokens
        self.row_pos_embed = nn.Parameter(torch.zeros(1, rows, dim))  # (1, rows, D)
        self.col_pos_embed = nn.Parameter(torch.zeros(1, cols, dim))  # (1, cols, D)
        self.prefix_pos_embed = (nn.Parameter(torch.zeros(1, num_prefix_tokens, dim))  # (1, prefix, D)
                                 if num_prefix_tokens else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated normal (std 0.02), as for the 1-D table."""
        for table in (self.row_pos_embed, self.col_pos_embed, self.prefix_pos_embed):
            if table is not None:
                nn.init.trunc_normal_(table, std=0.02)

    def table(self) -> torch.Tensor:
        """The full (1, prefix + rows * cols, D) table, patches row-major (as a 1-D table would be)."""
        grid = self.row_pos_embed[:, :, None, :] + self.col_pos_embed[:, None, :, :]  # (1, rows, cols, D)
        grid = grid.flatten(1, 2)  # (1, rows * cols, D)
        if self.prefix_pos_embed is None:
            return grid
        return torch.cat([self.prefix_pos_embed, grid], dim=1)  # (1, prefix + rows * cols, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, prefix + rows * cols, D) -> the same tokens plus their position vectors."""
        return x + self.table()

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, num_prefix_tokens={self.num_prefix_tokens}"


def attend_heads(module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 bias: "torch.Tensor | None" = None, allowed: "torch.Tensor | None" = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, by the fused kernel or the explicit path an attention module chose.

    Shared by every attention layer in vitlab (ViT, T2T's token attention, Swin's window attention,
    CLIP's text encoder).

    Args:
        module: the attention layer (a :class:`SoftmaxAttention`): ``fused_attn``, ``scale``, ``attend``
            (the softmax module, the recorder's hook point on the explicit path) and ``attn_drop``.
        q, k, v: (..., Nq, hd) queries and (..., N, hd) keys and values, heads in the leading dimensions.
        bias: optional additive bias broadcastable to (..., Nq, N) (relative positions, masks).
        allowed: optional bool mask broadcastable to (..., Nq, N), True where a query may attend to a
            key (e.g. not to padding); every query must be allowed at least one key.
    Returns:
        (..., Nq, hd) the attended values.
    """
    if module.fused_attn:
        p = module.attn_drop.p if module.training else 0.0
        mask = None if bias is None else bias.to(q.dtype)
        if allowed is not None:
            mask = allowed if mask is None else torch.where(allowed, mask, float("-inf"))  # broadcasts both
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    attn = (q * module.scale) @ k.transpose(-2, -1)  # (..., Nq, N)
    if bias is not None:
        attn = attn + bias
    if allowed is not None:
        attn = attn.masked_fill(~allowed, float("-inf"))
    attn = module.attend(attn)  # rows sum to 1 -- the recorder's hook point
    return module.attn_drop(attn) @ v


class AttentionWeights(nn.Softmax):
    """The softmax of an attention layer's explicit path, as a named module of its own type: the one
    point where the attention weights appear, (..., queries, keys) with rows summing to 1. A forward hook
    on it records them; :func:`vitlab.record_attention` finds every one by this type."""

    def __init__(self) -> None:
        super().__init__(dim=-1)


class SoftmaxAttention(nn.Module):
    """What every vitlab attention layer has (ViT, hybrid, MAE, CLIP, T2T's token attention, Swin's window
    attention), and the contract :func:`vitlab.record_attention` relies on, in timm's names:

    - ``fused_attn``: True (default) computes attention with ``F.scaled_dot_product_attention``, which
      never materialises the weights; False takes the explicit path, softmax(q k^T * scale + bias) v;
    - ``attend``: the :class:`AttentionWeights` module that explicit path's softmax runs through;
    - ``scale`` (1 / sqrt(head_dim)) and ``attn_drop`` (dropout on the weights).

    Both paths compute the same output; which one runs never depends on who is watching.
    """

    def __init__(self, *, head_dim: int, attn_drop: float = 0.0, fused_attn: bool = True) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.fused_attn = fused_attn
        self.attend = AttentionWeights()
        self.attn_drop = nn.Dropout(attn_drop)


class Attention(SoftmaxAttention):
    """Multi-head self-attention (a :class:`SoftmaxAttention`: fused or explicit path, the same output).

    On the explicit path the softmax is the named module ``attend``, where a hook can record the
    (B, H, N, N) attention weights.
    """

    def __init__(self, *, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fused_attn: bool = True) -> None:
        if dim % heads:
            raise ConfigError(f"dim={dim} is not divisible by heads={heads}; choose heads among its divisors.")
        super().__init__(head_dim=dim // heads, attn_drop=attn_drop, fused_attn=fused_attn)
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, key_padding: "torch.Tensor | None" = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D). ``key_padding``: optional (B, N) bool, True at padding tokens,
        which no query attends to."""
        B, N, D = x.shape
        allowed = None if key_padding is None else ~key_padding[:, None, None, :]  # (B, 1, 1, N)
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, N, hd)
        x = attend_heads(self, q, k, v, allowed=allowed)  # (B, H, N, hd)
        x = x.transpose(1, 2).reshape(B, N, D)  # heads side by side again
        return self.proj_drop(self.proj(x))


class MLP(nn.Module):
    """Two linear layers with a GELU between: D -> hidden -> D."""

    def __init__(self, *, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: during training, drop a residual branch for a random subset of samples."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim=dim, heads=heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim=dim, hidden=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, key_padding: "torch.Tensor | None" = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D). ``key_padding``: optional (B, N) bool, True at padding tokens
        (CLIP's captions), never attended to."""
        x = x + self.drop_path(self.attn(self.norm1(x), key_padding=key_padding))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_vit_weights(module: nn.Module) -> None:
    """timm-style init: truncated normal (std 0.02) for linear layers, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * math.prod(module.kernel_size)
        nn.init.trunc_normal_(module.weight, std=math.sqrt(1.0 / fan_in))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
