"""CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021) at toy scale: the ViT of lessons 01-03 as the image encoder, a small Transformer over word
tokens as the text encoder, and the symmetric contrastive loss that pulls matching pairs together.

image (B, C, H, W) -> ViT (no head) -> (B, D_img) -> image_projection -> (B, E) -> L2-normalise
ids   (B, L)       -> token + position embedding -> blocks (padding masked) -> norm
                   -> output at [EOS] -> (B, D_txt) -> text_projection -> (B, E) -> L2-normalise
logits = exp(t) * image_emb @ text_emb.T   (B, B): pair i is the right answer for row i and column i
loss = (cross_entropy(logits, arange(B)) + cross_entropy(logits.T, arange(B))) / 2

Shapes: B batch, L context length, E shared embedding width, K classes, T templates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ViTConfig, check_fields, check_positive_ints, register_config, register_preset, replace_config
from ..errors import ConfigError, InputShapeError
from ..layers import Block, init_vit_weights
from ..text import BOS, EOS, PAD, default_tokenizer, fill_template, WordTokenizer
from .vit import ViT

__all__ = ["CLIPConfig", "CLIP", "CLIPOutput", "TextEncoder", "clip_loss", "clip_logits",
           "class_text_embeddings", "zero_shot_logits", "retrieve"]

_DEFAULT_VOCAB = default_tokenizer().vocab_size  # the vocabulary of vitlab.text's training captions


@dataclass(frozen=True)
class CLIPConfig:
    """An image encoder (a ViT), a text encoder (a Transformer over words) and a shared embedding."""

    img_size: int = 28  # side of the square input image, in pixels
    patch_size: int = 4  # image patch side (28 / 4 -> 49 patches)
    in_chans: int = 1  # image channels
    image_dim: int = 64  # image encoder width
    image_depth: int = 4  # image encoder blocks
    image_heads: int = 4  # image encoder heads
    image_pool: str = "gap"  # how the ViT summarises the image: 'gap' (mean of patch tokens) or 'cls'
    vocab_size: int = _DEFAULT_VOCAB  # token ids, special tokens included (vitlab.text.default_tokenizer)
    context_length: int = 16  # token ids per caption ([BOS] words [EOS] [PAD] ...)
    text_dim: int = 64  # text encoder width
    text_depth: int = 2  # text encoder blocks
    text_heads: int = 4  # text encoder heads
    mlp_ratio: float = 2.0  # MLP hidden width = mlp_ratio * width, both encoders
    embed_dim: int = 32  # E: width of the shared image-text embedding space
    init_temperature: float = 0.07  # softmax temperature at the start (CLIP: 0.07); learned as log(1/t)
    max_logit_scale: float = 100.0  # exp(learned scale) is clipped to this (CLIP: 100)

    def __post_init__(self) -> None:
        check_fields(self)
        self.image_config()  # validates the image fields
        check_positive_ints(self, ("vocab_size", "context_length", "text_dim", "text_depth", "text_heads", "embed_dim"))
        if self.vocab_size <= 4:
            raise ConfigError(f"vocab_size={self.vocab_size} leaves no room for words after the 4 special tokens.")
        if self.context_length < 3:
            raise ConfigError(f"context_length must be >= 3 ([BOS], a word, [EOS]), got {self.context_length}.")
        if self.text_dim % self.text_heads:
            raise ConfigError(f"text_dim={self.text_dim} is not divisible by text_heads={self.text_heads}.")
        if not 0 < self.init_temperature < 1 or not self.max_logit_scale > 1:
            raise ConfigError("init_temperature must be in (0, 1) and max_logit_scale > 1.")

    def image_config(self) -> ViTConfig:
        """The image encoder: a ViT without a head."""
        return ViTConfig(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                         num_classes=0, dim=self.image_dim, depth=self.image_depth, heads=self.image_heads,
                         mlp_ratio=self.mlp_ratio, pool=self.image_pool)

    def replace(self, **changes: Any) -> "CLIPConfig":
        return replace_config(self, **changes)


class CLIPOutput(NamedTuple):
    image_embeddings: torch.Tensor  # (B, E), unit length
    text_embeddings: torch.Tensor  # (B, E), unit length
    logit_scale: torch.Tensor  # () exp(learned log-scale), clipped; 1 / temperature


# ---- the loss and zero-shot maths, tensor in / tensor out --------------------------------------------

def clip_logits(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
                logit_scale: "torch.Tensor | float") -> torch.Tensor:
    """Scaled cosine similarities: ``logit_scale * normalise(image) @ normalise(text).T``.

    Args:
        image_embeddings: (B, E).
        text_embeddings: (M, E) (M = B during training).
        logit_scale: () or float, 1 / temperature.
    Returns:
        (B, M) logits; row i scores image i against every text.
    """
    if image_embeddings.ndim != 2 or text_embeddings.ndim != 2 or image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise InputShapeError(f"clip_logits expects (B, E) and (M, E) embeddings, got "
                              f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}.")
    return logit_scale * F.normalize(image_embeddings, dim=-1) @ F.normalize(text_embeddings, dim=-1).T


def clip_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
              logit_scale: "torch.Tensor | float") -> torch.Tensor:
    """CLIP's symmetric contrastive (InfoNCE) loss over a batch of matching pairs.

    Image i and text i belong together. Each image picks its text among the B texts (cross-entropy
    over a row of the logits) and each text picks its image (over a column); the loss is the mean of
    the two. Random embeddings give about log(B); perfectly aligned, mutually orthogonal ones give
    log(1 + (B - 1) * exp(-logit_scale)), which goes to 0 as the scale grows.

    Args:
        image_embeddings: (B, E).
        text_embeddings: (B, E), row i describing image i.
        logit_scale: () or float, 1 / temperature.
    Returns:
        () the loss.
    """
    if image_embeddings.shape != text_embeddings.shape:
        raise InputShapeError(f"clip_loss needs as many texts as images (pairs), got {tuple(image_embeddings.shape)} "
                              f"and {tuple(text_embeddings.shape)}.")
    if image_embeddings.shape[0] < 2:
        raise InputShapeError("clip_loss needs a batch of at least 2 pairs: the other pairs are the negatives.")
    logits = clip_logits(image_embeddings, text_embeddings, logit_scale)  # (B, B)
    targets = torch.arange(logits.shape[0], device=logits.device)  # (B,): the diagonal
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def zero_shot_logits(image_embeddings: torch.Tensor, class_embeddings: torch.Tensor,
                     logit_scale: "torch.Tensor | float" = 1.0) -> torch.Tensor:
    """Class scores for images by their similarity to one text embedding per class.

    Args:
        image_embeddings: (N, E).
        class_embeddings: (K, E), e.g. from :func:`class_text_embeddings`.
    Returns:
        (N, K) logits; ``argmax(1)`` is the zero-shot prediction.
    """
    return clip_logits(image_embeddings, class_embeddings, logit_scale)


def retrieve(queries: torch.Tensor, gallery: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The k gallery items most similar (cosine) to each query: text -> images or image -> texts.

    Args:
        queries: (Q, E).
        gallery: (G, E).
        k: items per query, 1 <= k <= G.
    Returns:
        scores (Q, k) cosine similarities, best first, and indices (Q, k) into the gallery.
    """
    if not 1 <= k <= gallery.shape[0]:
        raise InputShapeError(f"retrieve: k={k} must be between 1 and the gallery size {gallery.shape[0]}.")
    similarity = clip_logits(queries, gallery, 1.0)  # (Q, G)
    scores, indices = similarity.topk(k, dim=1)
    return scores, indices


