"""Analyses: hand-computed cases and independent computations."""

import itertools
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import vitlab
from vitlab.analysis import (RecorderError, attention_rollout, class_rollout, discard_lowest,
                             gradient_rollout, mean_attention_distance, patch_embedding_components,
                             pos_embed_similarity, record_attention, rollout_to_map)
from vitlab.errors import ConfigError, InputShapeError


def _vitlab_model(**kw):
    return vitlab.build_model("fmnist-vit-tiny", depth=2, **kw).eval()


def _timm_model():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=3,
                             num_heads=4).eval()


def _hand_softmax_maps(blocks, tokens, qkv_of, heads):
    """Independent: run the blocks, computing softmax(q k^T / sqrt(d)) from each block's qkv projection."""
    maps = []
    x = tokens
    for block in blocks:
        h = block.norm1(x)
        B, N, D = h.shape
        q, k, _ = qkv_of(block)(h).reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        maps.append(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // heads), dim=-1))
        x = block(x)
    return maps


@pytest.mark.parametrize("fused", [True, False])
def test_recorder_on_timm_equals_softmax_from_its_qkv(fused):
    model = _timm_model()
    for blk in model.blocks:
        blk.attn.fused_attn = fused
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        with record_attention(model) as rec:
            logits = model(x)
        tokens = model._pos_embed(model.patch_embed(x))
        expected = _hand_softmax_maps(model.blocks, tokens, lambda b: b.attn.qkv, 4)
    assert len(rec.maps) == 3 and rec.maps[0].shape == (2, 4, 17, 17)
    for got, want in zip(rec.maps, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert all(blk.attn.fused_attn == fused for blk in model.blocks)  # put back exactly
    torch.testing.assert_close(model(x), logits)


def test_recorder_on_vitlab_with_fused_attention_and_restores_the_model():
    model = _vitlab_model()
    assert model.fused_attn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        with record_attention(model) as rec:
            model(x)
        tokens = model._pos_embed(model.patch_embed(x))
        expected = _hand_softmax_maps(model.blocks, tokens, lambda b: b.attn.qkv, 4)
    for got, want in zip(rec.maps, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert model.fused_attn
    recorded = len(rec.maps)
    with torch.no_grad():
        model(x)  # the hooks are gone: nothing more is recorded
    assert len(rec.maps) == recorded
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(rec.maps[0].sum(-1), torch.ones(3, 4, 50))


def test_recorder_concatenates_several_batches():
    model = _vitlab_model()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(), record_attention(model) as rec:
        model(x[:2])
        model(x[2:])
    with torch.no_grad(), record_attention(model) as whole:
        model(x)
    torch.testing.assert_close(rec.stacked(), whole.stacked())


def test_recorder_fails_loudly_when_nothing_was_recorded():
    model = _vitlab_model()
    with pytest.raises(RecorderError, match="recorded nothing"):
        with record_attention(model):
            pass
    assert model.fused_attn
    with pytest.raises(RecorderError, match="no attention module"):
        record_attention(torch.nn.Linear(3, 3))


def test_recorder_restores_flags_when_the_forward_fails():
    model = _vitlab_model()
    with pytest.raises(InputShapeError):
        with record_attention(model) as rec:
            model(torch.randn(1, 3, 28, 28))
    assert model.fused_attn
    with torch.no_grad():
        model(torch.randn(1, 1, 28, 28))  # the hooks are gone: nothing is recorded
    assert rec.maps == []


# ---------------------------------------------------------------- mean attention distance

def test_identity_attention_has_distance_zero():
    attn = torch.eye(17).expand(2, 3, 17, 17)
    torch.testing.assert_close(mean_attention_distance(attn, patch_size=7), torch.zeros(2, 3))


def test_uniform_attention_gives_the_mean_pairwise_patch_distance():
    grid, patch = 4, 8
    n = grid * grid
    attn = torch.full((n + 1, n + 1), 1.0 / (n + 1))
    coords = list(itertools.product(range(grid), range(grid)))
    mean_pair = np.mean([math.dist(a, b) for a in coords for b in coords]) * patch
    renorm = mean_attention_distance(attn, patch_size=patch, renormalize=True)
    assert renorm.item() == pytest.approx(mean_pair, rel=1e-6)
    raw = mean_attention_distance(attn, patch_size=patch)  # rows keep the 1/(n+1) that went to CLS
    assert raw.item() == pytest.approx(mean_pair * n / (n + 1), rel=1e-6)


def test_hand_computed_two_by_two_grid():
    # 4 patches, no prefix. Query 0 looks half at itself, half at patch 3 (diagonal, sqrt(2) away).
    attn = torch.zeros(4, 4)
    attn[0, 0], attn[0, 3] = 0.5, 0.5
    attn[1, 0] = 1.0  # 1 patch away
    attn[2, 2] = 1.0  # itself
    attn[3, 1] = 1.0  # 1 patch away
    got = mean_attention_distance(attn, patch_size=10, num_prefix_tokens=0)
    assert got.item() == pytest.approx((0.5 * math.sqrt(2) * 10 + 10 + 0 + 10) / 4)


def test_distance_against_a_loop_over_random_attention():
    torch.manual_seed(1)
    attn = torch.softmax(torch.randn(2, 3, 10, 10), dim=-1)  # 1 CLS + 3x3 grid
    got = mean_attention_distance(attn, patch_size=4)
    want = np.zeros((2, 3))
    for b, h in itertools.product(range(2), range(3)):
        total = 0.0
        for q in range(9):
            for k in range(9):
                total += attn[b, h, q + 1, k + 1].item() * 4 * math.dist(divmod(q, 3), divmod(k, 3))
        want[b, h] = total / 9
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_rectangular_grid_and_bad_shapes():
    attn = torch.softmax(torch.randn(7, 7), -1)  # 1 CLS + 2x3 grid
    assert mean_attention_distance(attn, 1, grid_size=(2, 3)).shape == ()
    with pytest.raises(InputShapeError, match="square grid"):
        mean_attention_distance(attn, 1)
    with pytest.raises(InputShapeError, match="grid_size"):
        mean_attention_distance(attn, 1, grid_size=4)
    with pytest.raises(InputShapeError, match="N, N"):
        mean_attention_distance(torch.rand(3, 4), 1)


# ---------------------------------------------------------------- rollout

def _random_maps(layers=3, B=2, H=4, N=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(B, H, N, N, generator=g), -1) for _ in range(layers)]


def test_rollout_rows_sum_to_one():
    for fusion in ("mean", "max", "min"):
        r = attention_rollout(_random_maps(), head_fusion=fusion, discard_ratio=0.5)
        torch.testing.assert_close(r.sum(-1), torch.ones(2, 10))


def test_one_identity_layer_gives_the_identity():
    r = attention_rollout([torch.eye(5).expand(1, 2, 5, 5)])
    torch.testing.assert_close(r, torch.eye(5)[None])


def test_rollout_against_an_explicit_loop_with_last_layer_on_the_left():
    maps = _random_maps(layers=3)
    layers = []
    for m in maps:
        a = m.mean(1).double().numpy()
        a = 0.5 * a + 0.5 * np.eye(10)
        layers.append(a / a.sum(-1, keepdims=True))
    want = np.stack([layers[2][b] @ layers[1][b] @ layers[0][b] for b in range(2)])
    np.testing.assert_allclose(attention_rollout(maps).numpy(), want, rtol=1e-5, atol=1e-7)


def test_discard_never_drops_the_cls_column():
    a = torch.full((1, 4, 4), 0.5)
    a[0, :, 0] = 0.0  # the CLS column holds the smallest values of all
    out = discard_lowest(a, 0.5)
    assert torch.equal(out[0, :, 0], a[0, :, 0])
    assert (out[0, :, 1:] == 0).sum() == 6  # half of the 12 non-CLS entries
    with pytest.raises(ConfigError):
        discard_lowest(a, 1.0)


def test_rollout_map_is_the_cls_row_on_the_grid():
    r = attention_rollout(_random_maps(N=10))
    m = rollout_to_map(r)
    assert m.shape == (2, 3, 3)
    torch.testing.assert_close(m[1].flatten(), r[1, 0, 1:])


def test_rollout_shape_errors():
    with pytest.raises(InputShapeError):
        attention_rollout([])
    with pytest.raises(InputShapeError):
        attention_rollout([torch.rand(1, 2, 5, 5), torch.rand(1, 2, 6, 6)])
    with pytest.raises(ConfigError, match="head_fusion"):
        attention_rollout(_random_maps(), head_fusion="median")


def test_gradient_rollout_zero_gradient_is_the_identity():
    maps = _random_maps(layers=2)
    r = gradient_rollout(maps, [torch.zeros_like(m) for m in maps])
    torch.testing.assert_close(r, torch.eye(10).expand(2, 10, 10))


def test_gradient_rollout_by_hand_with_nonzero_gradients():
    # one image, one head, two tokens. Layer 1: A = [[.5, .5], [.2, .8]], G = [[1, -1], [2, 0]]
    # -> positive part of G * A = [[.5, 0], [.4, 0]] =: W1, and R1 = I + W1 I = [[1.5, 0], [.4, 1]].
    a1, g1 = torch.tensor([[[[.5, .5], [.2, .8]]]]), torch.tensor([[[[1., -1.], [2., 0.]]]])
    torch.testing.assert_close(gradient_rollout([a1], [g1]), torch.tensor([[[1.5, 0.], [.4, 1.]]]))
    # layer 2: A = [[1, 0], [.5, .5]], G = [[0, 0], [-1, 4]] -> W2 = [[0, 0], [0, 2]];
    # R2 = R1 + W2 R1 = [[1.5, 0], [.4, 1]] + [[0, 0], [.8, 2]] = [[1.5, 0], [1.2, 3]]
    a2, g2 = torch.tensor([[[[1., 0.], [.5, .5]]]]), torch.tensor([[[[0., 0.], [-1., 4.]]]])
    torch.testing.assert_close(gradient_rollout([a1, a2], [g1, g2]), torch.tensor([[[1.5, 0.], [1.2, 3.]]]))
    # heads are averaged after the positive part: a second head with the negated gradient keeps its own
    # positive entries, (-G * A)^+ = [[0, .5], [0, 0]], so W = ([[.5, 0], [.4, 0]] + [[0, .5], [0, 0]]) / 2
    a, g = torch.cat([a1, a1], dim=1), torch.cat([g1, -g1], dim=1)
    torch.testing.assert_close(gradient_rollout([a], [g]), torch.tensor([[[1.25, .25], [.2, 1.]]]))


def test_class_rollout_matches_a_forward_written_out_by_hand():
    """Independent: the ViT's forward from its weights, the softmax maps as leaves of the graph,
    their gradients by autograd, and Chefer et al.'s rule R <- R + mean_h((G * A)^+) R written inline."""
    torch.manual_seed(0)
    model = _vitlab_model()
    x = torch.randn(2, 1, 28, 28)
    target = torch.tensor([3, 7])
    maps = []
    with torch.enable_grad():
        tokens = model._pos_embed(model.patch_embed(x))
        for block in model.blocks:
            h = block.norm1(tokens)
            B, N, D = h.shape
            heads = block.attn.heads
            q, k, v = block.attn.qkv(h).reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
            attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // heads), dim=-1)  # (B, H, N, N)
            maps.append(attn)
            mixed = (attn @ v).transpose(1, 2).reshape(B, N, D)
            tokens = tokens + block.attn.proj(mixed)
            tokens = tokens + block.mlp(block.norm2(tokens))
        logits = model.head(model.norm(tokens)[:, 0])
        score = logits.gather(1, target[:, None]).sum()
        grads = torch.autograd.grad(score, maps)
    relevance = torch.eye(N).expand(B, N, N).double()
    for attn, grad in zip(maps, grads):
        assert grad.abs().max() > 0  # a real, non-zero gradient
        relevance = relevance + (grad * attn).clamp_min(0).mean(dim=1).double() @ relevance
    got = class_rollout(model, x, target=target)
    assert got.shape == (2, 50, 50)
    torch.testing.assert_close(got.double(), relevance, rtol=1e-5, atol=1e-6)
    other = class_rollout(model, x, target=torch.tensor([4, 1]))
    assert not torch.allclose(other, got)  # the class matters


# ---------------------------------------------------------------- position embeddings and filters

def test_pos_embed_similarity_equals_a_direct_cosine():
    pos = torch.randn(1, 1 + 9, 16)
    sim = pos_embed_similarity(pos)
    assert sim.shape == (3, 3, 3, 3)
    for (i, j), (k, l) in itertools.product(itertools.product(range(3), range(3)), repeat=2):
        want = F.cosine_similarity(pos[0, 1 + 3 * i + j], pos[0, 1 + 3 * k + l], dim=0)
        assert sim[i, j, k, l].item() == pytest.approx(want.item(), abs=1e-6)
    torch.testing.assert_close(torch.diagonal(sim.reshape(9, 9)), torch.ones(9))
    with pytest.raises(InputShapeError):
        pos_embed_similarity(torch.randn(1, 11, 16))


def test_principal_components_equal_an_eigendecomposition_of_the_covariance():
    torch.manual_seed(0)
    weight = torch.randn(64, 3, 4, 4) * torch.linspace(0.1, 2, 48).reshape(1, 3, 4, 4)
    comps, ratio = patch_embedding_components(weight, k=5)
    assert comps.shape == (5, 3, 4, 4) and ratio.shape == (5,)
    assert (ratio[:-1] >= ratio[1:]).all()
    x = weight.reshape(64, -1).double().numpy()
    cov = np.cov(x, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    np.testing.assert_allclose(ratio.numpy(), (evals[order] / evals.sum())[:5], rtol=1e-4)
    for c, v in zip(comps.reshape(5, -1).double().numpy(), evecs[:, order[:5]].T):
        assert abs(abs(c @ v) - 1) < 1e-4  # same direction up to sign
    with pytest.raises(InputShapeError, match="at most"):
        patch_embedding_components(weight, k=49)


def test_analyses_run_on_a_timm_vit_tiny():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2).eval()
    with torch.no_grad(), record_attention(model) as rec:
        model(torch.randn(1, 3, 224, 224))
    assert mean_attention_distance(rec.maps[0], patch_size=16).shape == (1, 3)
    assert rollout_to_map(attention_rollout(rec.maps)).shape == (1, 14, 14)
    assert pos_embed_similarity(model.pos_embed).shape == (14, 14, 14, 14)
    assert patch_embedding_components(model.patch_embed.proj.weight)[0].shape == (28, 3, 16, 16)


@pytest.mark.parametrize("call, error, message", [
    (lambda maps: attention_rollout(torch.stack(maps)), InputShapeError, r"list of per-layer maps.*list\(stacked\)"),
    (lambda maps: mean_attention_distance(maps[0], 4, grid_size=7.0), InputShapeError, "grid_size must be a positive int"),
    (lambda maps: mean_attention_distance(maps[0], 4, grid_size=-7), InputShapeError, "grid_size must be a positive int"),
    (lambda maps: mean_attention_distance(maps[0], -4), ConfigError, "patch_size must be .* > 0, got -4"),
    (lambda maps: mean_attention_distance(maps[0], float("nan")), ConfigError, "patch_size must be"),
])
def test_bad_arguments_to_the_analyses_are_typed_errors_that_say_what_to_pass(call, error, message):
    maps = _random_maps(layers=2, N=50)
    with pytest.raises(error, match=message):
        call(maps)


# ---------------------------------------------------------------- pitfalls peers hit, pinned at batch size > 1

def test_rollout_rows_sum_to_one_after_every_layer_with_discard():
    torch.manual_seed(0)
    maps = [torch.rand(3, 4, 10, 10).softmax(-1) for _ in range(5)]
    for depth in range(1, 6):  # the rollout up to each layer is itself row-stochastic
        r = attention_rollout(maps[:depth], discard_ratio=0.9)
        torch.testing.assert_close(r.sum(-1), torch.ones(3, 10))


def test_discard_ratio_and_rollout_are_per_image_not_per_batch():
    torch.manual_seed(0)
    quiet = torch.rand(1, 4, 10, 10).softmax(-1)
    loud = (torch.rand(1, 4, 10, 10) * 20).softmax(-1)  # far larger weights: a batch-wide threshold would bite
    batch = [torch.cat([quiet, loud]) for _ in range(3)]
    together = attention_rollout(batch, discard_ratio=0.7)
    alone = attention_rollout([quiet] * 3, discard_ratio=0.7)
    torch.testing.assert_close(together[:1], alone)
    torch.testing.assert_close(discard_lowest(torch.cat([quiet, loud]).mean(1), 0.7)[:1],
                               discard_lowest(quiet.mean(1), 0.7))


def test_gradient_rollout_pairs_each_layer_with_its_own_gradient_per_image():
    torch.manual_seed(0)
    maps = [torch.rand(2, 3, 6, 6).softmax(-1) for _ in range(3)]
    grads = [torch.randn(2, 3, 6, 6) for _ in range(3)]
    together = gradient_rollout(maps, grads)
    for b in range(2):  # each image alone gives its own row of the batch
        torch.testing.assert_close(together[b:b + 1], gradient_rollout([m[b:b + 1] for m in maps],
                                                                       [g[b:b + 1] for g in grads]))
    swapped = gradient_rollout(maps, grads[::-1])  # a gradient paired with another layer's map changes it
    assert not torch.allclose(swapped, together)
    # by hand: R = I; R <- R + mean_h(relu(g * a)) @ R, layer by layer
    r = torch.eye(6).expand(2, 6, 6).clone()
    for a, g in zip(maps, grads):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    torch.testing.assert_close(together, r)
