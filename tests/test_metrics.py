"""vitlab.metrics: confusion matrix, per-class accuracy, most confident mistakes."""

import math

import numpy as np
import pytest
import torch

from vitlab.errors import ConfigError, InputShapeError
from vitlab.metrics import confusion_matrix, most_confused, per_class_accuracy, top_mistakes


def test_confusion_matrix_hand_computed_rows_are_true_classes():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.tensor([[1, 1, 0],
                             [0, 1, 0],
                             [1, 0, 2]])
    confusion = confusion_matrix(predictions, labels, num_classes=3)
    assert confusion.dtype == torch.int64
    torch.testing.assert_close(confusion, expected)


def test_confusion_matrix_matches_numpy_add_at():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 7, (500,), generator=gen)
    predictions = torch.randint(0, 7, (500,), generator=gen)
    expected = np.zeros((7, 7), dtype=np.int64)
    np.add.at(expected, (labels.numpy(), predictions.numpy()), 1)
    confusion = confusion_matrix(predictions, labels, num_classes=7)
    np.testing.assert_array_equal(confusion.numpy(), expected)
    assert confusion.sum().item() == 500


def test_confusion_matrix_keeps_classes_that_never_occur():
    confusion = confusion_matrix(torch.tensor([1]), torch.tensor([1]), num_classes=4)
    assert confusion.shape == (4, 4)
    assert confusion[1, 1] == 1 and confusion.sum() == 1


def test_confusion_matrix_of_empty_input_is_all_zero():
    empty = torch.zeros(0, dtype=torch.long)
    torch.testing.assert_close(confusion_matrix(empty, empty, 3), torch.zeros(3, 3, dtype=torch.int64))


@pytest.mark.parametrize("predictions, labels", [
    (torch.tensor([0, 3]), torch.tensor([0, 1])),   # prediction out of range
    (torch.tensor([0, 1]), torch.tensor([-1, 1])),  # negative label
])
def test_confusion_matrix_rejects_class_index_out_of_range(predictions, labels):
    with pytest.raises(InputShapeError, match="outside"):
        confusion_matrix(predictions, labels, num_classes=3)


def test_confusion_matrix_rejects_bad_shapes_and_dtypes():
    with pytest.raises(InputShapeError, match="same length"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(InputShapeError, match="argmax"):
        confusion_matrix(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), 3)
    with pytest.raises(InputShapeError, match="integer"):
        confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3)
    with pytest.raises(ConfigError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


def test_per_class_accuracy_hand_computed():
    confusion = torch.tensor([[1, 1, 0],
                              [0, 1, 0],
                              [1, 0, 2]])
    torch.testing.assert_close(per_class_accuracy(confusion), torch.tensor([0.5, 1.0, 2 / 3]))


def test_per_class_accuracy_matches_python_loop():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 5, (300,), generator=gen)
    predictions = torch.where(torch.rand(300, generator=gen) < 0.6, labels,
                              torch.randint(0, 5, (300,), generator=gen))
    accuracy = per_class_accuracy(confusion_matrix(predictions, labels, 5))
    for c in range(5):
        in_class = [i for i in range(300) if labels[i] == c]
        expected = sum(int(predictions[i] == c) for i in in_class) / len(in_class)
        assert math.isclose(accuracy[c].item(), expected, rel_tol=1e-6)


def test_per_class_accuracy_is_nan_for_a_class_with_no_images():
    accuracy = per_class_accuracy(torch.tensor([[2, 0], [0, 0]]))
    assert accuracy[0] == 1.0 and torch.isnan(accuracy[1])


def test_per_class_accuracy_rejects_non_square_input():
    with pytest.raises(InputShapeError, match="square"):
        per_class_accuracy(torch.zeros(3, 4, dtype=torch.long))


def test_most_confused_hand_computed_skips_diagonal_and_breaks_ties_row_major():
    confusion = torch.tensor([[9, 1, 4],
                              [0, 9, 2],
                              [4, 0, 9]])
    expected = torch.tensor([[0, 2, 4],
                             [2, 0, 4],
                             [1, 2, 2]])
    torch.testing.assert_close(most_confused(confusion, k=3), expected)
    assert most_confused(confusion, k=100).shape == (6, 3)  # K * (K - 1) off-diagonal cells


def test_most_confused_matches_python_sort():
    gen = torch.Generator().manual_seed(4)
    confusion = torch.randint(0, 50, (6, 6), generator=gen)
    cells = [(-confusion[t, p].item(), t, p) for t in range(6) for p in range(6) if t != p]
    expected = [[t, p, -neg] for neg, t, p in sorted(cells)[:8]]
    assert most_confused(confusion, k=8).tolist() == expected


def test_most_confused_rejects_bad_input():
    with pytest.raises(InputShapeError, match="square"):
        most_confused(torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(ConfigError, match="k must"):
        most_confused(torch.zeros(2, 2, dtype=torch.long), 1.5)


def test_top_mistakes_hand_computed_most_confident_first():
    logits = torch.tensor([[5.0, 0.0],    # right
                           [0.0, 1.0],    # wrong, p(pred) = sigmoid(1) ~ 0.73
                           [0.0, 4.0],    # wrong, ~ 0.98
                           [2.0, 0.0],    # right
                           [0.0, 2.5]])   # wrong, ~ 0.92
    labels = torch.tensor([0, 0, 0, 0, 0])
    torch.testing.assert_close(top_mistakes(logits, labels, k=2), torch.tensor([2, 4]))
    torch.testing.assert_close(top_mistakes(logits, labels, k=10), torch.tensor([2, 4, 1]))


def test_top_mistakes_matches_sorting_in_python():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(200, 10, generator=gen) * 3
    labels = torch.randint(0, 10, (200,), generator=gen)
    probs = logits.softmax(1)
    wrong = [(probs[i].max().item(), i) for i in range(200) if probs[i].argmax() != labels[i]]
    expected = [i for _, i in sorted(wrong, key=lambda t: -t[0])[:15]]
    assert top_mistakes(logits, labels, k=15).tolist() == expected


def test_top_mistakes_is_empty_when_everything_is_right():
    logits = torch.eye(4) * 3
    assert top_mistakes(logits, torch.arange(4), k=5).numel() == 0


def test_top_mistakes_rejects_bad_input():
    with pytest.raises(InputShapeError, match=r"\(N, K\)"):
        top_mistakes(torch.randn(4), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(InputShapeError, match="rows"):
        top_mistakes(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), 2)
    with pytest.raises(InputShapeError, match="outside"):
        top_mistakes(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), 2)
    with pytest.raises(ConfigError, match="k must"):
        top_mistakes(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), -1)
