"""Diagrams of what the lessons build, drawn with matplotlib: boxes, arrows and the tensor shapes.

Each function takes the model's config (or none, for the paper's ViT-B/16) and writes the real numbers
into the picture, so the diagram of a lesson's model is that model's, not a generic one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from ..config import ViTConfig

__all__ = ["plot_vit_overview", "plot_prenorm_block"]

DPI = 90
_COLOURS = {"data": "#e8eef7", "embed": "#fde9c9", "encoder": "#dcefdc", "head": "#f6d5d5", "norm": "#eeeeee",
            "attention": "#d9e6f5", "mlp": "#f3e3f3"}


def _box(ax, x, y, w, h, text, kind, fontsize=8):
    """A rounded box centred at (x, y) with its text."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                facecolor=_COLOURS[kind], edgecolor="0.3", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, text=None, connection="arc3"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, lw=0.9, color="0.25",
                                 connectionstyle=connection, shrinkA=0, shrinkB=0))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=7, color="0.25")


def _canvas(width, height, xlim, ylim):
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_axis_off()
    return fig, ax


def plot_vit_overview(cfg: "ViTConfig | None" = None,
                      title: str = "The Vision Transformer: patches -> tokens -> encoder -> head") -> Figure:
    """The ViT paper's Figure 1 as a data-flow: image, patches, tokens, encoder, head, with the shapes.

    Args:
        cfg: the model to draw (default: the paper's ViT-B/16 on 224x224 RGB images).
        title: the figure's title.
    Returns:
        Figure: left to right, the image cut into its grid of patches, the flattened patches, the
        linear projection E, the token sequence ([CLS] + patches, plus position embeddings), the L
        encoder blocks, and the head reading the [CLS] token (or the mean of the patch tokens).
    """
    cfg = cfg or ViTConfig(img_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=768, depth=12,
                           heads=12, mlp_ratio=4.0)
    g, n, d = cfg.grid_size, cfg.num_patches, cfg.dim
    tokens = n + (1 if cfg.pool == "cls" else 0)
    fig, ax = _canvas(11.0, 3.3, (0, 11.0), (0, 3.3))
    # the image and its patch grid (at most 7 lines per side drawn, so that it stays readable)
    size, left, bottom = 1.4, 0.3, 0.85
    ax.add_patch(Rectangle((left, bottom), size, size, facecolor=_COLOURS["data"], edgecolor="0.3", lw=0.8))
    step = size / min(g, 7)
    for k in range(1, min(g, 7)):
        ax.plot([left + k * step] * 2, [bottom, bottom + size], color="0.5", lw=0.5)
        ax.plot([left, left + size], [bottom + k * step] * 2, color="0.5", lw=0.5)
    ax.text(left + size / 2, bottom - 0.12, f"image {cfg.in_chans}x{cfg.img_size}x{cfg.img_size}\n"
            f"{g}x{g} patches of {cfg.patch_size}x{cfg.patch_size}", ha="center", va="top", fontsize=7)
    _arrow(ax, (1.8, 1.55), (2.45, 1.55), "flatten")
    _box(ax, 3.25, 1.55, 1.45, 0.8, f"{n} patches\nof {cfg.patch_size * cfg.patch_size * cfg.in_chans} values",
         "data")
    _arrow(ax, (4.0, 1.55), (4.55, 1.55), "x E")
    # the token sequence: a few squares for the tokens, the first one the CLS token
    shown = 6
    for k in range(shown):
        colour = _COLOURS["head"] if (k == 0 and cfg.pool == "cls") else _COLOURS["embed"]
        ax.add_patch(Rectangle((4.65 + 0.26 * k, 1.4), 0.22, 0.3, facecolor=colour, edgecolor="0.3", lw=0.7))
    ax.text(4.65 + 0.26 * shown, 1.55, "...", va="center", fontsize=8)
    ax.text(5.55, 2.0, ("[CLS] + " if cfg.pool == "cls" else "") + f"{n} tokens of D={d}", ha="center", fontsize=7)
    ax.text(5.55, 1.1, f"+ position embedding\n({tokens}, {d})", ha="center", va="top", fontsize=7)
    _arrow(ax, (6.6, 1.55), (7.05, 1.55))
    _box(ax, 7.85, 1.55, 1.5, 1.3, f"Transformer\nencoder\n{cfg.depth} blocks x\n({cfg.heads}-head attention\n+ MLP)",
         "encoder")
    _arrow(ax, (8.6, 1.55), (9.05, 1.55), "[CLS]" if cfg.pool == "cls" else "mean")
    _box(ax, 9.8, 1.55, 1.3, 0.8, f"LayerNorm\n+ linear head\n-> {cfg.num_classes} classes", "head")
    ax.text(5.5, 3.1, title, ha="center", va="top", fontsize=10)
    ax.text(5.5, 2.65, f"every arrow keeps the batch; tokens in and out of the encoder: (B, {tokens}, {d})",
            ha="center", va="top", fontsize=7, color="0.35")
    return fig


