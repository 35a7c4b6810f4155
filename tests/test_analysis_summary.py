"""The dataset-level analyses: uniform reference, entropy, position-embedding correlation, share on a
mask, foreground patches and the streamed summarize -- each against a hand-computed case and an
independent computation (the whole batch recorded at once, torch.distributions, numpy)."""

import math

import numpy as np
import pytest
import torch

import vitlab
from vitlab.analysis import (attention_entropy, attention_rollout, mean_attention_distance, model_geometry,
                             pos_embed_distance_correlation, pos_embed_similarity, record_attention,
                             rollout_to_map, share_on_mask, summarize, uniform_attention_distance)
from vitlab.errors import ConfigError, InputShapeError
from vitlab.layers import sincos_2d_pos_embed
from vitlab.patches import foreground_patches


# ---- uniform reference ---------------------------------------------------------------------------------

def test_uniform_distance_on_a_two_by_two_grid_by_hand():
    # each patch sees itself (0), two neighbours (1) and the diagonal (sqrt 2)
    assert uniform_attention_distance(2, 1.0, num_prefix_tokens=0) == pytest.approx((2 + math.sqrt(2)) / 4)
    # with a CLS token the four patches hold 4/5 of each row
    assert uniform_attention_distance(2, 1.0) == pytest.approx((2 + math.sqrt(2)) / 5)
    assert uniform_attention_distance((2, 2), 4.0) == pytest.approx(4 * (2 + math.sqrt(2)) / 5)


def test_uniform_distance_equals_the_distance_of_uniform_weights_on_a_7x7_grid():
    n = 50
    direct = mean_attention_distance(torch.full((n, n), 1.0 / n, dtype=torch.float64), patch_size=4).item()
    assert uniform_attention_distance(7, 4) == pytest.approx(direct, abs=1e-12)
    assert uniform_attention_distance(7, 4) == pytest.approx(14.149, abs=1e-3)  # lesson 06's reference line


# ---- entropy -------------------------------------------------------------------------------------------

def test_entropy_by_hand_and_against_torch_distributions():
    attn = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0],
                          [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]])  # (1, 4, 4)
    by_hand = (0.0 + math.log(2) + math.log(4) - (0.7 * math.log(0.7) + 0.3 * math.log(0.1))) / 4
    assert attention_entropy(attn).item() == pytest.approx(by_hand, abs=1e-6)
    random = torch.softmax(torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = torch.distributions.Categorical(probs=random).entropy().mean(dim=-1)  # (3, 2)
    torch.testing.assert_close(attention_entropy(random), expected)
    with pytest.raises(InputShapeError, match=r"\(\.\.\., N, N\)"):
        attention_entropy(torch.ones(3, 4))


# ---- position-embedding correlation --------------------------------------------------------------------

def test_pos_correlation_against_numpy_over_an_explicit_list_of_pairs():
    table = torch.randn(1, 1 + 12, 8, generator=torch.Generator().manual_seed(1))  # CLS + a 3x4 grid
    sim = pos_embed_similarity(table, grid_size=(3, 4))
    pairs = [((i, j), (k, l)) for i in range(3) for j in range(4) for k in range(3) for l in range(4)
             if (i, j) != (k, l)]
    s = [sim[i, j, k, l].item() for (i, j), (k, l) in pairs]
    d = [math.hypot(i - k, j - l) for (i, j), (k, l) in pairs]
    assert pos_embed_distance_correlation(table, grid_size=(3, 4)) == pytest.approx(np.corrcoef(s, d)[0, 1], abs=1e-6)


def test_pos_correlation_is_strongly_negative_for_a_2d_table_and_near_zero_for_random_ones():
    grid_table = sincos_2d_pos_embed(64, 7)  # (49, 64): built from the 2-D position
    assert pos_embed_distance_correlation(grid_table, num_prefix_tokens=0) < -0.5
    rng = torch.Generator().manual_seed(0)
    random = [pos_embed_distance_correlation(torch.randn(49, 64, generator=rng), num_prefix_tokens=0)
              for _ in range(5)]
    assert max(abs(r) for r in random) < 0.1
    with pytest.raises(InputShapeError, match="at least 3 patches"):
        pos_embed_distance_correlation(torch.randn(1, 3, 8), grid_size=(1, 2))


# ---- share on a mask and the foreground mask -----------------------------------------------------------

def test_share_on_mask_by_hand():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])  # (2, 2, 2)
    mask = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(share_on_mask(maps, mask), torch.tensor([5 / 8, 2 / 4]))
    per_image = torch.stack([mask, ~mask])
    torch.testing.assert_close(share_on_mask(maps, per_image), torch.tensor([5 / 8, 2 / 4]))
    with pytest.raises(InputShapeError, match="boolean"):
        share_on_mask(maps, mask.float())
    with pytest.raises(InputShapeError, match="must be"):
        share_on_mask(maps, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(InputShapeError, match="positive total"):
        share_on_mask(torch.zeros(1, 2, 2), mask)


def test_foreground_patches_by_hand_for_uint8_and_float_images():
    images = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    images[0, 0, :4, 4:] = 255  # the top-right patch is white
    images[0, 0, 4, 0] = 255  # one white pixel of 16 in the bottom-left patch: mean 16 < 25.5
    images[0, 0, 4:6, 4:] = 60  # half the bottom-right patch at 60: mean 30 > 25.5
    expected = torch.tensor([[[False, True], [False, True]]])
    assert torch.equal(foreground_patches(images, 4), expected)
    assert torch.equal(foreground_patches(images.float() / 255, 4), expected)
    assert torch.equal(foreground_patches(images, 4, threshold=0.5), torch.tensor([[[False, True], [False, False]]]))
    with pytest.raises(InputShapeError, match="raw images"):
        foreground_patches(vitlab.data.preprocess(images), 4)


# ---- summarize: streamed equals all at once ------------------------------------------------------------

def _tiny_vit(**kw):
    vitlab.seed_everything(0)
    return vitlab.build_model("fmnist-vit-tiny", depth=2, **kw).eval()


def _images(n=7):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(3))


