import pytest
import torch

import vitlab
from vitlab import ConfigError, InputShapeError, UnknownPresetError, ViTConfig
from vitlab.layers import Attention, sincos_2d_pos_embed


def small_cfg(**kw):
    base = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, dim=32, depth=2, heads=4)
    base.update(kw)
    return ViTConfig(**base)


@pytest.mark.parametrize("pool", ["cls", "gap"])
@pytest.mark.parametrize("pos", ["learned", "sincos2d", "none"])
def test_forward_shapes_for_every_pool_and_position_embedding(pool, pos):
    model = vitlab.ViT(small_cfg(pool=pool, pos_embed=pos)).eval()
    x = torch.randn(3, 1, 28, 28)
    tokens = model.forward_features(x)
    assert tokens.shape == (3, 49 + (pool == "cls"), 32)
    assert model.forward_head(tokens, pre_logits=True).shape == (3, 32)
    assert model(x).shape == (3, 10)


def test_fused_and_explicit_attention_agree():
    model = vitlab.ViT(small_cfg()).eval()
    x = torch.randn(2, 1, 28, 28)
    fused = model(x)
    model.fused_attn = False
    torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-5)


def test_attention_matches_hand_computed_softmax():
    attn = Attention(dim=8, heads=2).eval()
    x = torch.randn(1, 5, 8)
    q, k, v = attn.qkv(x).reshape(1, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)  # 1/sqrt(head_dim=4) = 1/2
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(1, 5, 8))
    torch.testing.assert_close(attn(x), expected)


def test_sincos_embedding_is_fixed_buffer_and_distinct_per_patch():
    model = vitlab.ViT(small_cfg(pos_embed="sincos2d"))
    assert "pos_embed" in dict(model.named_buffers())
    assert "pos_embed" not in dict(model.named_parameters())
    table = sincos_2d_pos_embed(32, 7)
    assert table.shape == (49, 32)
    assert torch.cdist(table, table).add(torch.eye(49) * 1e3).min() > 0.1  # every patch differs
    torch.testing.assert_close(table[0], torch.cat([torch.zeros(8), torch.ones(8), torch.zeros(8), torch.ones(8)]))


def test_learned_position_embedding_is_a_parameter():
    model = vitlab.ViT(small_cfg())
    assert isinstance(model.pos_embed, torch.nn.Parameter) and model.pos_embed.shape == (1, 50, 32)


def test_presets_have_the_papers_parameter_counts():
    # ViT paper Table 1 / DeiT: Ti 5.7M, S 22M, B 86M (with the 1000-class head).
    counts = {name: vitlab.count_parameters(vitlab.build_model(name)) for name in ("vit-ti16", "vit-s16", "vit-b16")}
    assert abs(counts["vit-ti16"] / 1e6 - 5.7) < 0.1
    assert abs(counts["vit-s16"] / 1e6 - 22.0) < 0.2
    assert abs(counts["vit-b16"] / 1e6 - 86.6) < 0.2


def test_l16_and_h14_presets_match_table_1():
    l16, h14 = vitlab.get_preset("vit-l16"), vitlab.get_preset("vit-h14")
    assert (l16.depth, l16.dim, l16.dim * l16.mlp_ratio, l16.heads) == (24, 1024, 4096, 16)
    assert (h14.depth, h14.dim, h14.dim * h14.mlp_ratio, h14.heads, h14.patch_size) == (32, 1280, 5120, 16, 14)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(UnknownPresetError, match="fmnist-vit"):
        vitlab.get_preset("vit-xxl")


@pytest.mark.parametrize("kwargs, message", [
    (dict(img_size=28, patch_size=5), "not divisible by patch_size"),
    (dict(patch_size=32), "larger than img_size"),
    (dict(dim=30, heads=4), "not divisible by heads"),
    (dict(pos_embed="rope"), "pos_embed"),
    (dict(pool="max"), "pool"),
    (dict(depth=0), "depth"),
])
def test_bad_configs_raise_clear_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        small_cfg(**kwargs)