# ---- the text encoder -------------------------------------------------------------------------------

class TextEncoder(nn.Module):
    """A small Transformer over word ids; a caption's embedding is its output at ``[EOS]``.

    Args:
        vocab_size: number of token ids.
        context_length: L, ids per caption.
        dim: width.
        depth: blocks (vitlab's :class:`~vitlab.layers.Block`, run with a padding mask).
        heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        pad_id, eos_id: the ids of ``[PAD]`` and ``[EOS]`` (0 and 3 in a :class:`vitlab.text.WordTokenizer`).
    """

    def __init__(self, *, vocab_size: int, context_length: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 2.0, pad_id: int = 0, eos_id: int = 3) -> None:
        super().__init__()
        self.context_length = context_length
        self.pad_id, self.eos_id = pad_id, eos_id
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, context_length, dim))
        self.blocks = nn.ModuleList([Block(dim=dim, heads=heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise InputShapeError unless ids is (B, L) integer ids with one [EOS] per row."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32):
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise InputShapeError(f"The text encoder expects integer token ids (B, L), got {got}; "
                                  "make them with WordTokenizer.encode(texts).")
        if ids.shape[1] != self.context_length:
            raise InputShapeError(f"Token ids have length {ids.shape[1]}, but the text encoder was built for "
                                  f"context_length={self.context_length}; encode with the same tokenizer.")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.token_embed.num_embeddings):
            raise InputShapeError(f"Token ids must lie in 0 .. {self.token_embed.num_embeddings - 1} (the vocabulary).")
        if not torch.equal((ids == self.eos_id).sum(1), torch.ones(ids.shape[0], dtype=torch.long, device=ids.device)):
            raise InputShapeError("Each row of token ids needs exactly one [EOS]; make them with WordTokenizer.encode.")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> caption features (B, dim), read at each row's [EOS]."""
        self.check_ids(ids)
        padding = ids == self.pad_id  # (B, L)
        x = self.token_embed(ids) + self.pos_embed  # (B, L, D)
        for block in self.blocks:
            x = block(x, key_padding=padding)  # (B, L, D); no token attends to [PAD]
        x = self.norm(x)
        eos = (ids == self.eos_id).long().argmax(dim=1)  # (B,) position of [EOS]
        return x[torch.arange(x.shape[0], device=x.device), eos]  # (B, D)


# ---- the model ------------------------------------------------------------------------------------

class CLIP(nn.Module):
    """Image encoder + text encoder + projections into one space + a learned temperature.

    Args:
        cfg: the configuration (``vitlab.build_model('fmnist-clip')`` gives the preset).
    """

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        if not isinstance(cfg, CLIPConfig):
            raise ConfigError(f"CLIP needs a CLIPConfig, got {type(cfg).__name__}.")
        self.cfg = cfg
        self.image_encoder = ViT(cfg.image_config())
        self.text_encoder = TextEncoder(vocab_size=cfg.vocab_size, context_length=cfg.context_length,
                                        dim=cfg.text_dim, depth=cfg.text_depth, heads=cfg.text_heads,
                                        mlp_ratio=cfg.mlp_ratio)
        self.image_projection = nn.Linear(cfg.image_dim, cfg.embed_dim, bias=False)
        self.text_projection = nn.Linear(cfg.text_dim, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))  # () log(1/t)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.image_encoder.reset_parameters()
        self.text_encoder.apply(init_vit_weights)
        nn.init.normal_(self.text_encoder.token_embed.weight, std=0.02)
        nn.init.normal_(self.text_encoder.pos_embed, std=0.01)
        nn.init.normal_(self.image_projection.weight, std=self.cfg.image_dim**-0.5)
        nn.init.normal_(self.text_projection.weight, std=self.cfg.text_dim**-0.5)

    def tokenizer(self) -> WordTokenizer:
        """The tokenizer that fits this model's vocabulary (vitlab.text's default)."""
        tok = default_tokenizer(self.cfg.context_length)
        if tok.vocab_size != self.cfg.vocab_size:
            raise ConfigError(f"This model has vocab_size={self.cfg.vocab_size} but vitlab.text's tokenizer "
                              f"has {tok.vocab_size} ids; build the tokenizer the model was trained with.")
        return tok

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W), preprocessed -> (B, E) (not normalised)."""
        features = self.image_encoder.forward_head(self.image_encoder.forward_features(images), pre_logits=True)
        return self.image_projection(features)  # (B, E)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> (B, E) (not normalised)."""
        return self.text_projection(self.text_encoder(ids))  # (B, E)

    def scale(self) -> torch.Tensor:
        """exp(learned log-scale), clipped at max_logit_scale: 1 / temperature."""
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> CLIPOutput:
        """Both encoders; unit-length embeddings and the scale. ``clip_loss(*model(images, ids))`` trains."""
        return CLIPOutput(F.normalize(self.encode_image(images), dim=-1),
                          F.normalize(self.encode_text(ids), dim=-1), self.scale())


