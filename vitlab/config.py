"""Model configurations: frozen dataclasses with one commented field per choice, and named presets.

A config is saved inside every checkpoint (as JSON), so a checkpoint rebuilds its own model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Union

from .errors import ConfigError, UnknownPresetError

POS_EMBEDS = ("learned", "learned2d", "sincos2d", "none")
POOLS = ("cls", "gap")
DROP_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")


SEED_LIMIT = 2**32  # seeds are ints in [0, 2**32): every generator vitlab seeds accepts them


def is_whole_number(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# One rule per field name, for every config that has the field (model configs, TrainConfig,
# PretrainConfig): (what the field must be, as the message says it, test). Checked by check_fields.
FIELD_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {}
for _names, _rule in [
    (("mlp_ratio", "token_mlp_ratio", "norm_eps", "init_temperature", "max_logit_scale"),
     _POSITIVE := ("positive (a finite number > 0)", lambda v: is_finite_number(v) and v > 0)),
    (("drop_rate", "attn_drop_rate", "drop_path_rate", "label_smoothing"),
     _RATE := ("in [0, 1) (a finite number)", lambda v: is_finite_number(v) and 0 <= v < 1)),
    (("lr",), ("a finite number in (0, 1]", lambda v: is_finite_number(v) and 0 < v <= 1)),
    (("min_lr",), ("a finite number in [0, 1]", lambda v: is_finite_number(v) and 0 <= v <= 1)),
    (("warmup_epochs", "weight_decay", "grad_clip"), ("a finite number >= 0", lambda v: is_finite_number(v) and v >= 0)),
    (("qkv_bias", "small_stem", "norm_pix_loss", "augment"), ("True or False", lambda v: isinstance(v, bool))),
    (("num_classes",), ("an int >= 0 (0 = no head)", lambda v: is_whole_number(v) and v >= 0)),
    (("seed",), (f"an int in [0, {SEED_LIMIT})", lambda v: is_whole_number(v) and 0 <= v < SEED_LIMIT)),
]:
    for _name in _names:
        FIELD_RULES[_name] = _rule


def check_fields(config: Any) -> None:
    """Raise ConfigError, naming the class and the field, unless every field of the dataclass ``config``
    that :data:`FIELD_RULES` knows is what its rule says (type, finiteness and range)."""
    for field in dataclasses.fields(config):
        if field.name in FIELD_RULES:
            _check(config, field.name, FIELD_RULES[field.name])


def _check(config: Any, name: str, rule: "tuple[str, Callable[[Any], bool]]") -> None:
    what, ok = rule
    value = getattr(config, name)
    if not ok(value):
        raise ConfigError(f"{type(config).__name__}.{name} must be {what}, got {value!r}.")


def check_positive_ints(config: Any, names: "tuple[str, ...]") -> None:
    """Raise ConfigError unless every field ``names`` of ``config`` is an int >= 1 (a bool is not)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}.")


def check_rates(config: Any, ratios: "tuple[str, ...]" = ("mlp_ratio",), rates: "tuple[str, ...]" = DROP_RATES) -> None:
    """Raise ConfigError unless the fields ``ratios`` are finite and > 0 and the fields ``rates`` lie in [0, 1)
    (the rules of :data:`FIELD_RULES`, for fields of other names)."""
    for name in ratios:
        _check(config, name, _POSITIVE)
    for name in rates:
        _check(config, name, _RATE)


