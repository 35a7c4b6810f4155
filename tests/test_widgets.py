"""vitlab.widgets: explorers build and react without a display."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vitlab import InputShapeError  # noqa: E402
from vitlab.data import load_photo  # noqa: E402
from vitlab.widgets import patch_size_explorer  # noqa: E402

JPEG_MAGIC = b"\xff\xd8\xff"


def test_patch_size_explorer_builds_without_display_and_shows_token_counts():
    explorer = patch_size_explorer((torch.rand(3, 32, 32) * 255).to(torch.uint8))
    assert isinstance(explorer, ipywidgets.VBox)
    assert list(explorer.slider.options) == [1, 2, 4, 8, 16, 32]
    assert explorer.slider.value == 16
    assert "4 patch tokens" in explorer.info.value and "5 tokens" in explorer.info.value
    assert bytes(explorer.picture.value).startswith(JPEG_MAGIC)


def test_moving_the_slider_updates_counts_and_picture():
    explorer = patch_size_explorer(torch.randn(1, 28, 28), patch_sizes=[4, 7, 14], initial=7)
    first_picture = bytes(explorer.picture.value)
    assert "16 patch tokens" in explorer.info.value
    explorer.slider.value = 4
    assert "7 x 7 = <b>49 patch tokens</b>" in explorer.info.value
    assert "<b>50 tokens</b>" in explorer.info.value
    assert "2,500 pairs" in explorer.info.value
    assert bytes(explorer.picture.value) != first_picture and bytes(explorer.picture.value).startswith(JPEG_MAGIC)


def test_patch_size_explorer_on_the_photo_offers_the_divisors_of_224():
    explorer = patch_size_explorer(load_photo("chelsea", size=224))
    assert list(explorer.slider.options) == [4, 7, 8, 14, 16, 28, 32, 56, 112, 224]
    assert "14 x 14 = <b>196 patch tokens</b>" in explorer.info.value
    assert "<b>197 tokens</b>" in explorer.info.value


def test_patch_size_explorer_rejects_bad_input():
    with pytest.raises(InputShapeError, match="one image"):
        patch_size_explorer(torch.rand(1, 3, 32, 32))
    with pytest.raises(InputShapeError, match="tile"):
        patch_size_explorer(torch.rand(3, 32, 32), patch_sizes=[5])
    with pytest.raises(InputShapeError, match="initial=3"):
        patch_size_explorer(torch.rand(3, 32, 32), patch_sizes=[4, 8], initial=3)


# ---------------------------------------------------------------- attention explorer (lesson 06)

def test_attention_explorer_builds_and_follows_its_controls():
    import vitlab
    from vitlab.widgets import attention_explorer

    vitlab.seed_everything(0)
    model = vitlab.build_model("fmnist-vit-tiny", depth=2).eval()
    test = vitlab.data.fashion_mnist("test", subset=3)
    explorer = attention_explorer(model, test.images, class_names=test.classes, labels=test.labels)
    assert explorer.maps.shape == (2, 3, 4, 50, 50)
    assert model.fused_attn  # the recorder put the model back
    first = explorer.picture.value
    query_map, rollout_map = explorer.current()
    assert query_map.shape == (7, 7) and rollout_map.shape == (7, 7)
    explorer.layer.value = 1
    explorer.head.value = 2
    explorer.query.value = -1  # the CLS token
    explorer.discard.value = 0.5
    explorer.image.value = 2
    assert explorer.state == {"image": 2, "layer": 1, "head": 2, "query": -1, "head_fusion": "mean",
                              "discard_ratio": 0.5}
    query_map, _ = explorer.current()
    torch.testing.assert_close(query_map.flatten(), explorer.maps[0, 2, 2, 0, 1:])
    assert explorer.picture.value != first
    assert test.classes[int(test.labels[2])] in explorer.label.value


def test_attention_explorer_rejects_float_images():
    import vitlab
    from vitlab.widgets import attention_explorer

    with pytest.raises(InputShapeError, match="uint8"):
        attention_explorer(vitlab.build_model("fmnist-vit-tiny"), torch.rand(2, 1, 28, 28))
