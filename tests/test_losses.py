"""Loss formulas against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from affectlab.losses import inverse_frequency_weights, masked_bce_with_logits, masked_cross_entropy


def bce(z: float, y: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_masked_bce_averages_only_valid_entries():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    expected = (bce(0.0, 1) + bce(-1.0, 0) + bce(3.0, 1)) / 3
    assert masked_bce_with_logits(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)


def test_masked_bce_label_weights_scale_each_column():
    logits = torch.tensor([[0.5, -0.5]])
    targets = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    weights = torch.tensor([2.0, 0.5])
    expected = (2.0 * bce(0.5, 1) + 0.5 * bce(-0.5, 1)) / 2
    got = masked_bce_with_logits(logits, targets, mask, weights).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_masked_bce_all_masked_is_zero_and_differentiable():
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = masked_bce_with_logits(logits, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_inverse_frequency_weights_hand_computed():
    # rates: label 0 → 1/4 (mask hides one row), label 1 → 1/2 ; w ∝ (4, 2) → mean 1 → (4/3, 2/3)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 1], [0, 0]], dtype=torch.bool)
    weights = inverse_frequency_weights(targets, mask)
    assert torch.allclose(weights, torch.tensor([4 / 3, 2 / 3]))


def test_masked_cross_entropy_ignores_invalid_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    targets = torch.tensor([0, 0])
    mask = torch.tensor([True, False])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert masked_cross_entropy(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)
