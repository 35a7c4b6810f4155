"""Position-embedding resampling and moving a ViT to another image size."""

import pytest
import torch
from timm.layers import resample_abs_pos_embed

import vitlab
from vitlab.errors import ConfigError, InputShapeError
from vitlab.layers import sincos_2d_pos_embed
from vitlab.models.resize import resample_pos_embed, resize_vit


def small_vit(**changes) -> vitlab.ViT:
    cfg = vitlab.ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, dim=32, depth=2, heads=4,
                           mlp_ratio=2.0)
    return vitlab.ViT(cfg.replace(**changes)).eval()


# --- resample_pos_embed -------------------------------------------------------------------------

@pytest.mark.parametrize("old_grid, new_grid, prefix, mode, antialias", [
    (7, 14, 1, "bicubic", True),  # the usual case: enlarge, keep CLS
    (7, (14, 10), 1, "bicubic", True),  # non-square target
    ((4, 6), (8, 3), 0, "bilinear", True),  # non-square source, no prefix, shrinking one side
    (14, 7, 1, "bicubic", True),  # shrinking: anti-aliasing matters here
    (14, 7, 1, "bicubic", False),
    (5, 9, 2, "bilinear", False),  # two prefix tokens
    (3, 6, 1, "nearest", False),
])
def test_resample_equals_timm_resample_abs_pos_embed(old_grid, new_grid, prefix, mode, antialias):
    torch.manual_seed(0)
    rows, cols = (old_grid, old_grid) if isinstance(old_grid, int) else old_grid
    table = torch.randn(1, prefix + rows * cols, 16)
    new_size = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
    ours = resample_pos_embed(table, new_grid, old_grid=old_grid, num_prefix_tokens=prefix, mode=mode,
                              antialias=antialias)
    theirs = resample_abs_pos_embed(table, new_size=list(new_size), old_size=[rows, cols],
                                    num_prefix_tokens=prefix, interpolation=mode, antialias=antialias)
    assert ours.shape == (1, prefix + new_size[0] * new_size[1], 16)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_resample_infers_a_square_old_grid_like_timm():
    table = torch.randn(1, 1 + 49, 8)
    torch.testing.assert_close(resample_pos_embed(table, 10), resample_abs_pos_embed(table, [10, 10]))


def test_resample_keeps_dtype_and_interpolates_in_float32_like_timm():
    table = torch.randn(1, 1 + 16, 8).to(torch.bfloat16)
    ours = resample_pos_embed(table, 6)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours, resample_abs_pos_embed(table, [6, 6]), rtol=0, atol=0)


def test_resample_nearest_doubling_repeats_each_vector_in_a_2x2_block():
    # hand-computed: a 2x2 grid whose patch vectors are 1, 2, 3, 4 (one channel)
    table = torch.tensor([[[9.0], [1.0], [2.0], [3.0], [4.0]]])  # (1, 1 + 4, 1): CLS = 9
    out = resample_pos_embed(table, 4, mode="nearest")
    expected_grid = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=torch.float32)
    assert out[0, 0, 0].item() == 9.0  # CLS untouched
    torch.testing.assert_close(out[0, 1:, 0].reshape(4, 4), expected_grid)


def test_resample_keeps_a_constant_table_constant_and_the_prefix_rows_unchanged():
    # cubic weights sum to one, so a constant field stays constant when enlarged
    table = torch.full((1, 2 + 25, 6), 0.5)
    table[:, :2] = torch.randn(2, 6)
    out = resample_pos_embed(table, (9, 11), num_prefix_tokens=2)
    torch.testing.assert_close(out[:, :2], table[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 2:], torch.full((1, 99, 6), 0.5))


def test_resample_to_the_same_grid_returns_the_same_values():
    table = torch.randn(1, 1 + 49, 8)
    torch.testing.assert_close(resample_pos_embed(table, 7), table, rtol=0, atol=0)


