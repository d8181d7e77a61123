"""The category consistent loss behaves as the paper defines it."""
from __future__ import annotations

import pytest
import torch

from ccnet.experiments.losses import (
    CategoryConsistentLoss,
    phi_var,
    segmentation_loss,
)
from ccnet.weights.datasets import IGNORE_INDEX


def loss_fn() -> CategoryConsistentLoss:
    return CategoryConsistentLoss(in_channels=4, dim=2)


def test_phi_var_pieces():
    d = torch.tensor([0.2, 0.5, 1.0, 1.5, 2.5])
    expected = torch.tensor([0.0, 0.0, 0.25, 1.0, 2.5 - 1.5 + 1.0])
    torch.testing.assert_close(phi_var(d, 0.5, 1.5), expected)


def test_zero_var_and_dis_for_tight_well_separated_classes():
    points = torch.tensor([[0.0, 0.0]] * 5 + [[4.0, 0.0]] * 5 + [[0.0, 4.0]] * 3)
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 3)
    terms = loss_fn().terms(points, labels)
    assert terms["var"].item() == 0.0 and terms["dis"].item() == 0.0
    assert terms["reg"].item() == pytest.approx((0 + 4 + 4) / 3)


def test_spread_and_close_classes_are_penalised_and_gradients_fix_them():
    torch.manual_seed(0)
    points = torch.cat([torch.randn(20, 2) * 1.5, torch.randn(20, 2) * 1.5 + torch.tensor([1.0, 0.0])])
    points.requires_grad_(True)
    labels = torch.tensor([0] * 20 + [1] * 20)
    fn = loss_fn()
    terms = fn.terms(points, labels)
    assert terms["var"].item() > 0 and terms["dis"].item() > 0
    (terms["var"] + terms["dis"]).backward()
    moved = (points - 0.05 * points.grad).detach()
    spread = lambda p: sum((p[labels == c] - p[labels == c].mean(0)).norm(dim=1).mean() for c in (0, 1))  # noqa: E731
    gap = lambda p: (p[labels == 0].mean(0) - p[labels == 1].mean(0)).norm()  # noqa: E731
    assert spread(moved) < spread(points.detach())  # members pulled together
    assert gap(moved) > gap(points.detach())  # class means pushed apart


def test_ignore_label_is_excluded():
    points = torch.tensor([[0.0, 0.0], [0.0, 0.0], [50.0, 50.0]])
    with_ignored = loss_fn().terms(points, torch.tensor([0, 0, IGNORE_INDEX]))
    without = loss_fn().terms(points[:2], torch.tensor([0, 0]))
    for key in ("var", "dis", "reg"):
        assert with_ignored[key].item() == without[key].item()
    assert loss_fn().terms(points, torch.full((3,), IGNORE_INDEX))["var"].item() == 0.0


def test_full_module_on_feature_maps_is_differentiable():
    fn = CategoryConsistentLoss(in_channels=8, dim=4)
    features = torch.randn(2, 8, 4, 6, requires_grad=True)
    labels = torch.randint(0, 3, (2, 32, 48))
    labels[0, :8] = IGNORE_INDEX
    loss = fn(features, labels)
    loss.backward()
    assert loss.item() > 0 and features.grad.abs().sum() > 0 and fn.reduce.weight.grad is not None


def test_segmentation_loss_upsamples_and_ignores():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 10.0
    labels = torch.ones(1, 16, 16, dtype=torch.long)
    labels[0, :8] = IGNORE_INDEX
    assert segmentation_loss(logits, labels).item() == pytest.approx(0.0, abs=1e-3)
