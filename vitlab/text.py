"""Words for lesson 12 (CLIP): a word-level tokenizer, caption templates and Fashion-MNIST class names.

Real CLIP reads text with a byte-pair tokenizer of 49,152 sub-words trained on the internet. Ours
is the simplest thing that works for captions made from a few templates: split the text into words
and punctuation, and number the words seen in the training captions. Anything else is ``[UNK]``.

A caption becomes a fixed-length row of token ids::

    "a photo of a coat."  ->  [BOS] a photo of a coat . [EOS] [PAD] [PAD] ...   (context_length ids)

The text encoder reads the row and takes its output at the ``[EOS]`` position as the caption's
embedding (as CLIP does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from .errors import ConfigError, InputShapeError

__all__ = ["PAD", "UNK", "BOS", "EOS", "SPECIAL_TOKENS", "split_words", "WordTokenizer",
           "FASHION_MNIST_CAPTION_NAMES", "TRAIN_TEMPLATES", "HELD_OUT_TEMPLATES", "fill_template",
           "make_captions", "caption_vocabulary", "default_tokenizer"]

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every WordTokenizer

# A word: letters/digits, possibly joined by hyphens or apostrophes ("t-shirt", "don't"); or one
# punctuation mark. Whitespace separates and is dropped.
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")
_NO_SPACE_BEFORE = frozenset(".,;:!?)")


def split_words(text: str) -> list[str]:
    """Lower-case a text and split it into words and punctuation marks.

    Args:
        text: any string, e.g. ``"A photo of a T-shirt."``.
    Returns:
        the pieces in order, e.g. ``['a', 'photo', 'of', 'a', 't-shirt', '.']``.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_words expects a str, got {type(text).__name__}.")
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Words <-> integer ids, with padding to a fixed context length.

    Ids 0-3 are ``[PAD] [UNK] [BOS] [EOS]``; the vocabulary's words follow in the order given.

    Args:
        vocabulary: the known words (no duplicates, none of them a special token).
        context_length: ids per encoded caption, including ``[BOS]`` and ``[EOS]``.
    """

    def __init__(self, vocabulary: Sequence[str], context_length: int = 16) -> None:
        words = list(vocabulary)
        if len(set(words)) != len(words):
            raise ConfigError("WordTokenizer: the vocabulary has duplicate words.")
        if any(w in SPECIAL_TOKENS for w in words):
            raise ConfigError(f"WordTokenizer: the vocabulary must not contain the special tokens {SPECIAL_TOKENS}.")
        if not isinstance(context_length, int) or context_length < 3:
            raise ConfigError(f"context_length must be an int >= 3 ([BOS], a word, [EOS]), got {context_length!r}.")
        self.tokens = list(SPECIAL_TOKENS) + words  # id -> token
        self.ids = {token: i for i, token in enumerate(self.tokens)}  # token -> id
        self.context_length = context_length

    @property
    def vocab_size(self) -> int:
        """Number of ids, the four special tokens included."""
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self.ids[PAD]

    @property
    def eos_id(self) -> int:
        return self.ids[EOS]

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"

    def encode_words(self, text: str) -> list[int]:
        """The ids of a text's words, without ``[BOS]``, ``[EOS]`` or padding (unknown words -> ``[UNK]``)."""
        unk = self.ids[UNK]
        return [self.ids.get(word, unk) for word in split_words(text)]

    def encode(self, texts: "str | Sequence[str]") -> torch.Tensor:
        """Texts -> a padded batch of ids.

        Args:
            texts: one text, or a non-empty list of texts.
        Returns:
            int64 tensor (B, context_length): ``[BOS] words... [EOS] [PAD]...`` per row (B = 1 for one text).
        Raises:
            InputShapeError: an empty list, an empty text, or a text longer than the context allows.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise InputShapeError("WordTokenizer.encode got an empty list of texts; pass at least one.")
        rows = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)  # (B, L)
        for i, text in enumerate(texts):
            words = self.encode_words(text)
            if not words:
                raise InputShapeError(f"Text {i} ({text!r}) has no words to encode.")
            if len(words) + 2 > self.context_length:
                raise InputShapeError(
                    f"Text {i} ({text!r}) has {len(words)} words, but context_length={self.context_length} "
                    f"holds at most {self.context_length - 2} (plus [BOS] and [EOS]). Shorten it, or build "
                    "the tokenizer (and the text encoder) with a longer context.")
            rows[i, :len(words) + 2] = torch.tensor([self.ids[BOS]] + words + [self.eos_id])
        return rows

    def decode(self, ids: "torch.Tensor | Sequence[int]") -> str:
        """One row of ids -> text: special tokens dropped (``[UNK]`` kept), no space before punctuation.

        For a caption of known words written in the canonical form (lower case, one space between
        words, punctuation attached), ``decode(encode(caption)[0]) == caption``.
        """
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise InputShapeError(f"decode takes one row of ids (L,), got shape {tuple(ids.shape)}; "
                                      "use decode_batch for (B, L).")
            ids = ids.tolist()
        text = ""
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise InputShapeError(f"Token id {i} is outside this vocabulary (0 .. {self.vocab_size - 1}).")
            token = self.tokens[i]
            if token in (PAD, BOS, EOS):
                continue
            text += token if (token in _NO_SPACE_BEFORE or not text) else " " + token
        return text

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        """(B, L) ids -> B texts."""
        if ids.ndim != 2:
            raise InputShapeError(f"decode_batch takes (B, L) ids, got shape {tuple(ids.shape)}.")
        return [self.decode(row) for row in ids]


# Caption names for the ten Fashion-MNIST classes, in label order (vitlab.data.FASHION_MNIST_CLASSES
# has "T-shirt/top", "Trouser", ...; a caption reads better with these).
FASHION_MNIST_CAPTION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                               "sneaker", "bag", "ankle boot")

# Templates the CLIP model is trained on ("{}" is the class name).
TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a small picture of the {}.",
    "this is a {}.",
    "a {} on a dark background.",
)

# Templates never seen in training: some reuse known words in a new order, some bring words the
# tokenizer has never seen (they become [UNK]).
HELD_OUT_TEMPLATES = (
    "a photo of the {}.",
    "the {} in a small image.",
    "a blurry photo of a {}.",
    "a close-up picture of my {}.",
)


def fill_template(template: str, name: str) -> str:
    """Put a class name into a template; an "a" before a vowel sound becomes "an" ("an ankle boot")."""
    if template.count("{}") != 1:
        raise ConfigError(f"A template needs exactly one '{{}}' for the class name, got {template!r}.")
    text = template.format(name)
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


def make_captions(labels: "torch.Tensor | Sequence[int]", class_names: Sequence[str],
                  templates: Sequence[str], generator: "torch.Generator | None" = None) -> list[str]:
    """One caption per label: a template drawn at random, filled with the label's class name.

    Args:
        labels: (N,) class indices.
        class_names: name of each class, indexed by label.
        templates: the templates to draw from (uniformly, independently per caption).
        generator: for repeatable draws.
    Returns:
        N captions, e.g. ``['a photo of a coat.', 'this is a sandal.', ...]``.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise InputShapeError(f"labels must be (N,), got shape {tuple(labels.shape)}.")
    if not templates:
        raise ConfigError("make_captions needs at least one template.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise InputShapeError(f"labels must lie in 0 .. {len(class_names) - 1} (one name per class).")
    choice = torch.randint(len(templates), (len(labels),), generator=generator)  # (N,)
    return [fill_template(templates[t], class_names[c]) for t, c in zip(choice.tolist(), labels.tolist())]


def caption_vocabulary(captions: Iterable[str]) -> list[str]:
    """The distinct words and punctuation marks of some captions, sorted."""
    return sorted({word for caption in captions for word in split_words(caption)})


def default_tokenizer(context_length: int = 16) -> WordTokenizer:
    """The tokenizer of vitlab's CLIP models: every word of the training templates filled with every
    Fashion-MNIST caption name (so the held-out templates' new words are ``[UNK]``)."""
    captions = [fill_template(t, n) for t in TRAIN_TEMPLATES for n in FASHION_MNIST_CAPTION_NAMES]
    return WordTokenizer(caption_vocabulary(captions), context_length=context_length)
