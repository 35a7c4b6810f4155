"""The diagrams write the drawn model's own numbers, and their texts neither overlap nor leave the figure."""
import matplotlib

matplotlib.use("Agg")

import itertools  # noqa: E402

import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

import vitlab  # noqa: E402
from vitlab.plots import plot_prenorm_block, plot_vit_overview  # noqa: E402


def _texts(fig):
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text().strip()]
    return texts, [t.get_window_extent(renderer) for t in texts], fig.bbox


def _check_layout(fig):
    texts, boxes, page = _texts(fig)
    for t, box in zip(texts, boxes):
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, t.get_text()
    for (a, box_a), (b, box_b) in itertools.combinations(zip(texts, boxes), 2):
        assert not box_a.overlaps(box_b), (a.get_text(), b.get_text())


@pytest.mark.parametrize("preset", ["fmnist-vit", "vit-b16", "vit-ti16"])
def test_vit_overview_writes_the_models_shapes(preset):
    cfg = vitlab.get_preset(preset)
    fig = plot_vit_overview(cfg)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert f"{cfg.grid_size}x{cfg.grid_size} patches of {cfg.patch_size}x{cfg.patch_size}" in text
    assert f"{cfg.num_patches} tokens of D={cfg.dim}" in text
    assert f"({cfg.num_patches + 1}, {cfg.dim})" in text and f"{cfg.depth} blocks" in text
    _check_layout(fig)


def test_vit_overview_of_a_gap_model_has_no_cls_token():
    cfg = vitlab.get_preset("fmnist-vit", pool="gap")
    text = " ".join(t.get_text() for t in plot_vit_overview(cfg).axes[0].texts)
    assert "[CLS]" not in text and "mean" in text and f"({cfg.num_patches}, {cfg.dim})" in text


@pytest.mark.parametrize("preset", ["fmnist-vit", "vit-b16"])
def test_prenorm_block_writes_the_widths(preset):
    cfg = vitlab.get_preset(preset)
    fig = plot_prenorm_block(cfg)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    hidden = int(cfg.dim * cfg.mlp_ratio)
    assert f"MLP {cfg.dim} -> {hidden} -> {cfg.dim}" in text
    assert f"{cfg.heads} heads of {cfg.dim // cfg.heads}" in text
    assert text.count("LayerNorm") == 2 and text.count("+") == 2
    _check_layout(fig)


def test_mae_overview_counts_hidden_and_visible_patches():
    from vitlab.models.mae import MAEConfig
    from vitlab.plots import plot_mae_overview

    cfg = MAEConfig(mask_ratio=0.5, decoder_dim=32, decoder_depth=3)
    fig = plot_mae_overview(cfg)
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "49 patches" in text and "hide 50%: 24 hidden" in text and "25 visible" in text  # round(49 * 0.5) = 24
    assert "sees 25 tokens" in text and "3 blocks" in text and "D=32" in text
    _check_layout(fig)


def test_clip_overview_draws_both_towers_and_a_diagonal_of_matching_pairs():
    from vitlab.plots import plot_clip_overview

    cfg = vitlab.get_preset("fmnist-clip")
    fig = plot_clip_overview(cfg, batch=5)
    ax = fig.axes[0]
    text = " ".join(t.get_text() for t in ax.texts)
    assert f"{cfg.image_depth} blocks, D={cfg.image_dim}" in text and f"{cfg.text_depth} blocks, D={cfg.text_dim}" in text
    assert text.count(f"E={cfg.embed_dim}") == 2
    cells = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    coloured = [p for p in cells if p.get_facecolor()[:3] != (1.0, 1.0, 1.0)]
    assert len(cells) == 25 and len(coloured) == 5  # the matching pairs only
    _check_layout(fig)