def _all_at_once(model, images, masks, patch_size):
    """Independent: record the whole set in one pass and reduce it afterwards."""
    with torch.no_grad(), record_attention(model) as rec:
        logits = model(images)
    maps = rec.maps
    distance = torch.stack([mean_attention_distance(m, patch_size) for m in maps]).mean(dim=1)  # (L, H)
    entropy = torch.stack([attention_entropy(m) for m in maps]).mean(dim=1)
    cls_map = rollout_to_map(attention_rollout(maps))  # (B, rows, cols)
    share = (cls_map * masks).sum(dim=(1, 2)) / cls_map.sum(dim=(1, 2))
    return logits.argmax(dim=1), distance, entropy, share


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_summarize_in_batches_equals_recording_everything_at_once(batch_size):
    model, images = _tiny_vit(), _images()
    masks = torch.rand(7, 7, 7, generator=torch.Generator().manual_seed(4)) > 0.4
    predictions, distance, entropy, share = _all_at_once(model, images, masks, 4)
    out = summarize(model, images, masks=masks, batch_size=batch_size, progress=False)
    assert out["images"] == 7 and out["geometry"] == {"patch_size": 4, "grid_size": (7, 7), "num_prefix_tokens": 1}
    assert torch.equal(out["predictions"], predictions)
    torch.testing.assert_close(out["distance"], distance, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["entropy"], entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["rollout_share"], share, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["mask_share"], masks.float().mean(dim=(1, 2)))


def test_summarize_keeps_one_batch_in_memory_and_restores_the_model():
    model, images = _tiny_vit(), _images(10)
    model.train()
    seen = []
    handle = model.blocks[0].attn.attend.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    try:
        summarize(model, images, analyses=("distance",), batch_size=4, progress=False)
    finally:
        handle.remove()
    assert seen == [4, 4, 2]  # never more than one batch of maps at a time
    assert model.training and model.fused_attn  # mode and fused attention as they were


def test_summarize_on_a_timm_vit_reads_its_geometry():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                              num_heads=4).eval()
    images = _images(5)
    masks = torch.ones(5, 4, 4, dtype=torch.bool)
    _, distance, entropy, _ = _all_at_once(model, images, masks, 7)
    out = summarize(model, images, masks=masks, batch_size=2, progress=False)
    assert model_geometry(model) == {"patch_size": 7, "grid_size": (4, 4), "num_prefix_tokens": 1}
    torch.testing.assert_close(out["distance"], distance, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["entropy"], entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["rollout_share"], torch.ones(5))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(analyses=("distance", "cka")), ConfigError, r"unknown analyses \['cka'\]"),
    (dict(analyses=()), ConfigError, "unknown analyses"),
    (dict(batch_size=0), ConfigError, "batch_size must be an int >= 1"),
    (dict(masks=torch.ones(7, 6, 6, dtype=torch.bool)), InputShapeError, r"masks must be \(B, rows, cols\) = \(7, 7, 7\)"),
])
def test_summarize_bad_arguments_are_typed_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        summarize(_tiny_vit(), _images(), progress=False, **kwargs)


def test_summarize_refuses_rollout_on_a_gap_model_and_a_model_without_geometry():
    with pytest.raises(ConfigError, match="no prefix token"):
        summarize(_tiny_vit(pool="gap"), _images(), progress=False)
    model = torch.nn.Sequential(_tiny_vit())  # a wrapper that does not say the geometry
    with pytest.raises(ConfigError, match=r"does not say its patch_size, grid_size, num_prefix_tokens: pass patch_size=\.\.\."):
        summarize(model, _images(), progress=False)
    out = summarize(model, _images(), patch_size=4, grid_size=7, num_prefix_tokens=1, progress=False)
    torch.testing.assert_close(out["distance"], summarize(model[0], _images(), progress=False)["distance"])
