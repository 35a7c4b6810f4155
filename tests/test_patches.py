"""vitlab.patches (patchify / unpatchify) and vitlab.plots.patches."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from einops import rearrange  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitlab import ConfigError, InputShapeError  # noqa: E402
from vitlab.layers import PatchEmbed, sincos_2d_pos_embed  # noqa: E402
from vitlab.patches import patch_grid_size, patchify, unpatchify, valid_patch_sizes  # noqa: E402
from vitlab.plots import plot_embedding_table, plot_patch_grid, plot_patch_sizes, plot_patches  # noqa: E402


def test_patchify_hand_computed_4x4_image_in_row_major_order():
    image = torch.arange(16).reshape(1, 1, 4, 4)
    # 0  1 |  2  3
    # 4  5 |  6  7
    # -----+------
    # 8  9 | 10 11
    # 12 13| 14 15
    expected = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    assert torch.equal(patchify(image, 2)[0], expected)


def test_patchify_flattens_channel_first_then_rows_then_columns():
    image = torch.arange(8).reshape(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    assert torch.equal(patchify(image, 2), torch.arange(8).reshape(1, 1, 8))


@pytest.mark.parametrize("channels, size, patch", [(3, 32, 8), (1, 28, 4), (3, 224, 16), (2, 12, 3)])
def test_patchify_matches_einops_pattern_and_unfold(channels, size, patch):
    x = torch.randn(2, channels, size, size)
    ours = patchify(x, patch)
    n = (size // patch) ** 2
    assert ours.shape == (2, n, channels * patch * patch)
    assert torch.equal(ours, rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch, p2=patch))
    assert torch.equal(ours, F.unfold(x, kernel_size=patch, stride=patch).transpose(1, 2))


def test_patchify_times_conv_weight_equals_patch_embed():
    embed = PatchEmbed(patch_size=4, in_chans=3, dim=24)
    x = torch.randn(2, 3, 16, 16)
    weight = embed.proj.weight.reshape(24, -1)  # (D, C*P*P)
    by_hand = patchify(x, 4) @ weight.T + embed.proj.bias  # (B, N, D)
    torch.testing.assert_close(by_hand, embed(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_unpatchify_inverts_patchify_exactly(dtype):
    x = (torch.rand(3, 3, 24, 24) * 255).to(dtype)
    for patch in (1, 2, 3, 4, 6, 8, 12, 24):
        assert torch.equal(unpatchify(patchify(x, patch), patch, channels=3), x)


def test_patchify_and_unpatchify_handle_non_square_images_with_grid_size():
    x = torch.randn(1, 1, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (1, 6, 16)
    assert torch.equal(patches[0, 1], x[0, 0, :4, 4:8].flatten())  # row 0, column 1
    assert torch.equal(unpatchify(patches, 4, 1, grid_size=(2, 3)), x)


def test_patch_grid_size_and_valid_patch_sizes():
    assert patch_grid_size(224, 16) == 14
    assert patch_grid_size(28, 4) == 7
    assert valid_patch_sizes(28) == [1, 2, 4, 7, 14, 28]
    assert valid_patch_sizes(224) == [1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224]


def test_side_not_divisible_by_patch_lists_the_divisors():
    with pytest.raises(InputShapeError, match=r"not divisible by patch_size=5.*\[1, 2, 4, 7, 14, 28\]"):
        patchify(torch.randn(1, 1, 28, 28), 5)
    with pytest.raises(ValueError):  # InputShapeError is also a ValueError
        patch_grid_size(224, 15)


def test_wrong_ndim_and_wrong_types_raise_clear_errors():
    with pytest.raises(InputShapeError, match="unsqueeze"):
        patchify(torch.randn(3, 32, 32), 8)
    with pytest.raises(TypeError, match="torch.Tensor"):
        patchify([[1.0]], 1)
    with pytest.raises(ConfigError, match="patch_size must be a positive int"):
        patchify(torch.randn(1, 3, 32, 32), 0)
    with pytest.raises(InputShapeError, match="C\\*P\\*P = 48"):
        unpatchify(torch.randn(1, 4, 47), 4, 3)
    with pytest.raises(InputShapeError, match="not a square number"):
        unpatchify(torch.randn(1, 6, 48), 4, 3)
    with pytest.raises(InputShapeError, match="3-D|\\(B, N, C\\*P\\*P\\)"):
        unpatchify(torch.randn(6, 48), 4, 3)


def test_plot_patch_grid_returns_figure_with_token_count_in_title():
    photo = (torch.rand(3, 64, 64) * 255).to(torch.uint8)
    fig = plot_patch_grid(photo, 16, number_patches=True)
    assert isinstance(fig, Figure)
    assert "16 tokens" in fig.axes[0].get_title() and "CLS = 17" in fig.axes[0].get_title()
    assert len(fig.axes[0].texts) == 16
    with pytest.raises(InputShapeError, match="tile"):
        plot_patch_grid(photo, 10)


def test_plot_patch_sizes_has_one_panel_per_size_and_accepts_float_grey_images():
    fig = plot_patch_sizes(torch.randn(1, 28, 28), [4, 7, 14])
    assert isinstance(fig, Figure) and len(fig.axes) == 3


def test_plot_patches_lays_out_every_token():
    patches = patchify(torch.randn(1, 3, 32, 32), 8)[0]  # (16, 192)
    fig = plot_patches(patches, 8, 3)
    assert isinstance(fig, Figure)
    assert "16 patch tokens" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "8"]  # 8 per line by default
    with pytest.raises(InputShapeError, match="patches\\[0\\]"):
        plot_patches(patches[None], 8, 3)


def test_plot_embedding_table_with_and_without_similarity_map():
    table = sincos_2d_pos_embed(32, 7)  # (49, 32)
    assert isinstance(plot_embedding_table(table), Figure)
    sim = F.cosine_similarity(table[10][None], table, dim=-1).reshape(7, 7)
    fig = plot_embedding_table(table, similarity_map=sim, query_patch=(1, 3))
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 2
    assert "(1, 3)" in fig.axes[1].get_title() or any("(1, 3)" in ax.get_title() for ax in fig.axes)
    with pytest.raises(InputShapeError, match="pos_embed\\[0, 1:\\]"):
        plot_embedding_table(table[None])