@dataclass(frozen=True)
class ViTConfig:
    """Everything that defines a Vision Transformer's shape (Dosovitskiy et al., 2021)."""

    img_size: int = 224  # side of the square input image, in pixels
    patch_size: int = 16  # side of a square patch; img_size must be a multiple of it
    in_chans: int = 3  # input channels (1 for Fashion-MNIST, 3 for photos)
    num_classes: int = 1000  # classifier outputs; 0 = no head (features only)
    dim: int = 768  # token width D, kept through the whole encoder
    depth: int = 12  # number of transformer blocks
    heads: int = 12  # attention heads per block; dim must be a multiple of it
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * dim
    pos_embed: str = "learned"  # 'learned' (1-D, the paper's), 'learned2d' (rows + columns), 'sincos2d', 'none'
    pool: str = "cls"  # 'cls': classify the CLS token; 'gap': global average of the patch tokens
    qkv_bias: bool = True  # bias in the query/key/value projection (the paper and timm: yes)
    norm_eps: float = 1e-6  # LayerNorm epsilon (timm's ViT uses 1e-6)
    drop_rate: float = 0.0  # dropout after the position embedding, in MLP/projection outputs
    attn_drop_rate: float = 0.0  # dropout on the attention weights
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this value in the last block

    def __post_init__(self) -> None:
        check_positive_ints(self, ("img_size", "patch_size", "in_chans", "dim", "depth", "heads"))
        check_fields(self)
        if self.patch_size > self.img_size:
            raise ConfigError(
                f"patch_size={self.patch_size} is larger than img_size={self.img_size}: "
                "choose a patch no larger than the image."
            )
        if self.img_size % self.patch_size:
            divisors = [p for p in range(1, self.img_size + 1) if self.img_size % p == 0]
            raise ConfigError(
                f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}; "
                f"patch sizes that tile a {self.img_size}x{self.img_size} image: {divisors}."
            )
        if self.dim % self.heads:
            raise ConfigError(
                f"dim={self.dim} is not divisible by heads={self.heads}: each head gets dim/heads "
                "channels, so choose heads among the divisors of dim."
            )
        if self.pos_embed not in POS_EMBEDS:
            raise ConfigError(f"pos_embed={self.pos_embed!r} is unknown; use one of {POS_EMBEDS}.")
        if self.pool not in POOLS:
            raise ConfigError(f"pool={self.pool!r} is unknown; use one of {POOLS}.")
        if self.pos_embed == "sincos2d" and self.dim % 4:
            raise ConfigError(f"pos_embed='sincos2d' needs dim divisible by 4, got dim={self.dim}.")
        check_rates(self)

    @property
    def grid_size(self) -> int:
        """Patches per side: img_size // patch_size."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens: 1 (CLS) with pool='cls', else 0."""
        return 1 if self.pool == "cls" else 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def replace(self, **changes: Any) -> "ViTConfig":
        """A copy with some fields changed (validated again)."""
        return replace_config(self, **changes)


@dataclass(frozen=True)
class ResNetConfig:
    """A ResNet-18-style CNN (He et al., 2016) with its stem adapted to small images."""

    img_size: int = 28  # input side in pixels (used for FLOP counts and checks)
    in_chans: int = 1  # input channels
    num_classes: int = 10  # classifier outputs
    width: int = 64  # channels of the first stage; stages use width, 2w, 4w, 8w (ResNet-18: 64)
    blocks: tuple = (2, 2, 2, 2)  # basic blocks per stage (ResNet-18: 2, 2, 2, 2)
    small_stem: bool = True  # True: one 3x3 stride-1 conv, no max-pool (for 28x28); False: ImageNet 7x7/2 + pool

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        check_positive_ints(self, ("img_size", "in_chans", "width"))
        check_fields(self)
        if not self.blocks or any((not isinstance(b, int)) or b < 1 for b in self.blocks):
            raise ConfigError(f"ResNetConfig.blocks must be positive ints, got {self.blocks!r}.")

    def replace(self, **changes: Any) -> "ResNetConfig":
        return replace_config(self, **changes)


ModelConfig = Union[ViTConfig, ResNetConfig]  # plus any config class added with register_config

# kind name <-> config class; the kind is what a checkpoint stores beside the config's fields.
CONFIG_KINDS: dict[str, type] = {"vit": ViTConfig, "resnet": ResNetConfig}


def register_config(kind: str, cls: type) -> None:
    """Make a new (frozen dataclass) model config storable in checkpoints under ``kind``.

    Model families outside this file (hybrid, Swin, T2T-ViT, MAE, CLIP ...) call this once at import,
    together with :func:`vitlab.models.register_model`.
    """
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"register_config needs a dataclass, got {cls!r}.")
    known = CONFIG_KINDS.get(kind)
    if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
        raise ConfigError(f"Config kind {kind!r} is already registered for {known.__name__}.")
    CONFIG_KINDS[kind] = cls


def register_preset(name: str, cfg: Any) -> None:
    """Add a named preset (usable with ``vitlab train --preset NAME`` and ``build_model(NAME)``)."""
    if not any(isinstance(cfg, cls) for cls in CONFIG_KINDS.values()):
        raise ConfigError(f"Preset {name!r}: register the config class {type(cfg).__name__} first.")
    PRESETS[name] = cfg

_FMNIST = dict(img_size=28, in_chans=1, num_classes=10)

