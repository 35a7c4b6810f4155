"""vitlab.plots.training: each plot returns a Figure and rejects inputs it cannot draw."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import vitlab.plots  # noqa: E402
from vitlab.errors import InputShapeError  # noqa: E402
from vitlab.plots.training import (plot_confusion_matrix, plot_history, plot_mistakes,  # noqa: E402
                                   plot_samples)

CLASSES = ("a", "b", "c")


def _history(epochs, with_test=True):
    records = []
    for e in range(1, epochs + 1):
        record = {"epoch": e, "lr": 1e-3, "train_loss": 1.0 / e, "train_accuracy": 0.5 + 0.1 * e, "seconds": 1.0}
        if with_test:
            record.update(test_loss=1.1 / e, test_accuracy=0.45 + 0.1 * e)
        records.append(record)
    return records


def test_plot_functions_are_exported_by_vitlab_plots():
    for name in ("plot_history", "plot_confusion_matrix", "plot_mistakes", "plot_samples"):
        assert getattr(vitlab.plots, name) is globals()[name]


def test_plot_history_draws_train_and_test_curves_for_every_run():
    fig = plot_history({"vit": _history(3), "cnn": _history(2)})
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 4 and len(acc_ax.lines) == 4  # 2 runs x (train, test)
    assert list(acc_ax.lines[1].get_ydata()) == pytest.approx([55.0, 65.0, 75.0])  # vit test, in %


def test_plot_history_without_test_metrics_draws_train_only():
    fig = plot_history({"run": _history(2, with_test=False)})
    assert len(fig.axes[0].lines) == 1


def test_plot_history_rejects_empty_input():
    with pytest.raises(InputShapeError):
        plot_history({})


def test_plot_confusion_matrix_returns_figure_with_class_names():
    confusion = torch.tensor([[5, 1, 0], [0, 6, 0], [2, 0, 4]])
    fig = plot_confusion_matrix(confusion, CLASSES, title="test")
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(CLASSES)


def test_plot_confusion_matrix_rejects_mismatched_names():
    with pytest.raises(InputShapeError, match="class_names"):
        plot_confusion_matrix(torch.eye(3, dtype=torch.long), ("a", "b"))


def test_plot_samples_grid_has_one_titled_panel_per_image():
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    fig = plot_samples(images, torch.tensor([0, 1, 2, 0, 1]), CLASSES, columns=3)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["a", "b", "c", "a", "b"]


def test_plot_samples_accepts_rgb_and_float_images():
    assert isinstance(plot_samples(torch.rand(2, 3, 8, 8), [0, 1], CLASSES), Figure)


def test_plot_mistakes_titles_prediction_truth_and_confidence():
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    fig = plot_mistakes(images, torch.tensor([0, 1]), torch.tensor([2, 0]), CLASSES,
                        confidence=torch.tensor([0.91, 0.5]))
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["c 91%\n(true: a)", "a 50%\n(true: b)"]


def test_image_plots_reject_bad_shapes():
    with pytest.raises(InputShapeError, match=r"\(N, C, H, W\)"):
        plot_samples(torch.zeros(8, 8, dtype=torch.uint8), [0], CLASSES)
    with pytest.raises(InputShapeError, match="one entry per image"):
        plot_mistakes(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), [0], [1, 2], CLASSES)


def test_to_display_is_the_one_conversion_by_hand():
    import numpy as np

    from vitlab.errors import InputShapeError
    from vitlab.plots._axes import to_display

    grey = torch.tensor([[[0, 51], [255, 102]]], dtype=torch.uint8)  # (1, 2, 2)
    np.testing.assert_allclose(to_display(grey), [[0.0, 0.2], [1.0, 0.4]])
    np.testing.assert_allclose(to_display(grey, rgb=True)[1, 0], [1.0, 1.0, 1.0])
    unit = torch.tensor([[0.25, 0.5]])  # already in [0, 1]: kept
    np.testing.assert_allclose(to_display(unit), [[0.25, 0.5]])
    preprocessed = torch.tensor([[[-1.0, 0.0], [0.5, 1.0]]])  # stretched for display only
    np.testing.assert_allclose(to_display(preprocessed), [[0.0, 0.5], [0.75, 1.0]])
    colour = torch.zeros(3, 2, 4, dtype=torch.uint8)
    assert to_display(colour).shape == (2, 4, 3)
    with pytest.raises(InputShapeError, match="images\\[0\\]"):
        to_display(torch.zeros(2, 1, 4, 4))