@torch.no_grad()
def class_text_embeddings(model: CLIP, tokenizer: WordTokenizer, class_names: Sequence[str],
                          templates: Sequence[str]) -> torch.Tensor:
    """One text embedding per class: the mean of its prompts' unit embeddings, re-normalised.

    With one template this is plain prompting; with several it is CLIP's prompt ensembling.

    Args:
        model: a CLIP model.
        tokenizer: its tokenizer.
        class_names: K names, e.g. ``vitlab.text.FASHION_MNIST_CAPTION_NAMES``.
        templates: T templates with one ``{}`` each, e.g. ``["a photo of a {}."]``.
    Returns:
        (K, E) unit-length class embeddings.
    Raises:
        InputShapeError: an empty list of class names or of templates.
    """
    if len(class_names) == 0:
        raise InputShapeError("class_text_embeddings got no class names; pass at least one.")
    if len(templates) == 0:
        raise InputShapeError("class_text_embeddings got an empty list of prompt templates; pass at least one, "
                              "e.g. ['a photo of a {}.'].")
    prompts = [fill_template(t, name) for name in class_names for t in templates]  # K * T, class-major
    device = next(model.parameters()).device
    emb = F.normalize(model.encode_text(tokenizer.encode(prompts).to(device)), dim=-1)  # (K*T, E)
    emb = emb.reshape(len(class_names), len(templates), -1).mean(dim=1)  # (K, E)
    return F.normalize(emb, dim=-1)


def _check_special_ids() -> None:
    tok = default_tokenizer()
    if (tok.ids[PAD], tok.ids[EOS]) != (0, 3) or BOS not in tok.ids:
        raise ConfigError("vitlab.text's special token ids changed; update TextEncoder's defaults.")


_check_special_ids()

register_config("clip", CLIPConfig)
register_preset("fmnist-clip", CLIPConfig())  # image: fmnist-vit-tiny's shape with average pooling

from . import register_model  # noqa: E402  (vitlab.models defines it before importing this module)

register_model(CLIPConfig, CLIP)