def test_wrong_channel_count_and_size_raise_input_shape_errors():
    model = vitlab.ViT(small_cfg())
    with pytest.raises(InputShapeError, match="in_chans=1 but the input has 3 channels"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(InputShapeError, match="28x28 images but got 32x32"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(InputShapeError, match="unsqueeze"):
        model(torch.randn(1, 28, 28))


def test_resnet_baseline_shapes_and_size():
    model = vitlab.build_model("fmnist-resnet18")
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 512, 4, 4)
    assert 11.0e6 < vitlab.count_parameters(model) < 11.3e6  # ResNet-18: ~11.2M with a 10-class head
    with pytest.raises(InputShapeError):
        model(torch.randn(2, 3, 28, 28))


def test_registered_config_and_model_round_trip_through_a_checkpoint(tmp_path):
    """A model family defined outside vitlab's core plugs into presets, build_model and checkpoints."""
    import dataclasses

    from torch import nn

    from vitlab.config import CONFIG_KINDS, PRESETS, register_config, register_preset
    from vitlab.models import MODEL_CLASSES, register_model

    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
        width: int = 3
        sizes: tuple = (1, 2)

    class Tiny(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.lin = nn.Linear(cfg.width, 2)

    try:
        register_config("tiny-test", TinyConfig)
        register_model(TinyConfig, Tiny)
        register_preset("tiny-test-preset", TinyConfig(width=4))
        model = vitlab.build_model("tiny-test-preset")
        assert isinstance(model, Tiny) and model.lin.in_features == 4
        vitlab.save_checkpoint(model, tmp_path / "m.safetensors")
        again = vitlab.load_checkpoint(tmp_path / "m.safetensors")
        assert again.cfg.width == 4 and torch.equal(again.lin.weight, model.lin.weight)
    finally:
        CONFIG_KINDS.pop("tiny-test", None)
        MODEL_CLASSES.pop(TinyConfig, None)
        PRESETS.pop("tiny-test-preset", None)


def test_unknown_config_kind_says_what_is_known():
    from vitlab.config import config_from_dict

    with pytest.raises(vitlab.ConfigError, match="Unknown model kind 'martian'"):
        config_from_dict({"kind": "martian", "config": {}})


# ---- the forward is the paper's picture, whoever watches ------------------------------------------

SMALL = dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, dim=32, depth=3, heads=4, mlp_ratio=2.0)


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_forward_is_head_of_features(pool):
    torch.manual_seed(0)
    model = vitlab.ViT(ViTConfig(**SMALL, pool=pool)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)), rtol=0, atol=0)


