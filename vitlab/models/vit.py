"""The Vision Transformer (Dosovitskiy et al., ICLR 2021), top-down in one screen.

image (B, C, H, W) -> patch_embed -> (B, N, D) -> [CLS] + position embedding -> blocks -> norm
-> pool (CLS token or mean of patch tokens) -> head -> logits (B, num_classes)
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ViTConfig
from ..errors import ConfigError, InputShapeError
from ..layers import (Block, FactorizedPosEmbed2d, PatchEmbed, check_image_tensor, init_vit_weights,
                      sincos_2d_pos_embed)


def build_encoder(model: nn.Module, cfg) -> None:
    """Give ``model`` everything of a ViT after its tokenizer, as attributes with timm's names:
    ``cls_token``, ``pos_embed``, ``pos_drop``, ``blocks``, ``norm``, ``head_drop``, ``head``.

    :class:`ViT` (whose tokenizer is the patch embedding) and T2T-ViT (whose tokenizer is the
    tokens-to-token module) share it, and :meth:`ViT.reset_parameters`, :meth:`ViT._pos_embed` and
    :meth:`ViT.forward_head`, so both run the same encoder. ``cfg`` needs ``dim``, ``depth``,
    ``heads``, ``mlp_ratio``, ``qkv_bias``, ``norm_eps``, the drop rates, ``pool``, ``pos_embed``,
    ``grid_size``, ``num_patches``, ``num_prefix_tokens`` and ``num_classes``.
    """
    D = cfg.dim
    model.num_prefix_tokens = cfg.num_prefix_tokens
    model.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "cls" else None
    num_tokens = cfg.num_patches + cfg.num_prefix_tokens
    if cfg.pos_embed == "learned":
        model.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, D))
    elif cfg.pos_embed == "sincos2d":  # fixed: a buffer, saved with the weights, never trained
        table = torch.zeros(1, num_tokens, D)
        table[0, cfg.num_prefix_tokens:] = sincos_2d_pos_embed(D, cfg.grid_size)
        model.register_buffer("pos_embed", table)
    elif cfg.pos_embed == "learned2d":  # a module: a row table + a column table (+ prefix rows)
        model.pos_embed = FactorizedPosEmbed2d(grid_size=cfg.grid_size, dim=D, num_prefix_tokens=cfg.num_prefix_tokens)
    else:
        model.pos_embed = None
    model.pos_drop = nn.Dropout(cfg.drop_rate)
    rates = [cfg.drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]  # linear rule
    model.blocks = nn.Sequential(*[
        Block(dim=D, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
              norm_eps=cfg.norm_eps, drop=cfg.drop_rate, attn_drop=cfg.attn_drop_rate,
              drop_path=rate)
        for rate in rates
    ])
    model.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
    model.head_drop = nn.Dropout(cfg.drop_rate)
    model.head = nn.Linear(D, cfg.num_classes) if cfg.num_classes else nn.Identity()


class ViT(nn.Module):
    """Vision Transformer built from a :class:`vitlab.ViTConfig`.

    Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
    ``pos_embed``, ``blocks.i.attn.qkv`` ...), so :func:`vitlab.from_timm` / :func:`vitlab.to_timm`
    are plain renames. With ``pool='gap'`` the final ``norm`` is applied after pooling (timm's
    ``fc_norm``).

    Args:
        cfg: the model's configuration (``vitlab.get_preset(name)`` gives the named ones).
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, ViTConfig):
            raise ConfigError(f"ViT needs a ViTConfig, got {type(cfg).__name__}; "
                              "use vitlab.build_model(cfg) for any vitlab config.")
        self.cfg = cfg
        self.patch_embed = PatchEmbed(patch_size=cfg.patch_size, in_chans=cfg.in_chans, dim=cfg.dim)
        build_encoder(self, cfg)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh weights: truncated normal for linear layers and the learned position embedding."""
        self.apply(init_vit_weights)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        elif isinstance(self.pos_embed, FactorizedPosEmbed2d):
            self.pos_embed.reset_parameters()
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    @property
    def fused_attn(self) -> bool:
        """Whether the blocks use fused scaled_dot_product_attention (True by default)."""
        return all(block.attn.fused_attn for block in self.blocks)

    @fused_attn.setter
    def fused_attn(self, value: bool) -> None:
        for block in self.blocks:
            block.attn.fused_attn = bool(value)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputShapeError unless x is (B, in_chans, img_size, img_size)."""
        c = self.cfg
        check_image_tensor(x, self)
        if x.ndim != 4:
            raise InputShapeError(
                f"ViT expects a batch of images (B, C, H, W); got a {x.ndim}-D tensor of shape "
                f"{tuple(x.shape)}. For one image use x.unsqueeze(0)."
            )
        if x.shape[1] != c.in_chans:
            raise InputShapeError(
                f"ViT was built for in_chans={c.in_chans} but the input has {x.shape[1]} channels "
                f"(shape {tuple(x.shape)}). Convert the images or build the model with "
                f"in_chans={x.shape[1]}."
            )
        if tuple(x.shape[2:]) != (c.img_size, c.img_size):
            raise InputShapeError(
                f"ViT was built for {c.img_size}x{c.img_size} images but got "
                f"{x.shape[2]}x{x.shape[3]}. Resize the images, or move the model to the new size "
                "with its position embeddings resampled."
            )

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        if isinstance(self.pos_embed, FactorizedPosEmbed2d):
            x = self.pos_embed(x)  # rows + columns
        elif self.pos_embed is not None:
            x = x + self.pos_embed
        return self.pos_drop(x)

    def pos_embed_table(self) -> "torch.Tensor | None":
        """The (1, prefix + N, D) table added to the tokens, whatever the kind of embedding (None for
        'none'); for 'learned2d' it is built from the row and column tables."""
        if isinstance(self.pos_embed, FactorizedPosEmbed2d):
            return self.pos_embed.table()
        return self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + N, D) after the last block.

        With ``pool='cls'`` the final LayerNorm is applied here (to every token); with
        ``pool='gap'`` it is applied after pooling, in :meth:`forward_head`.
        """
        self.check_input(x)
        x = self.patch_embed(x)  # (B, N, D)
        x = self._pos_embed(x)  # (B, prefix + N, D)
        x = self.blocks(x)
        return self.norm(x) if self.cfg.pool == "cls" else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, prefix + N, D) -> logits (B, num_classes), or the pooled (B, D) if pre_logits."""
        if self.cfg.pool == "cls":
            x = x[:, 0]  # (B, D)
        else:
            x = self.norm(x[:, self.num_prefix_tokens:].mean(dim=1))  # (B, D)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, num_classes): the paper's picture, nothing else."""
        return self.forward_head(self.forward_features(x))
