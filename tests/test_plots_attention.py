"""Attention plots: they take weights, return a Figure, and refuse shapes they cannot draw."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitlab.errors import InputShapeError  # noqa: E402
from vitlab.plots import plot_attention_matrix, plot_attention_on_image  # noqa: E402


def _weights(*shape):
    return torch.randn(*shape).softmax(dim=-1)


def _panels(fig):
    """Axes that show an image (the colour bar has none)."""
    return [ax for ax in fig.axes if ax.images]


def test_attention_matrix_of_one_head_is_one_panel_showing_the_weights():
    weights = _weights(4, 4)
    fig = plot_attention_matrix(weights, labels=["a", "b", "c", "d"])
    assert isinstance(fig, Figure)
    (panel,) = _panels(fig)
    np.testing.assert_allclose(panel.images[0].get_array(), weights.numpy(), rtol=0, atol=1e-7)
    assert [t.get_text() for t in panel.get_xticklabels()] == ["a", "b", "c", "d"]
    assert len(panel.texts) == 16  # small matrices carry their values in the cells


def test_attention_matrix_has_one_panel_per_head_on_a_shared_scale():
    weights = _weights(3, 10, 10)
    fig = plot_attention_matrix(weights, max_columns=2)
    panels = _panels(fig)
    assert len(panels) == 3
    assert {p.images[0].get_clim() for p in panels} == {(0.0, float(weights.max()))}
    assert [p.get_title() for p in panels] == ["head 0", "head 1", "head 2"]
    assert all(not p.texts for p in panels)  # 10 tokens: no numbers written


def test_attention_matrix_renders_to_png(tmp_path):
    fig = plot_attention_matrix(_weights(4, 50, 50), labels=["CLS"] + [f"p{i}" for i in range(49)])
    fig.savefig(tmp_path / "attention.png")
    assert (tmp_path / "attention.png").stat().st_size > 0


@pytest.mark.parametrize("shape", [(5,), (2, 4, 5), (1, 2, 5, 5)])
def test_attention_matrix_refuses_non_square_or_batched_weights(shape):
    with pytest.raises(InputShapeError, match=r"\(N, N\) or \(H, N, N\)"):
        plot_attention_matrix(torch.rand(*shape))


def test_attention_matrix_refuses_wrong_number_of_labels():
    with pytest.raises(InputShapeError, match="3 names but the weights have 4 tokens"):
        plot_attention_matrix(_weights(4, 4), labels=["a", "b", "c"])


def test_attention_on_image_draws_each_patch_weight_in_its_grid_cell():
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    weights_row = torch.arange(49, dtype=torch.float32) / 49  # patch i gets weight i/49
    fig = plot_attention_on_image(image, weights_row, grid_size=7)
    assert isinstance(fig, Figure)
    image_panel, overlay_panel = _panels(fig)
    np.testing.assert_allclose(image_panel.images[0].get_array(), image[0].numpy() / 255.0)
    drawn = np.asarray(overlay_panel.images[1].get_array())
    assert drawn.shape == (7, 7)
    assert drawn[0, 6] == pytest.approx(6 / 49) and drawn[1, 0] == pytest.approx(7 / 49)  # row-major
    assert overlay_panel.images[1].get_extent() == [0, 28, 28, 0]  # stretched over the whole image


def test_attention_on_image_has_image_plus_one_panel_per_head():
    image = torch.rand(3, 32, 32) * 2 - 1  # a preprocessed colour image in [-1, 1]
    fig = plot_attention_on_image(image, _weights(3, 16), grid_size=4, head_names=["x", "y", "z"])
    panels = _panels(fig)
    assert [p.get_title() for p in panels] == ["image", "x", "y", "z"]
    shown = panels[0].images[0].get_array()
    assert shown.shape == (32, 32, 3) and shown.min() >= 0.0 and shown.max() <= 1.0


def test_attention_on_image_tells_to_drop_the_cls_column():
    with pytest.raises(InputShapeError, match=r"weights_row\[\.\.\., 1:\]"):
        plot_attention_on_image(torch.rand(28, 28), _weights(4, 50), grid_size=7)


@pytest.mark.parametrize("image_shape", [(2, 28, 28), (1, 1, 28, 28), (28,)])
def test_attention_on_image_refuses_images_it_cannot_show(image_shape):
    with pytest.raises(InputShapeError, match="image must be"):
        plot_attention_on_image(torch.rand(*image_shape), _weights(49), grid_size=7)


def test_attention_on_image_refuses_a_bad_grid_size():
    with pytest.raises(ValueError, match="grid_size must be a positive int"):
        plot_attention_on_image(torch.rand(28, 28), _weights(49), grid_size=0)


def test_vmin_none_stretches_the_colour_scale_over_near_uniform_weights():
    weights = torch.full((2, 6, 6), 1 / 6)
    weights[0, 0] = torch.tensor([0.15, 0.15, 0.15, 0.15, 0.15, 0.25])
    matrix_panels = _panels(plot_attention_matrix(weights, vmin=None))
    assert matrix_panels[0].images[0].get_clim() == pytest.approx((0.15, 0.25))
    overlay_panel = _panels(plot_attention_on_image(torch.rand(8, 8), weights[0, 0, :4], grid_size=2, vmin=None))[1]
    assert overlay_panel.images[1].get_clim() == pytest.approx((0.15, 0.15 + 1e-6))  # equal weights: still a range
