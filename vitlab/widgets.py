"""ipywidgets explorers for the lessons. Each builds without a display, so tests can drive them.

The figures are rendered to image bytes (JPEG: a photo stays small in the saved widget state) and
shown in an ``ipywidgets.Image``; nothing here needs a running kernel until the widget is displayed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from .errors import InputShapeError
from .patches import patch_grid_size, valid_patch_sizes
from .plots.patches import plot_patch_grid

__all__ = ["PatchSizeExplorer", "patch_size_explorer", "AttentionExplorer", "attention_explorer",
           "figure_to_bytes"]


def figure_to_bytes(fig: Figure, image_format: str = "jpeg") -> bytes:
    """A matplotlib Figure as encoded image bytes (for an ``ipywidgets.Image``).

    Args:
        fig: the figure.
        image_format: 'jpeg' or 'png'.
    Returns:
        the encoded image.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format)
    return buffer.getvalue()


class PatchSizeExplorer(widgets.VBox):
    """A slider over patch sizes, the image with its patch grid, and the token counts.

    Attributes:
        slider: the ``SelectionSlider`` of patch sizes; set ``slider.value`` to change it from code.
        info: an ``HTML`` widget with N = (H/P) x (W/P) and the sequence length with CLS.
        picture: the ``Image`` widget showing the grid figure (JPEG bytes in ``picture.value``).
    """

    def __init__(self, image: torch.Tensor, patch_sizes: Sequence[int], initial: int) -> None:
        self.image = image
        self.slider = widgets.SelectionSlider(options=list(patch_sizes), value=initial,
                                              description="patch P", continuous_update=False)
        self.info = widgets.HTML()
        self.picture = widgets.Image(format="jpeg", layout=widgets.Layout(width="auto"))
        super().__init__(children=[self.slider, self.info, self.picture])
        self.slider.observe(self._on_change, names="value")
        self._render(initial)

    def _on_change(self, change: dict) -> None:
        self._render(change["new"])

    def _render(self, patch_size: int) -> None:
        _, H, W = self.image.shape
        h, w = patch_grid_size(H, patch_size), patch_grid_size(W, patch_size)
        tokens = h * w
        self.info.value = (
            f"P = {patch_size}: {h} x {w} = <b>{tokens} patch tokens</b> of {self.image.shape[0]}"
            f"&times;{patch_size}&times;{patch_size} = {self.image.shape[0] * patch_size ** 2} numbers; "
            f"with CLS the sequence has <b>{tokens + 1} tokens</b>, so self-attention compares "
            f"{(tokens + 1) ** 2:,} pairs."
        )
        self.picture.value = figure_to_bytes(plot_patch_grid(self.image, patch_size))


