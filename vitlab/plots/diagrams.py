"""Diagrams of what the lessons build, drawn with matplotlib: boxes, arrows and the tensor shapes.

Each function takes the model's config (or none, for the paper's ViT-B/16) and writes the real numbers
into the picture, so the diagram of a lesson's model is that model's, not a generic one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from ..config import ViTConfig


__all__ = ["plot_vit_overview", "plot_prenorm_block", "plot_mae_overview", "plot_clip_overview"]

DPI = 90
_COLOURS = {"data": "#e8eef7", "embed": "#fde9c9", "encoder": "#dcefdc", "head": "#f6d5d5", "norm": "#eeeeee",
            "attention": "#d9e6f5", "mlp": "#f3e3f3", "mask": "#cfcfcf"}


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


def plot_mae_overview(cfg=None, title: str = "A masked autoencoder (He et al., 2022)") -> Figure:
    """MAE as a data flow: patchify, mask most patches, encode the visible ones, add mask tokens, decode,
    and take the loss on the hidden patches only, with the drawn model's sizes.

    Args:
        cfg: a :class:`vitlab.models.mae.MAEConfig` (default: ``MAEConfig()``, lesson 11's model).
        title: the figure's title.
    """
    from ..models.mae import MAEConfig

    cfg = cfg or MAEConfig()
    n = (cfg.img_size // cfg.patch_size) ** 2
    hidden = round(n * cfg.mask_ratio)
    visible = n - hidden
    fig, ax = _canvas(11.0, 3.4, (0, 11.0), (0, 3.4))
    # the patch row: visible ones coloured, hidden ones grey
    shown = 8
    keep = set(range(0, shown, max(1, round(1 / (1 - cfg.mask_ratio)))))
    for k in range(shown):
        ax.add_patch(Rectangle((0.3 + 0.22 * k, 1.45), 0.18, 0.3, edgecolor="0.3", lw=0.7,
                               facecolor=_COLOURS["data"] if k in keep else _COLOURS["mask"]))
    ax.text(1.15, 2.0, f"{n} patches", ha="center", fontsize=7)
    ax.text(1.15, 1.3, f"hide {cfg.mask_ratio:.0%}: {hidden} hidden,\n{visible} visible (random per image)",
            ha="center", va="top", fontsize=7)
    _arrow(ax, (2.15, 1.6), (2.6, 1.6), "visible")
    _box(ax, 3.45, 1.6, 1.5, 1.15, f"encoder (a ViT)\n{cfg.depth} blocks, D={cfg.dim}\nsees {visible} tokens",
         "encoder")
    _arrow(ax, (4.2, 1.6), (4.65, 1.6))
    _box(ax, 5.55, 1.6, 1.55, 1.15, f"+ {hidden} mask tokens\nback in place,\n+ positions, D={cfg.decoder_dim}",
         "embed")
    _arrow(ax, (6.33, 1.6), (6.78, 1.6))
    _box(ax, 7.6, 1.6, 1.45, 1.15, f"decoder\n{cfg.decoder_depth} blocks,\nD={cfg.decoder_dim}", "attention")
    _arrow(ax, (8.33, 1.6), (8.78, 1.6), "pixels")
    target = "normalised pixels" if cfg.norm_pix_loss else "pixels"
    _box(ax, 9.75, 1.6, 1.6, 1.15, f"loss: mean squared\nerror on the {hidden}\nhidden patches'\n{target}", "head")
    ax.text(5.5, 3.25, title, ha="center", va="top", fontsize=10)
    ax.text(5.5, 2.8, "after pre-training the decoder is thrown away; the encoder is an ordinary ViT",
            ha="center", va="top", fontsize=7, color="0.35")
    return fig


def plot_clip_overview(cfg=None, batch: int = 4, title: str = "CLIP: two encoders, one space (Radford et al., 2021)"
                       ) -> Figure:
    """CLIP's two towers: images through a ViT, captions through a text Transformer, both projected to
    one embedding space, and the batch's image-caption similarity matrix whose diagonal is the matching pairs.

    Args:
        cfg: a :class:`vitlab.models.clip.CLIPConfig` (default: ``CLIPConfig()``, lesson 12's model).
        batch: how many pairs the drawn similarity matrix has.
        title: the figure's title.
    """
    from ..models.clip import CLIPConfig

    cfg = cfg or CLIPConfig()
    fig, ax = _canvas(10.0, 4.2, (0, 10.0), (0, 4.2))
    rows = {"image": 2.95, "text": 1.05}
    _box(ax, 0.95, rows["image"], 1.5, 0.7, "images\n" + f"{cfg.in_chans}x{cfg.img_size}x{cfg.img_size}", "data")
    _box(ax, 0.95, rows["text"], 1.5, 0.7, f"captions\n{cfg.context_length} token ids", "data")
    _box(ax, 3.2, rows["image"], 1.9, 0.85, f"image encoder (a ViT)\n{cfg.image_depth} blocks, D={cfg.image_dim}\n"
         f"{'mean of patch tokens' if cfg.image_pool == 'gap' else 'CLS token'}", "encoder")
    _box(ax, 3.2, rows["text"], 1.9, 0.85, f"text encoder\n{cfg.text_depth} blocks, D={cfg.text_dim}\n"
         "output at [EOS]", "encoder")
    for key in rows:
        _arrow(ax, (1.72, rows[key]), (2.22, rows[key]))
        _arrow(ax, (4.17, rows[key]), (4.62, rows[key]), "project")
        _box(ax, 5.35, rows[key], 1.3, 0.6, f"{key} embedding\nE={cfg.embed_dim}, unit length", "embed", fontsize=7)
        _arrow(ax, (6.02, rows[key]), (6.9, 2.0 + (0.3 if key == "image" else -0.3)))
    # the similarity matrix: rows images, columns captions, the diagonal the true pairs
    size, left, bottom = 0.42, 7.0, 2.0 - batch * 0.42 / 2
    for i in range(batch):
        for j in range(batch):
            ax.add_patch(Rectangle((left + j * size, bottom + (batch - 1 - i) * size), size, size, edgecolor="0.4",
                                   lw=0.6, facecolor=_COLOURS["head"] if i == j else "white"))
    ax.text(left + batch * size / 2, bottom - 0.1, "scale x cosine similarity\nimages (rows) x captions (columns)",
            ha="center", va="top", fontsize=7)
    ax.text(left + batch * size + 0.12, 2.0, "cross-entropy\nboth ways:\nthe diagonal\nis the answer",
            va="center", fontsize=7)
    ax.text(5.0, 4.1, title, ha="center", va="top", fontsize=10)
    return fig
