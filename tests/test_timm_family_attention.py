"""Recording timm's ViT family (registers, a distillation token, q/k norms, RoPE, Swin): the recorded softmax
is what the model computes, prefix tokens are respected, and the register share is measured (issue 17)."""
import pytest
import timm
import torch

from vitlab.analysis import (attention_rollout, mean_attention_distance, prefix_attention_share, record_attention,
                             rollout_to_map)

X = torch.randn(2, 3, 64, 64)


def _recorded(model, x=X):
    with torch.no_grad():
        plain = model(x)
        with record_attention(model) as rec:
            watched = model(x)
    torch.testing.assert_close(watched, plain, atol=1e-5, rtol=1e-5)  # recording changes nothing
    return rec.maps


def test_registers_and_distillation_tokens_are_prefix_tokens_to_every_analysis():
    torch.manual_seed(0)
    for name, kwargs, prefix in (("vit_tiny_patch16_224", dict(reg_tokens=4), 5),
                                 ("deit_tiny_distilled_patch16_224", {}, 2)):
        model = timm.create_model(name, pretrained=False, img_size=64, num_classes=10, **kwargs).eval()
        assert model.num_prefix_tokens == prefix
        maps = _recorded(model)
        assert maps[0].shape[-1] == prefix + 16
        assert mean_attention_distance(maps[0], 16, num_prefix_tokens=prefix).shape == (2, 3)
        assert rollout_to_map(attention_rollout(maps, num_prefix_tokens=prefix), num_prefix_tokens=prefix).shape \
            == (2, 4, 4)
        with pytest.raises(Exception, match="num_prefix_tokens"):  # 20 or 17 tokens: no square grid to guess
            mean_attention_distance(maps[0], 16)


def test_prefix_share_by_hand_and_on_a_register_model():
    attn = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])  # CLS + 2 patches
    torch.testing.assert_close(prefix_attention_share(attn, 1), torch.tensor([0.4]))  # (0.2 + 0.6) / 2
    torch.testing.assert_close(prefix_attention_share(attn, 2), torch.tensor([0.6, 0.1]))  # the last query only
    uniform = torch.full((20, 20), 1 / 20)
    torch.testing.assert_close(prefix_attention_share(uniform, 4), torch.full((4,), 1 / 20))
    with pytest.raises(Exception, match="num_prefix_tokens"):
        prefix_attention_share(attn, 3)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, reg_tokens=4).eval()
    maps = _recorded(model)
    share = prefix_attention_share(maps[-1], model.num_prefix_tokens)  # (2, 3, 5): CLS and 4 registers
    assert share.shape == (2, 3, 5)
    direct = maps[-1][:, :, 5:, :5].sum(dim=-2) / 16  # the same sum written out over the 16 patch queries
    torch.testing.assert_close(share, direct)


def test_qk_norm_maps_equal_the_softmax_of_the_normalised_queries_and_keys():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, qk_norm=True).eval()
    seen = []
    handle = model.blocks[3].attn.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    maps = _recorded(model)
    handle.remove()
    attn, x = model.blocks[3].attn, seen[-1]
    B, N, C = x.shape
    q, k, _ = attn.qkv(x).reshape(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(q), attn.k_norm(k)  # the norms change the scores: the map must include them
    expected = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
    torch.testing.assert_close(maps[3], expected, atol=1e-6, rtol=1e-5)


def test_rope_and_swin_models_are_recorded_with_rows_that_sum_to_one():
    torch.manual_seed(0)
    eva = timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=56, num_classes=10).eval()
    maps = _recorded(eva, torch.randn(2, 3, 56, 56))  # RoPE: rotated q and k inside the module
    assert len(maps) == len(eva.blocks) and maps[0].shape == (2, 3, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 3, 17))
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10).eval()
    maps = _recorded(swin, torch.randn(1, 3, 224, 224))
    assert len(maps) == sum(len(layer.blocks) for layer in swin.layers)
    assert maps[0].shape == (64, 3, 49, 49)  # timm keeps the 8x8 windows in the batch dimension
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(64, 3, 49))