def test_bilinear_enlargement_matches_a_hand_computed_row():
    # a 1x2 grid (values 0 and 4) enlarged to 1x4 with align_corners=False: sample points at
    # x = -0.25, 0.25, 0.75, 1.25 in old-pixel units, clamped at the edges -> 0, 1, 3, 4
    table = torch.tensor([[[0.0], [4.0]]])  # (1, 2, 1), no prefix
    out = resample_pos_embed(table, (1, 4), old_grid=(1, 2), num_prefix_tokens=0, mode="bilinear", antialias=False)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 1.0, 3.0, 4.0]))


@pytest.mark.parametrize("table, kwargs, error, match", [
    (torch.randn(50, 8), {}, InputShapeError, r"\(1, N, D\)"),
    (torch.randn(2, 50, 8), {}, InputShapeError, r"\(1, N, D\)"),
    (torch.randn(1, 1 + 48, 8), {}, InputShapeError, "not a square grid"),
    (torch.randn(1, 1 + 48, 8), {"old_grid": (7, 7)}, InputShapeError, "old_grid=.*49 patches.*48"),
    (torch.randn(1, 50, 8), {"mode": "lanczos"}, ConfigError, "mode="),
    (torch.randn(1, 50, 8), {"num_prefix_tokens": -1}, ConfigError, "num_prefix_tokens"),
    (torch.randn(1, 50, 8), {"num_prefix_tokens": 50}, ConfigError, "num_prefix_tokens"),
])
def test_resample_rejects_tables_that_do_not_fit_with_typed_errors(table, kwargs, error, match):
    with pytest.raises(error, match=match):
        resample_pos_embed(table, 14, **kwargs)


@pytest.mark.parametrize("new_grid", [0, (14, 0), (14.0, 14), "14"])
def test_resample_rejects_a_bad_new_grid(new_grid):
    with pytest.raises(ConfigError, match="new_grid"):
        resample_pos_embed(torch.randn(1, 50, 8), new_grid)


# --- resize_vit -----------------------------------------------------------------------------------

def test_resize_vit_returns_a_new_model_for_the_new_size_and_leaves_the_old_one_alone():
    torch.manual_seed(0)
    model = small_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    big = resize_vit(model, 56)
    assert big.cfg == model.cfg.replace(img_size=56) and big.cfg.grid_size == 14
    assert big(torch.randn(2, 1, 56, 56)).shape == (2, 10)  # (B, classes)
    assert big.pos_embed.shape == (1, 1 + 196, 32)
    with pytest.raises(InputShapeError):
        big(torch.randn(2, 1, 28, 28))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not big.training


def test_resize_vit_copies_every_weight_but_the_position_embedding():
    torch.manual_seed(0)
    model = small_vit()
    big = resize_vit(model, 40)
    old, new = model.state_dict(), big.state_dict()
    assert old.keys() == new.keys()
    for key in old:
        if key != "pos_embed":
            torch.testing.assert_close(new[key], old[key], rtol=0, atol=0)
    torch.testing.assert_close(new["pos_embed"], resample_pos_embed(old["pos_embed"], 10, 7), rtol=0, atol=0)


