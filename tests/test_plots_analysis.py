"""Plots of what a ViT learned: each returns a Figure with the right panels, drawing exactly the data given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vitlab.analysis import patch_embedding_components, pos_embed_similarity  # noqa: E402
from vitlab.errors import ConfigError  # noqa: E402
from vitlab.plots import plot_attention_distance, plot_filters, plot_pos_similarity, plot_rollout  # noqa: E402


def _panels(fig):
    """Axes that show at least one image (a colour bar's axes shows none), in reading order of the grid."""
    return sorted((ax for ax in fig.axes if ax.images), key=lambda ax: ax.get_subplotspec().num1)


def _stretched(t: torch.Tensor) -> np.ndarray:
    """Independent min-max scaling to [0, 1], as each panel is drawn."""
    a = t.double().numpy()
    return (a - a.min()) / (a.max() - a.min())


# ---------------------------------------------------------------- filters

def test_filters_one_panel_per_component_showing_each_stretched_to_its_range():
    components, explained = patch_embedding_components(torch.randn(64, 1, 4, 4), k=16)
    fig = plot_filters(components, explained, columns=8)
    assert isinstance(fig, Figure)
    panels = _panels(fig)
    assert len(panels) == 16
    for panel, component in zip(panels, components):
        shown = panel.images[0].get_array()
        assert shown.shape == (4, 4)  # one channel: a grey (P, P) image
        np.testing.assert_allclose(shown, _stretched(component[0]), atol=1e-6)
    titles = [p.get_title() for p in panels]
    assert titles == [f"{100 * e:.1f}%" for e in explained.tolist()]


def test_filters_layout_rows_and_columns_and_no_titles_without_explained_variance():
    fig = plot_filters(torch.randn(10, 1, 4, 4), columns=4)
    panels = _panels(fig)
    assert len(panels) == 10
    geometry = {p.get_subplotspec().get_geometry()[:2] for p in panels}
    assert geometry == {(3, 4)}  # ceil(10 / 4) rows of 4
    assert all(p.get_title() == "" for p in panels)
    fewer = plot_filters(torch.randn(3, 1, 4, 4), columns=7)  # fewer filters than columns: one row of 3
    assert {p.get_subplotspec().get_geometry()[:2] for p in _panels(fewer)} == {(1, 3)}


def test_three_channel_filters_are_drawn_in_colour():
    components = torch.randn(2, 3, 16, 16)
    panels = _panels(plot_filters(components))
    shown = panels[1].images[0].get_array()
    assert shown.shape == (16, 16, 3)
    np.testing.assert_allclose(shown, _stretched(components[1]).transpose(1, 2, 0), atol=1e-6)


# ---------------------------------------------------------------- position-embedding similarity

def test_pos_similarity_is_a_grid_of_grids_on_one_scale():
    pos = torch.randn(1, 1 + 3 * 4, 8)
    similarity = pos_embed_similarity(pos, grid_size=(3, 4))  # (3, 4, 3, 4)
    fig = plot_pos_similarity(similarity)
    assert isinstance(fig, Figure)
    panels = _panels(fig)
    assert len(panels) == 12
    assert len(fig.axes) == 13  # and a colour bar
    for index, panel in enumerate(panels):
        i, j = divmod(index, 4)
        np.testing.assert_allclose(panel.images[0].get_array(), similarity[i, j].numpy(), atol=1e-7)
        assert panel.images[0].get_clim() == (-1.0, 1.0)
    assert [p.get_ylabel() for p in panels[::4]] == ["1", "2", "3"]  # rows numbered from 1
    assert [p.get_xlabel() for p in panels[-4:]] == ["1", "2", "3", "4"]


def test_pos_similarity_panel_of_a_patch_is_one_on_itself():
    similarity = pos_embed_similarity(torch.randn(1, 1 + 9, 16))
    panels = _panels(plot_pos_similarity(similarity))
    shown = panels[5].images[0].get_array()  # patch (1, 2)
    assert shown[1, 2] == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- mean attention distance

def _points(collection) -> np.ndarray:
    return np.asarray(collection.get_offsets())


def test_attention_distance_one_point_per_head_at_its_layer():
    distance = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])  # (L=3, H=4)
    fig = plot_attention_distance(distance, image_size=28)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (dots,) = ax.collections
    points = _points(dots)
    assert points.shape == (12, 2)
    np.testing.assert_array_equal(points[:, 0], [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
    np.testing.assert_allclose(points[:, 1], distance.flatten().numpy())
    assert [line.get_ydata()[0] for line in ax.lines] == [28]
    assert list(ax.get_xticks()) == [1, 2, 3]


def test_two_models_overlay_on_one_axes_with_a_reference_line_and_legend():
    trained, untrained = torch.rand(6, 4) * 20, torch.full((6, 4), 14.0)
    fig = plot_attention_distance(trained, label="trained", offset=-0.1)
    same = plot_attention_distance(untrained, label="untrained", ax=fig.axes[0], reference=14.4, offset=0.1)
    assert same is fig and len(fig.axes) == 1
    ax = fig.axes[0]
    first, second = ax.collections
    np.testing.assert_allclose(_points(first)[:, 0], np.repeat(np.arange(1, 7), 4) - 0.1)
    np.testing.assert_allclose(_points(second)[:, 0], np.repeat(np.arange(1, 7), 4) + 0.1)
    np.testing.assert_allclose(_points(first)[:, 1], trained.flatten().numpy(), rtol=1e-6)
    np.testing.assert_allclose(_points(second)[:, 1], 14.0)
    (reference,) = ax.lines
    assert reference.get_ydata()[0] == pytest.approx(14.4)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["trained", "uniform attention", "untrained"]


# ---------------------------------------------------------------- rollout

def test_rollout_shows_each_image_above_its_overlaid_map_stretched_on_request():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    maps = torch.rand(3, 7, 7)
    fig = plot_rollout(images, maps, titles=["a", "b", "c"], vmax="each")
    assert isinstance(fig, Figure)
    panels = _panels(fig)
    assert len(panels) == 6
    top, bottom = panels[:3], panels[3:]
    assert [p.get_title() for p in top] == ["a", "b", "c"]
    for b in range(3):
        np.testing.assert_allclose(top[b].images[0].get_array(), images[b, 0].numpy() / 255.0, atol=1e-6)
        picture, overlay = bottom[b].images
        np.testing.assert_allclose(picture.get_array(), images[b, 0].numpy() / 255.0, atol=1e-6)
        np.testing.assert_allclose(overlay.get_array(), _stretched(maps[b]), atol=1e-6)  # own range (asked for)
        assert overlay.get_extent() == [-0.5, 27.5, 27.5, -0.5]  # the 7x7 map covers the whole 28x28 image


def test_rollout_with_vmax_draws_the_maps_as_they_are_on_one_scale():
    images = torch.rand(2, 3, 32, 32)  # float colour images
    maps = torch.rand(2, 4, 4) * 0.1
    panels = _panels(plot_rollout(images, maps, vmax=0.1))
    for b, panel in enumerate(panels[2:]):
        picture, overlay = panel.images
        assert picture.get_array().shape == (32, 32, 3)
        np.testing.assert_allclose(overlay.get_array(), maps[b].numpy(), atol=1e-7)
        assert overlay.get_clim() == (0.0, 0.1)


def test_rollout_maps_share_one_scale_by_default_with_the_uniform_level_marked():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    maps = torch.full((3, 7, 7), 0.02)
    maps[0, 3, 3] = 0.08  # one peaked map beside two flat ones
    fig = plot_rollout(images, maps)
    overlays = [panel.images[1] for panel in _panels(fig)[3:]]
    for b, overlay in enumerate(overlays):
        np.testing.assert_allclose(overlay.get_array(), maps[b].numpy(), atol=1e-7)  # drawn as they are
        assert overlay.get_clim() == pytest.approx((0.0, 0.08))  # one scale: 0 to the largest value shown
    (bar,) = [ax for ax in fig.axes if not ax.images]  # the colour bar's axes
    labels = {t.get_text(): y for t, y in zip(bar.get_yticklabels(), bar.get_yticks())}
    level = maps.mean().item()  # a flat map with the same mass
    assert labels[f"uniform {level:.3f}"] == pytest.approx(level)
    with pytest.raises(ConfigError, match="each"):
        plot_rollout(images, maps, vmax="own")


def test_attention_distance_axis_runs_from_zero_to_the_largest_possible_distance():
    fig = plot_attention_distance(torch.full((4, 4), 14.0), reference=14.15, largest=33.94)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 33.94
    assert sorted(line.get_ydata()[0] for line in ax.lines) == [14.15, 33.94]
    assert "largest possible (33.9 px)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_every_analysis_figure_renders_to_png(tmp_path):
    figures = [
        plot_filters(torch.randn(16, 1, 4, 4), torch.rand(16)),
        plot_pos_similarity(pos_embed_similarity(torch.randn(1, 50, 64))),
        plot_attention_distance(torch.rand(6, 4), reference=14.0, label="model"),
        plot_rollout(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8), torch.rand(2, 7, 7)),
    ]
    for index, fig in enumerate(figures):
        path = tmp_path / f"figure{index}.png"
        fig.savefig(path)
        assert path.stat().st_size > 1000
