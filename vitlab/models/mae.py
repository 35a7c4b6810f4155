"""Masked autoencoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022),
built from the ViT of lessons 01-03.

image (B, C, H, W) -> patch_embed + position embedding -> (B, N, D)
-> random_masking: keep round(N * (1 - mask_ratio)) patches per image -> (B, n_visible, D)
-> [CLS] + encoder blocks on the visible patches only -> (B, 1 + n_visible, D)
-> decoder_embed -> (B, 1 + n_visible, Dd) -> append mask tokens, undo the shuffle -> (B, 1 + N, Dd)
-> + decoder position embedding -> decoder blocks -> decoder_pred -> (B, N, C * P * P) pixels
-> loss: mean squared error on the masked patches only

The encoder is a :class:`vitlab.models.vit.ViT` (fixed 2-D sin-cos position embedding, CLS token, no
head), so after pre-training :func:`vit_from_mae` turns it into an ordinary classifier.
Shapes: B batch, N patches, D encoder width, Dd decoder width, P patch side, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..config import ViTConfig, check_fields, check_positive_ints, register_config, register_preset, replace_config
from ..errors import ConfigError, InputShapeError
from ..layers import Block, init_vit_weights, sincos_2d_pos_embed
from ..patches import patchify, unpatchify
from .vit import ViT

__all__ = ["MAEConfig", "MAE", "MAEOutput", "num_visible_patches", "random_masking", "restore_order",
           "normalize_patches", "masked_patch_loss", "vit_from_mae"]


@dataclass(frozen=True)
class MAEConfig:
    """A masked autoencoder: a ViT encoder (the first block of fields) and a lighter decoder."""

    img_size: int = 28  # side of the square input image, in pixels
    patch_size: int = 4  # side of a square patch; 28 / 4 -> a 7 x 7 grid of 49 patches
    in_chans: int = 1  # input channels
    dim: int = 64  # encoder width D (the ViT's)
    depth: int = 6  # encoder blocks
    heads: int = 4  # encoder attention heads
    mlp_ratio: float = 2.0  # MLP hidden width = mlp_ratio * width, encoder and decoder
    decoder_dim: int = 48  # decoder width Dd (MAE: narrower than the encoder)
    decoder_depth: int = 2  # decoder blocks (MAE: 8 for ViT-L; "lighter" than the encoder)
    decoder_heads: int = 4  # decoder attention heads
    mask_ratio: float = 0.75  # share of patches hidden from the encoder, in (0, 1) (MAE: 0.75)
    norm_pix_loss: bool = False  # True: predict each patch normalised to mean 0, variance 1 (MAE's best)
    norm_eps: float = 1e-6  # LayerNorm epsilon

    def __post_init__(self) -> None:
        check_fields(self)
        self.encoder_config()  # validates the encoder fields (sizes, divisibility)
        check_positive_ints(self, ("decoder_dim", "decoder_depth", "decoder_heads"))
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"decoder_dim={self.decoder_dim} is not divisible by decoder_heads="
                              f"{self.decoder_heads}; choose heads among its divisors.")
        if self.decoder_dim % 4:
            raise ConfigError(f"decoder_dim must be divisible by 4 (2-D sin-cos position embedding), "
                              f"got {self.decoder_dim}.")
        check_mask_ratio(self.mask_ratio, self.num_patches)

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def patch_pixels(self) -> int:
        """Values per flattened patch: C * P * P."""
        return self.in_chans * self.patch_size**2

    def encoder_config(self, num_classes: int = 0, pool: str = "cls") -> ViTConfig:
        """The ViT the encoder is (``num_classes=0``, ``pool='cls'``), or a classifier built from it."""
        return ViTConfig(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                         num_classes=num_classes, dim=self.dim, depth=self.depth, heads=self.heads,
                         mlp_ratio=self.mlp_ratio, pos_embed="sincos2d", pool=pool, norm_eps=self.norm_eps)

    def replace(self, **changes: Any) -> "MAEConfig":
        return replace_config(self, **changes)


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # () mean squared error over the masked patches
    pred: torch.Tensor  # (B, N, C*P*P) predicted pixels of every patch (normalised if norm_pix_loss)
    mask: torch.Tensor  # (B, N) 1 = masked (hidden from the encoder), 0 = visible
    ids_restore: torch.Tensor  # (B, N) undoes the shuffle: shuffled[:, ids_restore] is the original order


# ---- the maths, tensor in / tensor out -------------------------------------------------------------

def num_visible_patches(num_patches: int, mask_ratio: float) -> int:
    """Patches the encoder sees: ``round(num_patches * (1 - mask_ratio))`` (Python's round)."""
    return round(num_patches * (1.0 - mask_ratio))


def check_mask_ratio(mask_ratio: float, num_patches: int) -> float:
    """Return ``mask_ratio`` if it lies in (0, 1) and leaves at least one patch visible and one masked.

    Raises:
        ConfigError: otherwise, saying which ratios work.
    """
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be a number strictly between 0 and 1 (MAE uses 0.75), got {mask_ratio!r}.")
    visible = num_visible_patches(num_patches, mask_ratio)
    if not 0 < visible < num_patches:
        raise ConfigError(
            f"mask_ratio={mask_ratio} keeps round({num_patches} * {1 - mask_ratio:.4g}) = {visible} of "
            f"{num_patches} patches visible; at least one patch must be visible and one masked. Choose a "
            f"ratio between {0.5 / num_patches:.3f} and {1 - 0.5 / num_patches:.3f}.")
    return float(mask_ratio)


def random_masking(tokens: torch.Tensor, mask_ratio: float, generator: "torch.Generator | None" = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of the tokens of each sample (a different subset per sample).

    Draw one uniform number per token, sort: the tokens with the smallest numbers are kept.
    ``ids_shuffle`` is that sorting permutation and ``ids_restore = argsort(ids_shuffle)`` its inverse.

    Args:
        tokens: (B, N, D) patch tokens.
        mask_ratio: share of tokens to hide, in (0, 1).
        generator: for repeatable masks.
    Returns:
        visible: (B, n_visible, D) kept tokens, in shuffled order; n_visible = round(N * (1 - mask_ratio)).
        mask: (B, N) float, 1 where a token was hidden, in the original order.
        ids_restore: (B, N) long; ``gather(shuffled, 1, ids_restore)`` puts tokens back in order.
        ids_keep: (B, n_visible) long, the original positions of the kept tokens.
    """
    if tokens.ndim != 3:
        raise InputShapeError(f"random_masking expects tokens (B, N, D), got shape {tuple(tokens.shape)}.")
    B, N, D = tokens.shape
    check_mask_ratio(mask_ratio, N)
    n_visible = num_visible_patches(N, mask_ratio)
    noise = torch.rand(B, N, generator=generator, device=tokens.device if generator is None else "cpu")
    ids_shuffle = noise.to(tokens.device).argsort(dim=1)  # (B, N): smallest noise first = kept
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N): inverse permutation
    ids_keep = ids_shuffle[:, :n_visible]  # (B, n_visible)
    visible = torch.gather(tokens, 1, ids_keep[:, :, None].expand(-1, -1, D))  # (B, n_visible, D)
    mask = torch.ones(B, N, device=tokens.device)
    mask[:, :n_visible] = 0  # in shuffled order: first n_visible kept
    mask = torch.gather(mask, 1, ids_restore)  # (B, N) in the original order
    return visible, mask, ids_restore, ids_keep


def restore_order(shuffled: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Undo :func:`random_masking`'s shuffle: (B, N, D) in shuffled order -> (B, N, D) in patch order."""
    if shuffled.shape[:2] != ids_restore.shape:
        raise InputShapeError(f"restore_order: tokens {tuple(shuffled.shape)} and ids_restore "
                              f"{tuple(ids_restore.shape)} disagree on (B, N).")
    return torch.gather(shuffled, 1, ids_restore[:, :, None].expand(-1, -1, shuffled.shape[2]))


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch to mean 0, variance 1 over its own pixels: MAE's normalised-pixel target.

    Args:
        patches: (B, N, L) flattened patches.
    Returns:
        (B, N, L) ``(x - mean) / sqrt(var + eps)``, mean and (population) variance per patch.
    """
    mean = patches.mean(dim=-1, keepdim=True)  # (B, N, 1)
    var = patches.var(dim=-1, unbiased=False, keepdim=True)  # (B, N, 1)
    return (patches - mean) / (var + eps).sqrt()


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error averaged over the pixels of the masked patches only.

    Args:
        pred: (B, N, L) predicted patches.
        target: (B, N, L) true patches.
        mask: (B, N), 1 for masked patches (they count), 0 for visible ones (ignored).
    Returns:
        () the loss: sum over masked patches of the per-patch MSE, divided by their number.
    """
    if pred.shape != target.shape or pred.shape[:2] != mask.shape:
        raise InputShapeError(f"masked_patch_loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} "
                              f"and mask {tuple(mask.shape)} must be (B, N, L), (B, N, L), (B, N).")
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    masked = mask.sum()
    if masked == 0:
        raise InputShapeError("masked_patch_loss: the mask hides no patch, so there is nothing to score.")
    return (per_patch * mask).sum() / masked


# ---- the model ------------------------------------------------------------------------------------

class MAE(nn.Module):
    """Masked autoencoder with a ViT encoder (``self.encoder``) and a small transformer decoder.

    Args:
        cfg: the configuration (``vitlab.build_model('fmnist-mae')`` gives the preset).
    """

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        if not isinstance(cfg, MAEConfig):
            raise ConfigError(f"MAE needs an MAEConfig, got {type(cfg).__name__}.")
        self.cfg = cfg
        self.encoder = ViT(cfg.encoder_config())  # patch_embed, cls_token, pos_embed, blocks, norm
        Dd = cfg.decoder_dim
        self.decoder_embed = nn.Linear(cfg.dim, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        table = torch.zeros(1, 1 + cfg.num_patches, Dd)  # slot 0: CLS (no position)
        table[0, 1:] = sincos_2d_pos_embed(Dd, cfg.grid_size)
        self.register_buffer("decoder_pos_embed", table)
        self.decoder_blocks = nn.Sequential(*[
            Block(dim=Dd, heads=cfg.decoder_heads, mlp_ratio=cfg.mlp_ratio, norm_eps=cfg.norm_eps)
            for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(Dd, eps=cfg.norm_eps)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_pixels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.apply(init_vit_weights)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward_encoder(self, images: torch.Tensor, mask_ratio: float,
                        generator: "torch.Generator | None" = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches only.

        Args:
            images: (B, C, H, W).
            mask_ratio: share of patches to hide, in (0, 1).
            generator: for a repeatable mask.
        Returns:
            latent: (B, 1 + n_visible, D) the CLS token and the visible patches, after the final norm.
            mask: (B, N), 1 = masked.
            ids_restore: (B, N).
        """
        enc = self.encoder
        enc.check_input(images)
        x = enc.patch_embed(images)  # (B, N, D)
        x = x + enc.pos_embed[:, 1:]  # positions first, so each kept token knows where it was
        x, mask, ids_restore, _ = random_masking(x, mask_ratio, generator)  # (B, n_visible, D)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + n_visible, D)
        x = enc.blocks(x)
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch's pixels from the encoded visible patches.

        Args:
            latent: (B, 1 + n_visible, D) from :meth:`forward_encoder`.
            ids_restore: (B, N).
        Returns:
            (B, N, C*P*P) predicted patches (CLS dropped).
        """
        x = self.decoder_embed(latent)  # (B, 1 + n_visible, Dd)
        B, N = ids_restore.shape
        masks = self.mask_token.expand(B, N + 1 - x.shape[1], -1)  # (B, N - n_visible, Dd)
        patches = torch.cat([x[:, 1:], masks], dim=1)  # (B, N, Dd) in shuffled order
        patches = restore_order(patches, ids_restore)  # (B, N, Dd) in patch order
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed  # (B, 1 + N, Dd)
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, 1:])  # (B, N, C*P*P)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """The patches the decoder should output: (B, N, C*P*P), normalised per patch if norm_pix_loss."""
        patches = patchify(images, self.cfg.patch_size)  # (B, N, C*P*P)
        return normalize_patches(patches) if self.cfg.norm_pix_loss else patches

    def forward(self, images: torch.Tensor, mask_ratio: "float | None" = None,
                generator: "torch.Generator | None" = None) -> MAEOutput:
        """Mask, encode, decode, score.

        Args:
            images: (B, C, H, W), preprocessed (``vitlab.data.preprocess``).
            mask_ratio: default ``cfg.mask_ratio``.
            generator: for a repeatable mask.
        Returns:
            MAEOutput(loss, pred (B, N, C*P*P), mask (B, N), ids_restore (B, N)).
        """
        mask_ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)  # (B, N, C*P*P)
        return MAEOutput(masked_patch_loss(pred, self.target(images), mask), pred, mask, ids_restore)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: "float | None" = None,
                    generator: "torch.Generator | None" = None) -> dict[str, torch.Tensor]:
        """Images for display: what the encoder saw, what the decoder made, and the two pasted together.

        With ``norm_pix_loss`` the prediction is un-normalised with each true patch's mean and
        variance (as in the MAE paper's figures; those statistics are not known to the model).

        Args:
            images: (B, C, H, W) preprocessed.
        Returns:
            dict of (B, C, H, W) tensors: ``masked`` (hidden patches set to NaN), ``prediction``
            (every patch as predicted), ``pasted`` (visible patches true, masked ones predicted),
            and ``mask`` (B, N).
        """
        P, C = self.cfg.patch_size, self.cfg.in_chans
        out = self(images, mask_ratio, generator)
        true_patches = patchify(images, P)  # (B, N, L)
        pred = out.pred  # (B, N, L)
        if self.cfg.norm_pix_loss:  # back to pixels with each true patch's statistics
            std = (true_patches.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()  # (B, N, 1)
            pred = pred * std + true_patches.mean(-1, keepdim=True)
        hidden = out.mask[:, :, None].bool()  # (B, N, 1)
        masked = torch.where(hidden, torch.full_like(true_patches, float("nan")), true_patches)
        pasted = torch.where(hidden, pred, true_patches)
        grid = self.cfg.grid_size
        return {"masked": unpatchify(masked, P, C, grid), "prediction": unpatchify(pred, P, C, grid),
                "pasted": unpatchify(pasted, P, C, grid), "mask": out.mask}


def vit_from_mae(mae: MAE, num_classes: int, pool: str = "gap") -> ViT:
    """A ViT classifier whose every weight but the (new) head comes from an MAE's encoder.

    Args:
        mae: a (pre-trained) MAE.
        num_classes: outputs of the new linear head (initialised small, as in MAE's fine-tuning);
            0 for features only.
        pool: 'gap' (MAE's choice for fine-tuning: the mean of the patch tokens, then the encoder's final
            norm; the CLS token is dropped) or 'cls' (the encoder exactly, reading its CLS token).
    Returns:
        a ViT with ``cfg = mae.cfg.encoder_config(num_classes, pool)``.
    """
    vit = ViT(mae.cfg.encoder_config(num_classes, pool))
    state = dict(mae.encoder.state_dict())
    if pool == "gap":  # no CLS token: drop it and its (empty) slot in the position table
        del state["cls_token"]
        state["pos_embed"] = state["pos_embed"][:, 1:]
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"head.weight", "head.bias"}:
        raise ConfigError(f"vit_from_mae: encoder weights do not fit (missing {missing}, unexpected {unexpected}).")
    if num_classes:
        nn.init.trunc_normal_(vit.head.weight, std=2e-5)
    return vit


register_config("mae", MAEConfig)
register_preset("fmnist-mae", MAEConfig())  # encoder = fmnist-vit's shape (6 blocks, D 64, 4 heads)
register_preset("fmnist-mae-tiny", MAEConfig(depth=4, decoder_dim=32, decoder_depth=1))  # for lessons and tests

from . import register_model  # noqa: E402  (vitlab.models defines it before importing this module)

register_model(MAEConfig, MAE)
