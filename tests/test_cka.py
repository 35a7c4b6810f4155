"""CKA (issue 18): hand-computed cases, the invariances that define it, an independent Gram-matrix computation,
and minibatch CKA converging to the full one."""
import math

import pytest
import torch

from vitlab.analysis import MinibatchCKA, linear_cka
from vitlab.errors import InputShapeError


def test_hand_computed_cases():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert linear_cka(x, torch.tensor([[1.0], [-1.0], [-1.0], [1.0]])) == pytest.approx(0.0, abs=1e-12)
    # 1-D features: CKA is the squared correlation, here 25^2 / (5 * 129)
    assert linear_cka(x, x**2) == pytest.approx(625 / (5 * 129), rel=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling_and_1_with_itself():
    torch.manual_seed(0)
    x, y = torch.randn(200, 16), torch.randn(200, 8)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotate, scale, shift
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y), rel=1e-6)  # float32 inputs
    assert linear_cka(x, y * 0.01) == pytest.approx(linear_cka(x, y), rel=1e-6)
    assert 0.0 <= linear_cka(x, y) <= 1.0
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)


def test_equals_the_gram_matrix_definition():
    torch.manual_seed(1)
    x, y = torch.randn(50, 7, dtype=torch.float64), torch.randn(50, 5, dtype=torch.float64)
    h = torch.eye(50, dtype=torch.float64) - 1 / 50  # centring matrix
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    assert linear_cka(x, y) == pytest.approx((hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))).item(), rel=1e-10)


def test_minibatch_cka_converges_to_the_full_one():
    torch.manual_seed(2)
    x = torch.randn(6000, 6)
    y = x @ torch.randn(6, 4) + 0.8 * torch.randn(6000, 4)
    full = linear_cka(x, y)
    cka = MinibatchCKA()
    for start in range(0, 6000, 300):
        cka.update(x[start:start + 300], y[start:start + 300])
    assert cka.batches == 20
    assert cka.value() == pytest.approx(full, abs=0.02)
    same = MinibatchCKA()
    for start in range(0, 6000, 300):
        same.update(x[start:start + 300], x[start:start + 300] * 2)
    assert same.value() == pytest.approx(1.0, abs=1e-9)


def test_bad_inputs_are_typed_errors():
    with pytest.raises(InputShapeError, match="same examples"):
        linear_cka(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(InputShapeError, match="at least 2"):
        linear_cka(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(InputShapeError, match="flatten"):
        linear_cka(torch.randn(10), torch.randn(10))
    with pytest.raises(InputShapeError, match="before any update"):
        MinibatchCKA().value()
    with pytest.raises(InputShapeError, match="at least 4"):
        MinibatchCKA().update(torch.randn(3, 2), torch.randn(3, 2))
