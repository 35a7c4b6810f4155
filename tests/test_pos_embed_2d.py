"""The factorised learned 2-D position embedding (pos_embed='learned2d')."""

import pytest
import torch

import vitlab
from vitlab.errors import ConfigError
from vitlab.layers import FactorizedPosEmbed2d
from vitlab.training import _param_groups


def small_cfg(**changes) -> vitlab.ViTConfig:
    cfg = vitlab.ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, dim=32, depth=2, heads=4,
                           mlp_ratio=2.0, pos_embed="learned2d")
    return cfg.replace(**changes)


def test_learned2d_has_a_row_table_a_column_table_and_a_cls_vector():
    model = vitlab.ViT(small_cfg())
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters() if "pos_embed" in k}
    assert shapes == {"pos_embed.row_pos_embed": (1, 7, 32), "pos_embed.col_pos_embed": (1, 7, 32),
                      "pos_embed.prefix_pos_embed": (1, 1, 32)}
    assert model.pos_embed_table().shape == (1, 1 + 49, 32)


def test_learned2d_with_average_pooling_has_no_prefix_vector():
    model = vitlab.ViT(small_cfg(pool="gap"))
    assert model.pos_embed.prefix_pos_embed is None
    assert model.pos_embed_table().shape == (1, 49, 32)


def test_learned2d_needs_rows_plus_columns_vectors_not_one_per_patch():
    count = {pos: vitlab.count_parameters(vitlab.ViT(small_cfg(pos_embed=pos)))
             for pos in ("none", "learned", "learned2d")}
    assert count["learned"] - count["none"] == (1 + 49) * 32
    assert count["learned2d"] - count["none"] == (1 + 7 + 7) * 32


def test_table_entry_of_patch_r_c_is_row_r_plus_column_c_hand_computed():
    layer = FactorizedPosEmbed2d(grid_size=(2, 3), dim=3, num_prefix_tokens=1)
    with torch.no_grad():
        layer.row_pos_embed.copy_(torch.tensor([[[10.0, 0, 0], [20.0, 0, 0]]]))  # rows 0, 1
        layer.col_pos_embed.copy_(torch.tensor([[[0, 1.0, 0], [0, 2.0, 0], [0, 3.0, 0]]]))  # columns 0, 1, 2
        layer.prefix_pos_embed.copy_(torch.tensor([[[0, 0, 7.0]]]))
    expected = torch.tensor([[[0, 0, 7.0],  # CLS
                              [10, 1, 0], [10, 2, 0], [10, 3, 0],  # row 0, columns 0..2
                              [20, 1, 0], [20, 2, 0], [20, 3, 0]]])  # row 1
    torch.testing.assert_close(layer.table(), expected)


def test_model_adds_the_factorised_table_to_cls_and_patch_tokens():
    torch.manual_seed(0)
    model = vitlab.ViT(small_cfg()).eval()
    x = torch.randn(2, 1, 28, 28)
    patches = model.patch_embed(x)  # (B, 49, D)
    rows, cols = model.pos_embed.row_pos_embed[0], model.pos_embed.col_pos_embed[0]  # (7, D) each
    grid = torch.stack([rows[r] + cols[c] for r in range(7) for c in range(7)])  # (49, D), row-major
    cls = model.cls_token[0, 0] + model.pos_embed.prefix_pos_embed[0, 0]  # (D,)
    expected = torch.cat([cls.expand(2, 1, -1), patches + grid], dim=1)  # (B, 50, D)
    torch.testing.assert_close(model._pos_embed(patches), expected)


def test_row_and_column_tables_learn_and_skip_weight_decay_like_the_1d_table():
    torch.manual_seed(0)
    model = vitlab.ViT(small_cfg())
    no_decay = {id(p) for p in _param_groups(model, 0.05)[1]["params"]}
    for name in ("row_pos_embed", "col_pos_embed", "prefix_pos_embed"):
        assert id(getattr(model.pos_embed, name)) in no_decay
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert model.pos_embed.row_pos_embed.grad.abs().sum() > 0
    assert model.pos_embed.col_pos_embed.grad.abs().sum() > 0


def test_learned2d_survives_a_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = vitlab.ViT(small_cfg()).eval()
    vitlab.save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = vitlab.load_checkpoint(tmp_path / "m.safetensors").eval()
    assert loaded.cfg.pos_embed == "learned2d"
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_to_timm_refuses_learned2d_and_says_why():
    with pytest.raises(ConfigError, match="learned2d.*no factorised"):
        vitlab.to_timm(vitlab.ViT(small_cfg()))


def test_the_other_position_embeddings_are_unchanged():
    assert isinstance(vitlab.ViT(small_cfg(pos_embed="learned")).pos_embed, torch.nn.Parameter)
    assert "pos_embed" in dict(vitlab.ViT(small_cfg(pos_embed="sincos2d")).named_buffers())
    assert vitlab.ViT(small_cfg(pos_embed="none")).pos_embed_table() is None
    model = vitlab.ViT(small_cfg(pos_embed="learned"))
    assert model.pos_embed_table() is model.pos_embed


def test_unknown_position_embedding_lists_learned2d_among_the_choices():
    with pytest.raises(ConfigError, match="learned2d"):
        small_cfg(pos_embed="learned3d")
