"""vitlab's ViT is the same function as timm's VisionTransformer, weights converted both ways."""

import pytest
import timm
import torch

import vitlab
from vitlab import ConfigError, PretrainedUnavailableError, ViTConfig


def _timm_small(**kw):
    from timm.models.vision_transformer import VisionTransformer

    args = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=3, num_heads=4,
                mlp_ratio=2.0)
    args.update(kw)
    return VisionTransformer(**args).eval()


def test_vit_tiny_patch16_224_logits_agree_after_from_timm():
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    ours = vitlab.from_timm(ref)
    assert ours.cfg == vitlab.get_preset("vit-ti16")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("global_pool, class_token", [("token", True), ("avg", False)])
def test_28x28_patch4_one_channel_logits_agree_both_ways(global_pool, class_token):
    ref = _timm_small(global_pool=global_pool, class_token=class_token)
    x = torch.randn(4, 1, 28, 28)
    ours = vitlab.from_timm(ref)
    back = vitlab.to_timm(ours)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(back(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "sincos2d", "none"])
def test_to_timm_reproduces_every_position_embedding(pos):
    ours = vitlab.ViT(ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, dim=32, depth=2,
                                heads=4, pos_embed=pos)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(vitlab.to_timm(ours)(x), ours(x), rtol=0, atol=1e-5)


def test_feature_paths_agree_with_timm():
    ref = _timm_small()
    ours = vitlab.from_timm(ref)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), pre_logits=True),
                                   ref.forward_head(ref.forward_features(x), pre_logits=True), rtol=0, atol=1e-5)


def test_unsupported_timm_variants_are_refused_clearly():
    with pytest.raises(ConfigError, match="register tokens"):
        vitlab.from_timm(_timm_small(reg_tokens=2))
    with pytest.raises(ConfigError, match="layer scale"):
        vitlab.from_timm(_timm_small(init_values=1e-5))
    with pytest.raises(ConfigError, match="VisionTransformer"):
        vitlab.from_timm(torch.nn.Linear(2, 2))


def test_load_pretrained_offline_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    with pytest.raises(PretrainedUnavailableError, match="offline"):
        vitlab.load_pretrained("vit_tiny_patch16_224.augreg_in21k_ft_in1k")


def test_load_pretrained_unknown_name():
    with pytest.raises(ConfigError, match="no model called"):
        vitlab.load_pretrained("vit_does_not_exist_patch3")