def test_watching_the_model_does_not_change_what_it_computes():
    """A forward hook on the last block, a global hook, or the attention recorder: the logits are
    bitwise those of the unwatched model, and the last block always outputs every token."""
    from vitlab.analysis import record_attention

    torch.manual_seed(0)
    model = vitlab.ViT(ViTConfig(**SMALL)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        plain = model(x)
    seen = []
    handle = model.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    global_handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        with torch.no_grad():
            hooked = model(x)
    finally:
        handle.remove()
        global_handle.remove()
    assert seen == [torch.Size([2, 17, 32])]
    torch.testing.assert_close(hooked, plain, rtol=0, atol=0)
    with record_attention(model) as recorder, torch.no_grad():
        recorded = model(x)
    assert recorder.maps[-1].shape == (2, 4, 17, 17)
    torch.testing.assert_close(recorded, plain, rtol=0, atol=1e-6)  # explicit softmax path: rounding only


def test_vitlab_never_reads_torchs_private_hook_dictionaries():
    import pathlib
    import re

    root = pathlib.Path(vitlab.__file__).parent
    private = re.compile(r"_forward_hooks|_forward_pre_hooks|_backward_hooks|_global_\w*hooks")
    offenders = [f"{path.relative_to(root)}:{n}" for path in sorted(root.rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)]
    assert offenders == []


@pytest.mark.parametrize("field, value, message", [
    ("mlp_ratio", float("nan"), "ViTConfig.mlp_ratio must be positive"),
    ("mlp_ratio", float("inf"), "ViTConfig.mlp_ratio must be positive"),
    ("norm_eps", 0.0, "ViTConfig.norm_eps must be positive"),
    ("norm_eps", float("nan"), "ViTConfig.norm_eps must be positive"),
    ("qkv_bias", 1, "ViTConfig.qkv_bias must be True or False"),
    ("num_classes", -1, r"ViTConfig.num_classes must be an int >= 0"),
    ("num_classes", 2.0, r"ViTConfig.num_classes must be an int >= 0"),
    ("drop_rate", float("nan"), r"ViTConfig.drop_rate must be in \[0, 1\)"),
    ("mlp_ratio", 0.0, "ViTConfig.mlp_ratio must be positive"),
    ("drop_path_rate", 1.0, r"ViTConfig.drop_path_rate must be in \[0, 1\)"),
    ("depth", True, "ViTConfig.depth must be a positive int"),
])
def test_config_checks_name_the_class_and_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ViTConfig(**{**SMALL, field: value})


def test_every_family_config_uses_the_shared_checks():
    from vitlab.models.swin import SwinConfig
    from vitlab.models.t2t import T2TConfig

    with pytest.raises(ConfigError, match="T2TConfig.token_mlp_ratio must be positive"):
        T2TConfig(token_mlp_ratio=0.0)
    with pytest.raises(ConfigError, match="SwinConfig.attn_drop_rate must be in"):
        SwinConfig(attn_drop_rate=-0.1)


def test_a_bias_and_a_key_mask_together_give_the_same_attention_on_both_paths():
    """attend_heads with an additive bias of one shape and a key mask of another (they only broadcast
    together): the fused and the explicit path agree, and masked keys get no weight."""
    from vitlab.layers import attend_heads

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)  # (B, H, N, hd)
    bias = torch.randn(3, 4, 6)  # per head, no batch dimension
    allowed = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])[:, None, None, :]  # (B, 1, 1, 6)
    outputs = []
    for fused in (True, False):
        attn = Attention(dim=24, heads=3, fused_attn=fused).eval()
        outputs.append(attend_heads(attn, q, k, v, bias=bias, allowed=allowed))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-5)
    short = attend_heads(Attention(dim=24, heads=3, fused_attn=False).eval(), q[:1], k[:1, :, :4], v[:1, :, :4],
                         bias=bias[..., :4])
    torch.testing.assert_close(outputs[1][:1], short, rtol=0, atol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda: torch.zeros(2, 1, 28, 28, dtype=torch.uint8), r"uint8 pixels; preprocess them first: vitlab.data.preprocess"),
    (lambda: torch.zeros(2, 1, 28, 28, dtype=torch.float64), r"weights are torch.float32 but the images are torch.float64"),
    (lambda: torch.zeros(2, 1, 28, 28, dtype=torch.int64), "expects floating-point images, got torch.int64"),
    (lambda: __import__("numpy").zeros((2, 1, 28, 28)), "expects a torch.Tensor .* got numpy.ndarray"),
])
def test_images_of_the_wrong_kind_say_what_the_model_expects(make, message):
    model = vitlab.ViT(ViTConfig(**SMALL))
    with pytest.raises(InputShapeError, match=message):
        model(make())


def test_an_unknown_override_names_the_fields_there_are():
    with pytest.raises(ConfigError, match=r"ViTConfig has no field\(s\) \['colour'\]; its fields are: img_size"):
        vitlab.get_preset("fmnist-vit", colour=1)
    with pytest.raises(ConfigError, match=r"HybridConfig has no field\(s\) \['colour'\]"):
        vitlab.build_model("fmnist-hybrid", colour=1)
