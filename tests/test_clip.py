"""The toy CLIP (vitlab.models.clip), its experiment and its plots."""

import json
import math
import sys
import types

import matplotlib
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

import vitlab  # noqa: E402
from vitlab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vitlab.errors import ConfigError, InputShapeError, PretrainedUnavailableError  # noqa: E402
from vitlab.experiments import clip as clip_experiment  # noqa: E402
from vitlab.experiments.common import repo_root  # noqa: E402
from vitlab.layers import Attention  # noqa: E402
from vitlab.models.clip import (CLIP, CLIPConfig, TextEncoder, class_text_embeddings, clip_logits, clip_loss,  # noqa: E402
                                retrieve, zero_shot_logits)
from vitlab.plots.clip import plot_retrieval, plot_similarity_matrix, plot_zero_shot  # noqa: E402
from vitlab.text import FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES, default_tokenizer, fill_template  # noqa: E402

SMALL = CLIPConfig(image_dim=16, image_depth=1, image_heads=2, text_dim=16, text_depth=1, text_heads=2, embed_dim=8)


def small_clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP(SMALL)


# ---- the loss ----------------------------------------------------------------------------------------

def loop_clip_loss(image, text, scale):
    """The loss written out: each image's softmax over texts, each text's over images."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    B = image.shape[0]
    total = 0.0
    for i in range(B):
        row = torch.stack([scale * image[i] @ text[j] for j in range(B)])
        col = torch.stack([scale * image[j] @ text[i] for j in range(B)])
        total = total - torch.log_softmax(row, 0)[i] - torch.log_softmax(col, 0)[i]
    return total / (2 * B)


def test_clip_loss_matches_a_loop_computation():
    image, text = torch.randn(6, 5), torch.randn(6, 5)
    torch.testing.assert_close(clip_loss(image, text, 3.0), loop_clip_loss(image, text, 3.0))


@pytest.mark.parametrize("scale", [1.0, 5.0, 20.0])
def test_clip_loss_of_perfectly_aligned_orthogonal_embeddings(scale):
    B = 4
    emb = torch.eye(B, 8)  # image i = text i, orthogonal to the others
    expected = math.log(1 + (B - 1) * math.exp(-scale))
    assert clip_loss(emb, emb, scale).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)  # float32


def test_clip_loss_of_random_embeddings_is_about_log_batch_size():
    B = 64
    assert clip_loss(torch.randn(B, 32), torch.randn(B, 32), 0.0).item() == pytest.approx(math.log(B))  # exactly
    assert clip_loss(torch.randn(B, 256), torch.randn(B, 256), 1.0).item() == pytest.approx(math.log(B), abs=0.1)


def test_clip_loss_is_symmetric_and_checks_its_input():
    image, text = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(clip_loss(image, text, 2.0), clip_loss(text, image, 2.0))
    with pytest.raises(InputShapeError, match="pairs"):
        clip_loss(torch.randn(4, 3), torch.randn(5, 3), 1.0)
    with pytest.raises(InputShapeError, match="at least 2"):
        clip_loss(torch.randn(1, 3), torch.randn(1, 3), 1.0)


def test_logits_are_scaled_cosine_similarities():
    image, text = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(clip_logits(image, text, 10.0), torch.tensor([[6.0, 8.0]]))
    torch.testing.assert_close(zero_shot_logits(image, text), torch.tensor([[0.6, 0.8]]))


def test_retrieve_hand_case_and_bad_k():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scores, indices = retrieve(torch.tensor([[1.0, 0.1]]), gallery, k=2)
    assert indices.tolist() == [[0, 2]]
    assert scores[0, 0] > scores[0, 1]
    with pytest.raises(InputShapeError, match="k=4"):
        retrieve(gallery, gallery, k=4)


# ---- the text encoder --------------------------------------------------------------------------------

def test_key_padding_mask_without_padding_is_plain_attention():
    torch.manual_seed(0)
    attn = Attention(dim=8, heads=2).eval()
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(attn(x, key_padding=torch.zeros(3, 5, dtype=torch.bool)), attn(x))


@pytest.mark.parametrize("fused", [True, False])
def test_padding_keys_are_ignored_as_if_the_sequence_were_shorter(fused):
    """With the last two tokens marked as padding, the real tokens' outputs are those of attention
    over the three real tokens alone, on the fused and on the explicit path."""
    torch.manual_seed(0)
    attn = Attention(dim=8, heads=2, fused_attn=fused).eval()
    x = torch.randn(2, 5, 8)
    padding = torch.tensor([[False, False, False, True, True]] * 2)
    torch.testing.assert_close(attn(x, key_padding=padding)[:, :3], attn(x[:, :3]), rtol=0, atol=1e-6)


def test_padding_does_not_change_a_captions_embedding():
    tok16, tok8 = default_tokenizer(16), default_tokenizer(8)
    torch.manual_seed(0)
    long = TextEncoder(vocab_size=tok16.vocab_size, context_length=16, dim=16, depth=2, heads=2).eval()
    short = TextEncoder(vocab_size=tok16.vocab_size, context_length=8, dim=16, depth=2, heads=2).eval()
    state = long.state_dict()
    state["pos_embed"] = state["pos_embed"][:, :8]
    short.load_state_dict(state)
    captions = ["a photo of a coat.", "this is a bag."]
    torch.testing.assert_close(long(tok16.encode(captions)), short(tok8.encode(captions)))


@pytest.mark.parametrize("ids, match", [
    (torch.zeros(2, 16), "integer"),
    (torch.zeros(2, 8, dtype=torch.long), "context_length=16"),
    (torch.full((1, 16), 999), "vocabulary"),
    (torch.full((1, 16), 2), r"\[EOS\]"),
])
def test_text_encoder_rejects_bad_token_ids(ids, match):
    with pytest.raises(InputShapeError, match=match):
        small_clip().encode_text(ids)


# ---- the model ---------------------------------------------------------------------------------------

def test_forward_gives_unit_embeddings_and_the_initial_scale():
    model = small_clip()
    tok = model.tokenizer()
    out = model(torch.randn(3, 1, 28, 28), tok.encode(["a photo of a coat.", "a bag.", "this is a dress."]))
    assert out.image_embeddings.shape == out.text_embeddings.shape == (3, 8)
    torch.testing.assert_close(out.image_embeddings.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(out.text_embeddings.norm(dim=1), torch.ones(3))
    assert out.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == 100.0  # clipped at max_logit_scale


def test_same_seed_same_model():
    a, b = small_clip(), small_clip()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_class_embeddings_ensemble_is_the_normalised_mean_of_single_prompts():
    model = small_clip().eval()
    tok = model.tokenizer()
    names, templates = FASHION_MNIST_CAPTION_NAMES[:3], TRAIN_TEMPLATES[:4]
    ensemble = class_text_embeddings(model, tok, names, templates)
    assert ensemble.shape == (3, 8)
    with torch.no_grad():
        singles = torch.stack([torch.stack([F.normalize(model.encode_text(tok.encode(fill_template(t, n))), dim=-1)[0]
                                            for t in templates]) for n in names])  # (3, 4, 8)
    torch.testing.assert_close(ensemble, F.normalize(singles.mean(1), dim=-1))
    torch.testing.assert_close(class_text_embeddings(model, tok, names, templates[:1]), singles[:, 0])


def test_empty_prompt_lists_raise_clear_errors():
    model = small_clip()
    with pytest.raises(InputShapeError, match="empty list of prompt templates"):
        class_text_embeddings(model, model.tokenizer(), FASHION_MNIST_CAPTION_NAMES, [])
    with pytest.raises(InputShapeError, match="no class names"):
        class_text_embeddings(model, model.tokenizer(), [], TRAIN_TEMPLATES)


def test_preset_checkpoint_round_trip(tmp_path):
    model = vitlab.build_model("fmnist-clip")
    assert isinstance(model, CLIP) and model.cfg.vocab_size == default_tokenizer().vocab_size
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "clip.safetensors"))
    ids = model.tokenizer().encode(["a photo of a coat.", "a bag."])
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x, ids).image_embeddings, model.eval()(x, ids).image_embeddings)


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="text_heads"):
        CLIPConfig(text_dim=30, text_heads=4)
    with pytest.raises(ConfigError, match="vocab_size"):
        CLIPConfig(vocab_size=4)
    with pytest.raises(ConfigError, match="tokenizer"):
        CLIP(SMALL.replace(vocab_size=50)).tokenizer()


# ---- the experiment's pieces ---------------------------------------------------------------------------

def test_caption_table_rows_are_label_times_templates_plus_template():
    tok = default_tokenizer()
    table = clip_experiment.caption_table(tok, FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES)
    T = len(TRAIN_TEMPLATES)
    assert table.shape == (10 * T, 16)
    assert tok.decode(table[4 * T + 2]) == fill_template(TRAIN_TEMPLATES[2], FASHION_MNIST_CAPTION_NAMES[4])


def test_retrieval_precision_hand_case():
    classes = torch.eye(2, 2)
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1, 1])
    torch.testing.assert_close(clip_experiment.retrieval_precision(classes, gallery, labels, k=2),
                               torch.tensor([0.5, 1.0]))


def test_evaluate_clip_reports_every_prompting():
    model = small_clip()
    test_set = vitlab.data.fashion_mnist("test", subset=40)
    metrics = clip_experiment.evaluate_clip(model, model.tokenizer(), test_set, k=3)
    assert set(metrics["zero_shot_single"]) == set(TRAIN_TEMPLATES)
    assert 0 <= metrics["zero_shot_ensemble"] <= 1 and len(metrics["zero_shot_per_class"]) == 10
    assert len(metrics["text_to_image_precision_at_3"]) == 10
    json.dumps(metrics)  # JSON-ready


def test_zero_shot_table_collects_seeds_in_order():
    rec = lambda seed, acc: {"run_id": f"clip/seed={seed}", "seed": seed, "zero_shot_single": {"a {}.": acc},  # noqa: E731
                             "zero_shot_ensemble": acc + 0.1, "zero_shot_held_out_single": {"my {}.": acc},
                             "zero_shot_held_out_ensemble": acc}
    table = clip_experiment.zero_shot_table([rec(1, 0.5), rec(0, 0.4)])
    assert table["single: a {}."] == [0.4, 0.5]
    assert table["ensemble (train templates)"] == pytest.approx([0.5, 0.6])


def test_experiment_refuses_other_devices_and_budgets():
    with pytest.raises(ConfigError, match="CPU"):
        clip_experiment.run("quick", device="cuda")
    with pytest.raises(ConfigError, match="budget"):
        clip_experiment.run("huge")


# ---- the real CLIP: never a download in the tests ----------------------------------------------------

def test_pretrained_status_without_open_clip_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    status = clip_experiment.pretrained_clip_status()
    assert not status["available"] and "not installed" in status["reason"]
    with pytest.raises(PretrainedUnavailableError, match="not installed"):
        clip_experiment.load_pretrained_clip()


def _fake_open_clip(monkeypatch):
    fake = types.ModuleType("open_clip")
    fake.get_pretrained_cfg = lambda name, tag: {"hf_hub": "nobody/not-a-real-repo/"}
    fake.create_model_and_transforms = lambda *a, **k: pytest.fail("must not try to load")
    monkeypatch.setitem(sys.modules, "open_clip", fake)


def test_pretrained_status_offline_without_cache_skips_with_a_reason(monkeypatch):
    _fake_open_clip(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = clip_experiment.pretrained_clip_status()
    assert not status["available"] and "HF_HUB_OFFLINE" in status["reason"]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(clip_experiment, "_hub_reachable", lambda host="", timeout=0: False)
    status = clip_experiment.pretrained_clip_status()
    assert not status["available"] and "did not answer" in status["reason"]
    with pytest.raises(PretrainedUnavailableError, match="offline"):
        clip_experiment.load_pretrained_clip()


def test_pretrained_zero_shot_feeds_224_rgb_images_and_ensembles_prompts():
    seen = {}

    class FakeCLIP:  # stands in for an open_clip model: only the two encoders are used
        def encode_text(self, ids):
            seen["texts"] = ids.shape[0]
            return torch.randn(ids.shape[0], 4)

        def encode_image(self, x):
            seen["image"] = tuple(x.shape[1:])
            return torch.randn(x.shape[0], 4)

    tokenizer = lambda prompts: torch.zeros(len(prompts), 5, dtype=torch.long)  # noqa: E731
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    logits = clip_experiment.pretrained_zero_shot(FakeCLIP(), tokenizer, (0.5,) * 3, (0.25,) * 3, images,
                                                  FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES[:2])
    assert logits.shape == (3, 10) and seen == {"texts": 20, "image": (3, 224, 224)}
    with pytest.raises(InputShapeError, match="template"):
        clip_experiment.pretrained_zero_shot(FakeCLIP(), tokenizer, (0.5,) * 3, (0.25,) * 3, images,
                                             FASHION_MNIST_CAPTION_NAMES, [])


def test_full_result_reproduces_its_evaluation():
    """Re-evaluate the committed seed-0 model on the test set and compare with the committed zero-shot
    accuracy (tolerance 0.5 points: float sums may differ across machines and thread counts)."""
    results_path = repo_root() / "data" / "results" / "clip.json"
    if not results_path.is_file():
        pytest.skip("data/results/clip.json is not committed yet: run `vitlab reproduce clip --budget full`.")
    if not (clip_experiment.run_dir(results_path) / "seed0" / "model.safetensors").is_file():
        pytest.skip("the full run's seed-0 model (data/results/clip-runs/seed0/model.safetensors) is not committed.")
    record = next(r for r in json.loads(results_path.read_text())["runs"] if r["run_id"] == "clip/seed=0")
    model = clip_experiment.trained_clip(results_path, seed=0)
    metrics = clip_experiment.evaluate_clip(model, model.tokenizer(), vitlab.data.fashion_mnist("test"))
    assert metrics["zero_shot_ensemble"] == pytest.approx(record["zero_shot_ensemble"], abs=0.005)


# ---- plots -----------------------------------------------------------------------------------------

def test_plots_return_figures():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert isinstance(plot_similarity_matrix(torch.rand(3, 3) * 2 - 1, images, ["a", "b", "c"]), Figure)
    assert isinstance(plot_zero_shot({"single: a {}.": [0.4, 0.5], "ensemble (train templates)": [0.6]}), Figure)
    correct = torch.tensor([[True, False], [True, True]])
    assert isinstance(plot_retrieval(["a coat", "a bag"], images[:2, None].expand(-1, 2, -1, -1, -1), correct,
                                     torch.rand(2, 2)), Figure)
    with pytest.raises(InputShapeError):
        plot_similarity_matrix(torch.rand(3, 2), images, ["a", "b", "c"])
    with pytest.raises(InputShapeError):
        plot_zero_shot({})