def plot_prenorm_block(cfg: "ViTConfig | None" = None,
                       title: str = "One pre-norm encoder block (ViT paper, Eq. 2-3)") -> Figure:
    """The encoder block as the paper draws it: LayerNorm before attention and before the MLP, each
    inside a residual connection.

    Args:
        cfg: the model whose sizes to write in (default: the paper's ViT-B/16).
        title: the figure's title.
    Returns:
        Figure: bottom to top, z_(l-1) -> LN -> multi-head attention -> + -> LN -> MLP -> + -> z_l.
    """
    cfg = cfg or ViTConfig(img_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=768, depth=12,
                           heads=12, mlp_ratio=4.0)
    d, hidden = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    fig, ax = _canvas(4.6, 6.4, (0, 4.6), (0, 6.4))
    x = 2.0
    levels = {"in": 0.35, "ln1": 1.05, "attn": 1.85, "add1": 2.65, "ln2": 3.35, "mlp": 4.15, "add2": 4.95, "out": 5.55}
    ax.text(x, levels["in"], f"z(l-1): (B, N, {d})", ha="center", va="center", fontsize=8)
    _box(ax, x, levels["ln1"], 1.5, 0.42, "LayerNorm", "norm")
    _box(ax, x, levels["attn"], 2.1, 0.6, f"multi-head attention\n{cfg.heads} heads of {d // cfg.heads}", "attention")
    _box(ax, x, levels["ln2"], 1.5, 0.42, "LayerNorm", "norm")
    _box(ax, x, levels["mlp"], 2.1, 0.6, f"MLP {d} -> {hidden} -> {d}\n(GELU)", "mlp")
    for key in ("add1", "add2"):
        ax.add_patch(FancyBboxPatch((x - 0.16, levels[key] - 0.16), 0.32, 0.32, boxstyle="circle,pad=0",
                                    facecolor="white", edgecolor="0.3", lw=0.8))
        ax.text(x, levels[key], "+", ha="center", va="center", fontsize=10)
    ax.text(x, levels["out"] + 0.2, f"z(l): (B, N, {d})", ha="center", va="center", fontsize=8)
    path = [("in", "ln1", 0.15, 0.21), ("ln1", "attn", 0.21, 0.3), ("attn", "add1", 0.3, 0.16),
            ("add1", "ln2", 0.16, 0.21), ("ln2", "mlp", 0.21, 0.3), ("mlp", "add2", 0.3, 0.16), ("add2", "out", 0.16, 0.0)]
    for a, b, gap_a, gap_b in path:
        _arrow(ax, (x, levels[a] + gap_a), (x, levels[b] - gap_b))
    # the two residual connections, drawn beside the column
    for start, end, label in (("in", "add1", "skip"), ("add1", "add2", "skip")):
        y0, y1 = levels[start] + (0.15 if start == "in" else 0.0), levels[end]
        ax.plot([x, x + 1.45, x + 1.45], [y0 + 0.12, y0 + 0.12, y1], color="0.25", lw=0.9)
        _arrow(ax, (x + 1.45, y1), (x + 0.17, y1))
        ax.text(x + 1.52, (y0 + y1) / 2, label, fontsize=7, color="0.25", va="center")
    ax.text(0.1, 6.3, title, ha="left", va="top", fontsize=9)
    return fig