def patch_size_explorer(image: torch.Tensor, patch_sizes: "Sequence[int] | None" = None,
                        initial: "int | None" = None) -> PatchSizeExplorer:
    """A slider over the patch sizes that tile ``image``, redrawing its patch grid and token counts.

    Args:
        image: (C, H, W) tensor (uint8 or float), e.g. ``vitlab.data.load_photo('chelsea', size=224)``.
        patch_sizes: the sizes to offer; default the divisors of the side (H = W) that give at most
            56 patches per side (224 -> 4, 7, 8, 14, 16, 28, 32, 56, 112, 224).
        initial: the starting patch size; default 16 if offered, else the middle one.
    Returns:
        the widget; display it in a notebook (it is also usable without a display, e.g. in tests).
    Raises:
        InputShapeError: for a tensor that is not one (C, H, W) image, or a patch size that does not
            tile it.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputShapeError(f"patch_size_explorer expects one image (C, H, W); got {shape}.")
    _, H, W = image.shape
    if patch_sizes is None:
        if H != W:
            raise InputShapeError(f"The default patch sizes need a square image; got {H}x{W}. "
                                  "Pass patch_sizes=[...] that divide both sides.")
        patch_sizes = [p for p in valid_patch_sizes(H) if H // p <= 56]
    patch_sizes = sorted(set(patch_sizes))
    if not patch_sizes:
        raise InputShapeError("patch_sizes is empty; pass at least one patch size that tiles the image.")
    for p in patch_sizes:  # fail now, not on the first slider move
        patch_grid_size(H, p)
        patch_grid_size(W, p)
    if initial is None:
        initial = 16 if 16 in patch_sizes else patch_sizes[len(patch_sizes) // 2]
    if initial not in patch_sizes:
        raise InputShapeError(f"initial={initial} is not among the patch sizes {patch_sizes}.")
    return PatchSizeExplorer(image, patch_sizes, initial)


class AttentionExplorer:
    """Interactive view of a ViT's attention: choose image, layer, head, query patch, head fusion and
    discard ratio; the attention map of that query and the rollout update.

    The attention of every image is recorded once, up front (``record_attention``), so moving a slider
    only re-plots. ``.widget`` is the ipywidgets box to display; ``.state`` the current choices, and
    ``.current()`` the maps being shown (for tests and for use outside Jupyter).
    """

    def __init__(self, model, images, class_names=None, labels=None, patch_size=None) -> None:
        from .analysis import record_attention
        from .patches import grid_shape
        from .data import preprocess

        if images.ndim != 4 or images.dtype != torch.uint8:
            raise InputShapeError(f"images must be uint8 (B, C, H, W), got {images.dtype} {tuple(images.shape)}.")
        self.images = images
        self.class_names = class_names
        self.labels = labels
        model_was_training = model.training
        model.eval()
        with torch.no_grad(), record_attention(model) as rec:
            logits = model(preprocess(images))
        model.train(model_was_training)
        self.maps = rec.stacked()  # (L, B, H, N, N)
        self.predictions = logits.argmax(dim=1)
        L, B, H, N, _ = self.maps.shape
        self.num_prefix_tokens = getattr(model, "num_prefix_tokens", 1)
        self.grid, _ = grid_shape(N - self.num_prefix_tokens, None)  # square grid, or InputShapeError
        self.patch_size = patch_size or images.shape[-1] // self.grid
        style = {"description_width": "90px"}
        self.image = widgets.IntSlider(0, 0, B - 1, description="image", style=style)
        self.layer = widgets.IntSlider(L, 1, L, description="layer", style=style)
        self.head = widgets.Dropdown(options=["mean"] + list(range(H)), value="mean", description="head", style=style)
        self.query = widgets.IntSlider((N - self.num_prefix_tokens) // 2, -1, N - self.num_prefix_tokens - 1,
                                       description="query patch", style=style)
        self.fusion = widgets.Dropdown(options=["mean", "max", "min"], value="mean", description="head fusion",
                                       style=style)
        self.discard = widgets.FloatSlider(0.0, min=0.0, max=0.95, step=0.05, description="discard ratio",
                                           style=style)
        self.picture = widgets.Image(format="jpeg", layout=widgets.Layout(width="auto"))
        self.label = widgets.HTML()
        controls = [self.image, self.layer, self.head, self.query, self.fusion, self.discard]
        for control in controls:
            control.observe(lambda change: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox([widgets.VBox(controls[:3]), widgets.VBox(controls[3:])]),
                                    self.label, self.picture])
        self.update()

    @property
    def state(self) -> dict:
        return {"image": self.image.value, "layer": self.layer.value, "head": self.head.value,
                "query": self.query.value, "head_fusion": self.fusion.value, "discard_ratio": self.discard.value}

    def current(self):
        """(query attention over the patch grid (h, w), rollout CLS map (h, w)) for the current state."""
        from .analysis import attention_rollout, rollout_to_map

        s, p = self.state, self.num_prefix_tokens
        layer_maps = self.maps[s["layer"] - 1, s["image"]]  # (H, N, N)
        attn = layer_maps.mean(0) if s["head"] == "mean" else layer_maps[s["head"]]  # (N, N)
        row = 0 if s["query"] < 0 else p + s["query"]  # query -1 means the CLS token
        query_map = attn[row, p:].reshape(self.grid, self.grid)
        upto = [m[s["image"]:s["image"] + 1] for m in self.maps[: s["layer"]]]
        rollout = attention_rollout(upto, head_fusion=s["head_fusion"], discard_ratio=s["discard_ratio"],
                                    num_prefix_tokens=p)
        return query_map, rollout_to_map(rollout, self.grid, num_prefix_tokens=p)[0]

    def figure(self):
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        from .plots._axes import to_display

        s = self.state
        query_map, rollout_map = self.current()
        img = to_display(self.images[s["image"]])
        H, W = img.shape[:2]
        fig = Figure(figsize=(7.5, 2.8), dpi=90)
        extent = (-0.5, W - 0.5, H - 0.5, -0.5)
        titles = ["image" + ("" if s["query"] < 0 else " (query patch boxed)"),
                  f"layer {s['layer']}, head {s['head']}: " + ("CLS" if s["query"] < 0 else f"patch {s['query']}"),
                  f"rollout to layer {s['layer']} ({s['head_fusion']}, discard {s['discard_ratio']:.2f})"]
        for i, overlay in enumerate([None, query_map, rollout_map]):
            ax = fig.add_subplot(1, 3, i + 1)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            if overlay is not None:
                ax.imshow(overlay.numpy(), cmap="jet", alpha=0.55, extent=extent)
            if i == 0 and s["query"] >= 0:
                r, c = divmod(s["query"], self.grid)
                ps = self.patch_size
                ax.add_patch(Rectangle((c * ps - 0.5, r * ps - 0.5), ps, ps, fill=False, color="red", lw=1.5))
            ax.set_title(titles[i], fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        return fig

    def update(self) -> None:
        b = self.image.value
        text = f"image {b}: predicted <b>{self._name(self.predictions[b].item())}</b>"
        if self.labels is not None:
            text += f", true <b>{self._name(int(self.labels[b]))}</b>"
        self.label.value = text
        self.picture.value = figure_to_bytes(self.figure())

    def _name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)


def attention_explorer(model, images, class_names=None, labels=None):
    """An ipywidgets explorer of a ViT's attention and rollout (see :class:`AttentionExplorer`).

    Args:
        model: vitlab ViT or timm VisionTransformer.
        images: uint8 (B, C, H, W) images (preprocessed inside with ``vitlab.data.preprocess``).
        class_names: names for the predicted / true labels.
        labels: (B,) true labels, shown beside the prediction.
    Returns:
        The explorer; display ``explorer.widget`` (or just the explorer's widget as the cell's last line).
    """
    return AttentionExplorer(model, images, class_names=class_names, labels=labels)
