"""Losses on plain tensors: margin-MSE distillation and the InfoNCE temperature schedule."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from souk.training.losses import listwise, margin_mse, temperature_at  # noqa: E402


def test_margin_mse_is_zero_when_the_student_copies_the_teachers_margins():
    pos, neg = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])
    assert float(margin_mse(pos, neg, torch.tensor([2.0, -1.0]))) == 0.0
    assert float(margin_mse(pos, neg, torch.tensor([0.0, 0.0]))) == pytest.approx((4 + 1) / 2)


def test_margin_mse_skips_pairs_the_teacher_did_not_score():
    pos = torch.tensor([3.0, 1.0], requires_grad=True)
    neg = torch.tensor([1.0, 2.0])
    loss = margin_mse(pos, neg, torch.tensor([math.nan, 0.0]))
    assert float(loss) == pytest.approx(1.0)
    loss.backward()
    assert pos.grad.tolist() == [0.0, -2.0]  # only the taught row moves, towards the teacher's margin
    none = margin_mse(pos, neg, torch.tensor([math.nan, math.nan]))
    assert float(none) == 0.0 and none.requires_grad


def test_margin_mse_refuses_shapes_that_do_not_line_up():
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        margin_mse(torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_the_temperature_grows_from_start_to_its_ceiling_and_stays():
    values = [temperature_at(s, 5, 0.02, 0.1) for s in range(8)]
    assert values[0] == pytest.approx(0.02) and values[4] == pytest.approx(0.1) and values[7] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(values[:5], values[1:5]))
    assert temperature_at(0, 1, 0.05, 0.05) == 0.05
    with pytest.raises(ValueError, match="start <= ceiling"):
        temperature_at(0, 5, 0.2, 0.1)


def test_listwise_still_prefers_column_zero():
    assert float(listwise(torch.tensor([[5.0, 0.0]]))) < float(listwise(torch.tensor([[0.0, 5.0]])))
