"""The word tokenizer and the caption templates of lesson 12 (vitlab.text)."""

import pytest
import torch

from vitlab.errors import ConfigError, InputShapeError
from vitlab.text import (BOS, EOS, FASHION_MNIST_CAPTION_NAMES, HELD_OUT_TEMPLATES, PAD, TRAIN_TEMPLATES, UNK,
                         WordTokenizer, caption_vocabulary, default_tokenizer, fill_template, make_captions,
                         split_words)


def test_split_words_lowercases_and_separates_punctuation_keeping_hyphenated_words():
    assert split_words("A photo of a T-shirt.") == ["a", "photo", "of", "a", "t-shirt", "."]
    assert split_words("  two   spaces,comma!") == ["two", "spaces", ",", "comma", "!"]
    assert split_words("") == []


def test_encode_hand_case_bos_words_eos_then_padding():
    tok = WordTokenizer(["a", "coat", "."], context_length=7)
    # ids: [PAD]=0 [UNK]=1 [BOS]=2 [EOS]=3 a=4 coat=5 .=6
    assert tok.tokens[:4] == [PAD, UNK, BOS, EOS]
    ids = tok.encode("A coat.")
    assert ids.dtype == torch.long and ids.shape == (1, 7)
    assert ids.tolist() == [[2, 4, 5, 6, 3, 0, 0]]


def test_unknown_words_become_unk_and_decode_keeps_them():
    tok = WordTokenizer(["a", "coat", "."], context_length=8)
    ids = tok.encode("a blurry coat.")[0]
    assert ids[:6].tolist() == [2, 4, 1, 5, 6, 3]
    assert tok.decode(ids) == f"a {UNK} coat."


def test_round_trip_of_every_training_and_held_out_caption_of_known_words():
    tok = default_tokenizer()
    captions = [fill_template(t, n) for t in TRAIN_TEMPLATES for n in FASHION_MNIST_CAPTION_NAMES]
    ids = tok.encode(captions)  # (80, 16)
    assert ids.shape == (len(captions), tok.context_length)
    assert tok.decode_batch(ids) == captions
    assert tok.decode(tok.encode("a photo of the coat.")[0]) == "a photo of the coat."  # held-out, known words


def test_round_trip_against_an_independent_dictionary_lookup():
    tok = default_tokenizer()
    caption = "a low resolution photo of an ankle boot."
    by_hand = [tok.tokens.index(w) for w in caption.replace(".", " .").split()]
    assert tok.encode(caption)[0, 1:len(by_hand) + 1].tolist() == by_hand


def test_held_out_templates_bring_words_the_tokenizer_has_never_seen():
    tok = default_tokenizer()
    unk = tok.ids[UNK]
    unknown = {w for t in HELD_OUT_TEMPLATES for w in split_words(t.replace("{}", "")) if w not in tok.ids}
    assert {"blurry", "close-up", "my", "in"} <= unknown
    assert unk in tok.encode(fill_template("a blurry photo of a {}.", "coat"))[0].tolist()


def test_fill_template_uses_an_before_a_vowel():
    assert fill_template("a photo of a {}.", "ankle boot") == "a photo of an ankle boot."
    assert fill_template("this is a {}.", "coat") == "this is a coat."
    with pytest.raises(ConfigError, match="exactly one"):
        fill_template("no slot here.", "coat")


def test_make_captions_are_repeatable_and_name_each_label():
    labels = torch.tensor([0, 4, 9, 4])
    a = make_captions(labels, FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES, torch.Generator().manual_seed(1))
    b = make_captions(labels, FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES, torch.Generator().manual_seed(1))
    assert a == b and len(a) == 4
    for caption, label in zip(a, labels.tolist()):
        assert FASHION_MNIST_CAPTION_NAMES[label] in caption
    with pytest.raises(ConfigError):
        make_captions(labels, FASHION_MNIST_CAPTION_NAMES, [])
    with pytest.raises(InputShapeError):
        make_captions(torch.tensor([10]), FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES)


def test_caption_vocabulary_is_sorted_and_distinct():
    assert caption_vocabulary(["b a.", "a c"]) == [".", "a", "b", "c"]


@pytest.mark.parametrize("texts, match", [([], "empty list"), ([""], "no words"),
                                          (["a " * 20], "at most 14")])
def test_encode_bad_input_raises_clear_errors(texts, match):
    with pytest.raises(InputShapeError, match=match):
        default_tokenizer().encode(texts)


def test_decode_rejects_ids_outside_the_vocabulary_and_2d_rows():
    tok = default_tokenizer()
    with pytest.raises(InputShapeError, match="outside"):
        tok.decode([2, 999, 3])
    with pytest.raises(InputShapeError, match="decode_batch"):
        tok.decode(torch.zeros(2, 16, dtype=torch.long))


def test_tokenizer_rejects_bad_vocabularies():
    with pytest.raises(ConfigError, match="duplicate"):
        WordTokenizer(["a", "a"])
    with pytest.raises(ConfigError, match="special"):
        WordTokenizer([PAD])
    with pytest.raises(ConfigError, match="context_length"):
        WordTokenizer(["a"], context_length=2)
