"""transformers' ViT, DeiT and DINOv2: recorded under SDPA (switched to eager while recording, then back) equal
to the model's own output_attentions=True, and from_hf gives a vitlab ViT with equal logits (issue 17)."""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install 'vitlab[hf]' (make test installs it)")

import vitlab  # noqa: E402
from vitlab.analysis import attention_rollout, mean_attention_distance, record_attention  # noqa: E402
from vitlab.models.hf_interop import from_hf  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=32,
             patch_size=8, num_channels=3)


def _small(kind: str):
    torch.manual_seed(0)
    if kind == "vit":
        return transformers.ViTForImageClassification(transformers.ViTConfig(**SMALL, num_labels=5),
                                                      ).eval()
    if kind == "deit":
        return transformers.DeiTModel(transformers.DeiTConfig(**SMALL)).eval()
    cfg = transformers.Dinov2Config(**{k: v for k, v in SMALL.items() if k != "intermediate_size"}, mlp_ratio=2)
    return transformers.Dinov2Model(cfg).eval()


@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2"])
def test_recorded_under_sdpa_equals_the_models_own_eager_attentions(kind):
    model = _small(kind)
    model.set_attn_implementation("sdpa")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x, output_attentions=False).attentions is None  # SDPA: no weights by itself
        with record_attention(model) as rec:
            model(x)
        assert model.config._attn_implementation == "sdpa"  # restored exactly
        model.set_attn_implementation("eager")
        reference = model(x, output_attentions=True).attentions
    assert len(rec.maps) == len(reference) == 3
    for ours, theirs in zip(rec.maps, reference):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    prefix = 2 if kind == "deit" else 1  # DeiT's distillation token
    assert mean_attention_distance(rec.maps[0], 8, num_prefix_tokens=prefix).shape == (2, 4)
    assert attention_rollout(rec.maps, num_prefix_tokens=prefix).shape[-1] == prefix + 16


def test_from_hf_gives_a_vitlab_vit_with_equal_logits_and_equal_attention():
    model = _small("vit")
    ours = from_hf(model)
    assert isinstance(ours, vitlab.ViT) and ours.cfg.num_classes == 5 and ours.cfg.norm_eps == model.config.layer_norm_eps
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x).logits, atol=1e-5, rtol=1e-5)
        with record_attention(ours) as a, record_attention(model) as b:
            ours(x), model(x)
    for m, n in zip(a.maps, b.maps):
        torch.testing.assert_close(m, n, atol=1e-6, rtol=0)


def test_from_hf_refuses_what_it_cannot_convert():
    with pytest.raises(vitlab.ConfigError, match="ViTModel and ViTForImageClassification"):
        from_hf(_small("dinov2"))
    cfg = transformers.ViTConfig(**SMALL, hidden_act="relu")
    with pytest.raises(vitlab.ConfigError, match="activation"):
        from_hf(transformers.ViTModel(cfg))


def test_without_transformers_the_error_is_one_line_saying_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'vitlab\[hf\]'"):
        from_hf(torch.nn.Linear(2, 2))


def test_a_training_model_with_attention_dropout_is_refused():
    torch.manual_seed(0)
    model = transformers.ViTModel(transformers.ViTConfig(**SMALL, attention_probs_dropout_prob=0.1)).train()
    with pytest.raises(vitlab.analysis.RecorderError, match="model.eval()"):
        with record_attention(model):
            model(torch.randn(1, 3, 32, 32))
