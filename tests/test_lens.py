"""Logit lens and head ablation (issue 18): the last layer equals the model's logits, earlier layers equal a
forward written out by hand, and an ablated head equals a block computed by hand without it."""
import pytest
import torch

import vitlab
from vitlab.analysis import ablate_heads, logit_lens, residual_stream
from vitlab.errors import ConfigError, InputShapeError


def _model(**kw):
    vitlab.seed_everything(0)
    return vitlab.build_model("fmnist-vit-tiny", **kw).eval()


X = torch.rand(3, 1, 28, 28) * 2 - 1


def test_the_last_layer_of_the_lens_is_the_models_logits():
    model = _model()
    lens = logit_lens(model, X)
    assert lens.shape == (model.cfg.depth, 3, 50, 10)
    with torch.no_grad():
        torch.testing.assert_close(lens[-1, :, 0], model(X), atol=1e-5, rtol=1e-5)


def test_an_earlier_layer_equals_norm_and_head_after_that_many_blocks_by_hand():
    model = _model()
    with torch.no_grad():
        x = model.patch_embed(X)
        x = torch.cat([model.cls_token.expand(3, -1, -1), x], dim=1) + model.pos_embed
        for block in model.blocks[:2]:
            x = block(x)
        by_hand = model.head(model.norm(x))
    torch.testing.assert_close(logit_lens(model, X)[1], by_hand, atol=1e-6, rtol=1e-6)
    assert residual_stream(model, X).shape == (model.cfg.depth + 1, 3, 50, model.cfg.dim)


def test_zero_ablating_a_head_equals_the_block_without_that_heads_values():
    model = _model()
    block, head, width = 1, 2, model.cfg.dim // model.cfg.heads
    with torch.no_grad():
        with ablate_heads(model, {(block, head): "zero"}):
            ablated = model(X)
        # by hand: the same forward, with the head's value vectors zeroed (its output is weights @ v = 0)
        attn = model.blocks[block].attn
        original = attn.qkv.weight.clone(), attn.qkv.bias.clone()
        rows = slice(2 * model.cfg.dim + head * width, 2 * model.cfg.dim + (head + 1) * width)
        attn.qkv.weight[rows] = 0
        attn.qkv.bias[rows] = 0
        by_hand = model(X)
        attn.qkv.weight.copy_(original[0]), attn.qkv.bias.copy_(original[1])
        plain = model(X)
    torch.testing.assert_close(ablated, by_hand, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ablated, plain, atol=1e-4)  # the head mattered a little
    with torch.no_grad():
        torch.testing.assert_close(model(X), plain)  # the hooks are gone


def test_mean_ablation_replaces_a_head_by_its_batch_mean():
    model = _model()
    seen = []
    with torch.no_grad(), ablate_heads(model, {(0, 1): "mean"}):  # then a hook that sees what proj receives
        handle = model.blocks[0].attn.proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
        model(X)
    handle.remove()
    width = model.cfg.dim // model.cfg.heads
    part = seen[0][..., width:2 * width]  # what the projection received for head 1
    torch.testing.assert_close(part, part.mean(dim=(0, 1), keepdim=True).expand_as(part))


def test_bad_heads_and_models_are_typed_errors():
    model = _model()
    with pytest.raises(InputShapeError, match="does not exist"):
        with ablate_heads(model, {(0, 9): "zero"}):
            pass
    with pytest.raises(InputShapeError, match="does not exist"):
        with ablate_heads(model, {(7, 0): "zero"}):
            pass
    with pytest.raises(ConfigError, match="'zero' or 'mean'"):
        with ablate_heads(model, {(0, 0): "noise"}):
            pass
    with pytest.raises(ConfigError, match="vitlab ViT"):
        logit_lens(torch.nn.Linear(2, 2), X)