PRESETS: dict[str, ModelConfig] = {
    # The paper's Table 1 variants (and DeiT's Ti/S), at 224x224 with 1000 classes.
    "vit-ti16": ViTConfig(dim=192, depth=12, heads=3),
    "vit-s16": ViTConfig(dim=384, depth=12, heads=6),
    "vit-b16": ViTConfig(dim=768, depth=12, heads=12),
    "vit-b32": ViTConfig(patch_size=32, dim=768, depth=12, heads=12),
    "vit-l16": ViTConfig(dim=1024, depth=24, heads=16),
    "vit-h14": ViTConfig(patch_size=14, dim=1280, depth=32, heads=16),
    # Small models for 28x28 Fashion-MNIST (patch 4 -> 7x7 = 49 patch tokens).
    "fmnist-vit-tiny": ViTConfig(**_FMNIST, patch_size=4, dim=64, depth=4, heads=4, mlp_ratio=2.0),
    # The shipped model: the size of the best small published from-scratch Fashion-MNIST ViT (210k).
    "fmnist-vit": ViTConfig(**_FMNIST, patch_size=4, dim=64, depth=6, heads=4, mlp_ratio=2.0),
    # The classroom ViT (lesson 03): patch 7 -> a 4x4 grid of 16 tokens, 3x the images/s of patch 4 on a
    # CPU; all 60,000 images for 2 epochs reach about 86% in half a minute on 2 cores.
    "fmnist-vit-p7": ViTConfig(**_FMNIST, patch_size=7, dim=64, depth=4, heads=4, mlp_ratio=2.0),
    # the finer grid of lesson 04/06: patch 2, a 14x14 grid of 196 tokens, same width and depth as fmnist-vit-tiny
    "fmnist-vit-p2": ViTConfig(**_FMNIST, patch_size=2, dim=64, depth=4, heads=4, mlp_ratio=2.0),
    # CNN baselines for the same images.
    "fmnist-resnet18": ResNetConfig(**_FMNIST, width=64),
    "fmnist-resnet": ResNetConfig(**_FMNIST, width=16),
    "fmnist-resnet-tiny": ResNetConfig(**_FMNIST, width=8),  # lesson 03's CNN; data-scale's ResNet arm
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The config of a named preset, optionally with some fields changed.

    Args:
        name: one of ``vitlab.PRESETS``.
        **overrides: fields to change, e.g. ``num_classes=10``.
    """
    if name not in PRESETS:
        raise UnknownPresetError(
            f"Unknown preset {name!r}. Available presets: {', '.join(sorted(PRESETS))}."
        )
    cfg = PRESETS[name]
    return replace_config(cfg, **overrides) if overrides else cfg


def replace_config(cfg: Any, **changes: Any) -> Any:
    """A copy of a config with some fields changed (validated again); an unknown field is a ConfigError
    that lists the fields there are."""
    fields = [f.name for f in dataclasses.fields(cfg)]
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ConfigError(f"{type(cfg).__name__} has no field(s) {unknown}; its fields are: {', '.join(fields)}.")
    return dataclasses.replace(cfg, **changes)


def config_to_dict(cfg: ModelConfig) -> dict:
    """A JSON-ready dict with the config's kind: ``{'kind': 'vit', 'config': {...}}``."""
    kind = next((k for k, cls in CONFIG_KINDS.items() if type(cfg) is cls), None)
    if kind is None:
        raise ConfigError(f"Not a vitlab model config: {type(cfg).__name__}.")
    data = dataclasses.asdict(cfg)
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}  # JSON has no tuples
    return {"kind": kind, "config": data}


def config_from_dict(data: dict) -> ModelConfig:
    """Inverse of :func:`config_to_dict`."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind is not None and kind not in CONFIG_KINDS:
        raise ConfigError(f"Unknown model kind {kind!r}; this vitlab knows {sorted(CONFIG_KINDS)}. "
                          "A newer vitlab (or an import of the module defining it) may be needed.")
    try:
        cls = CONFIG_KINDS[data["kind"]]
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data["config"]) - fields
        if unknown:
            raise ConfigError(f"Config has fields this vitlab does not know: {sorted(unknown)}.")
        return cls(**data["config"])
    except (KeyError, TypeError) as err:
        raise ConfigError(f"Not a vitlab config dict ({err!r}): expected {{'kind': ..., 'config': {{...}}}}.") from err