def test_resized_vit_gives_the_same_logits_as_timm_loading_the_checkpoint_at_the_new_size():
    # independent route: export to timm, let timm's own checkpoint filter resample the table for a 56x56 model
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    torch.manual_seed(0)
    model = small_vit()
    with torch.no_grad():
        model.pos_embed.normal_()  # a table with structure at every scale, so interpolation matters
    timm_small = vitlab.to_timm(model)
    timm_big = VisionTransformer(img_size=56, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                                 num_heads=4, mlp_ratio=2.0).eval()
    timm_big.load_state_dict(checkpoint_filter_fn(timm_small.state_dict(), timm_big))
    x = torch.randn(3, 1, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(resize_vit(model, 56)(x), timm_big(x), rtol=1e-5, atol=1e-5)


def test_resize_to_the_same_size_gives_the_same_logits():
    torch.manual_seed(0)
    model = small_vit()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(resize_vit(model, 28)(x), model(x), rtol=0, atol=0)


def test_reinit_keeps_the_cls_row_and_draws_fresh_patch_rows():
    torch.manual_seed(0)
    model = small_vit()
    torch.manual_seed(1)
    big = resize_vit(model, 56, pos_embed="reinit")
    torch.testing.assert_close(big.pos_embed[:, :1], model.pos_embed[:, :1], rtol=0, atol=0)
    patches = big.pos_embed[0, 1:]  # (196, D)
    assert 0.01 < patches.std().item() < 0.03  # trunc_normal(std=0.02), as a new model
    interpolated = resize_vit(model, 56).pos_embed[0, 1:]
    assert not torch.allclose(patches, interpolated)


def test_resize_gap_model_has_no_prefix_rows():
    torch.manual_seed(0)
    model = small_vit(pool="gap")
    big = resize_vit(model, 56)
    torch.testing.assert_close(big.pos_embed, resample_pos_embed(model.pos_embed, 14, num_prefix_tokens=0))


def test_sincos_interpolate_resamples_the_old_table_and_reinit_computes_the_new_grid_table():
    model = small_vit(pos_embed="sincos2d")
    interpolated = resize_vit(model, 56, pos_embed="interpolate")
    torch.testing.assert_close(interpolated.pos_embed, resample_pos_embed(model.pos_embed, 14))
    fresh = resize_vit(model, 56, pos_embed="reinit")
    torch.testing.assert_close(fresh.pos_embed[0, 1:], sincos_2d_pos_embed(32, 14))
    assert "pos_embed" in dict(fresh.named_buffers())


def test_learned2d_interpolates_row_and_column_tables_along_their_own_axis():
    torch.manual_seed(0)
    model = small_vit(pos_embed="learned2d")
    big = resize_vit(model, 56)
    old, new = model.pos_embed, big.pos_embed
    for axis in ("row_pos_embed", "col_pos_embed"):
        table = getattr(old, axis)  # (1, 7, D): a 7 x 1 grid
        expected = resample_abs_pos_embed(table, new_size=[14, 1], old_size=[7, 1], num_prefix_tokens=0)
        torch.testing.assert_close(getattr(new, axis), expected)
    torch.testing.assert_close(new.prefix_pos_embed, old.prefix_pos_embed, rtol=0, atol=0)
    assert big.pos_embed_table().shape == (1, 1 + 196, 32)
    torch.manual_seed(1)
    fresh = resize_vit(model, 56, pos_embed="reinit").pos_embed
    assert fresh.row_pos_embed.shape == (1, 14, 32)
    torch.testing.assert_close(fresh.prefix_pos_embed, old.prefix_pos_embed, rtol=0, atol=0)


def test_resize_without_position_embedding_just_changes_the_size():
    torch.manual_seed(0)
    model = small_vit(pos_embed="none")
    big = resize_vit(model, 56, pos_embed="reinit")
    assert big.pos_embed is None
    assert big(torch.randn(1, 1, 56, 56)).shape == (1, 10)


@pytest.mark.parametrize("model, size, kwargs, match", [
    (torch.nn.Linear(2, 2), 56, {}, "vitlab ViT"),
    (None, 30, {}, "not divisible by patch_size"),
    (None, 56, {"pos_embed": "zeros"}, "pos_embed='zeros'"),
    (None, 56, {"mode": "area"}, "mode="),
])
def test_resize_vit_rejects_bad_requests_with_config_errors(model, size, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        resize_vit(model if model is not None else small_vit(), size, **kwargs)


def test_a_fractional_grid_is_a_typed_error():
    with pytest.raises(ConfigError, match="new_grid must be a positive int or \\(rows, cols\\)"):
        resample_pos_embed(torch.randn(1, 50, 8), 7.5)
