"""Fast R-CNN's multi-task loss (eq. 15 of seed 001) on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.losses.rcnn import FastRCNNLoss, box_regression_loss, fast_rcnn_loss, smooth_l1


def test_smooth_l1_hand_values() -> None:
    x = torch.tensor([0.0, 0.5, -0.5, 1.0, -2.0, 3.0])
    # 0.5 x^2 inside (-1, 1), |x| - 0.5 outside
    assert smooth_l1(x).tolist() == [0.0, 0.125, 0.125, 0.5, 1.5, 2.5]
    # beta moves the transition: 0.5 x^2 / beta inside, |x| - beta / 2 outside
    assert torch.allclose(smooth_l1(torch.tensor([0.1, 1.0]), beta=0.5), torch.tensor([0.01, 0.75]))
    # continuous at the transition
    eps = 1e-6
    assert (
        abs(smooth_l1(torch.tensor(1 - eps)).item() - smooth_l1(torch.tensor(1 + eps)).item())
        < 1e-5
    )


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three RoIs, K = 2 object classes (+ background 0): true classes 2, 0 (background), 1."""
    logits = torch.tensor(
        [[0.0, 0.0, math.log(3)], [math.log(4), 0.0, 0.0], [0.0, math.log(2), 0.0]]
    )
    deltas = torch.zeros(3, 3, 4)
    deltas[0, 2] = torch.tensor([0.5, -2.0, 0.0, 1.0])  # the true class's regressor
    deltas[0, 1] = 50.0  # another class's regressor: ignored
    deltas[1] = 100.0  # a background RoI: ignored entirely
    labels = torch.tensor([2, 0, 1])
    targets = torch.tensor([[0.0, 0, 0, 0], [7.0, 7, 7, 7], [0.1, 0, 0, 0]])
    return logits, deltas, labels, targets


def test_eq15_hand_case_smooth_l1() -> None:
    logits, deltas, labels, targets = _case()
    out = fast_rcnn_loss(logits, deltas, labels, targets)
    # -log p_u: p = 3/5, 4/6, 2/4
    cls = (-math.log(0.6) - math.log(4 / 6) - math.log(0.5)) / 3
    # RoI 0: |0.5| -> 0.125, |-2| -> 1.5, 0 -> 0, |1| -> 0.5; RoI 2: 0.5 * 0.1^2 = 0.005
    box = (0.125 + 1.5 + 0.0 + 0.5 + 0.005) / 3
    assert out["loss_classifier"].item() == pytest.approx(cls, rel=1e-6)
    assert out["loss_box_reg"].item() == pytest.approx(box, rel=1e-6)
    weighted = fast_rcnn_loss(logits, deltas, labels, targets, box_weight=2.0)
    assert weighted["loss_box_reg"].item() == pytest.approx(2 * box, rel=1e-6)
    assert weighted["loss_classifier"].item() == pytest.approx(cls, rel=1e-6)


def test_eq15_hand_case_squared() -> None:
    logits, deltas, labels, targets = _case()
    out = fast_rcnn_loss(logits, deltas, labels, targets, box_loss="squared")
    box = (0.25 + 4.0 + 0.0 + 1.0 + 0.01) / 3  # the seed's sum of squared differences
    assert out["loss_box_reg"].item() == pytest.approx(box, rel=1e-6)


def test_flat_deltas_and_module_match_function() -> None:
    logits, deltas, labels, targets = _case()
    ref = fast_rcnn_loss(logits, deltas, labels, targets, "squared", 0.5)
    flat = fast_rcnn_loss(logits, deltas.reshape(3, 12), labels, targets, "squared", 0.5)
    mod = FastRCNNLoss("squared", 0.5)(logits, deltas, labels, targets)
    for k in ref:
        assert torch.equal(ref[k], flat[k]) and torch.equal(ref[k], mod[k])


def test_background_rois_contribute_no_box_loss_or_gradient() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    deltas = torch.randn(4, 3, 4, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long)
    out = fast_rcnn_loss(logits, deltas, labels, torch.randn(4, 4) * 10)
    assert out["loss_box_reg"].item() == 0.0
    (out["loss_classifier"] + out["loss_box_reg"]).backward()
    assert torch.count_nonzero(deltas.grad) == 0
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_box_gradient_reaches_only_the_true_class_regressor() -> None:
    logits, deltas, labels, targets = _case()
    deltas.requires_grad_(True)
    fast_rcnn_loss(logits, deltas, labels, targets)["loss_box_reg"].backward()
    touched = deltas.grad.abs().sum(-1) > 0  # (R, K + 1)
    assert touched.tolist() == [[False, False, True], [False, False, False], [False, True, False]]


def test_no_rois_gives_zero_losses_in_the_graph() -> None:
    logits = torch.zeros(0, 3, requires_grad=True)
    deltas = torch.zeros(0, 12, requires_grad=True)
    out = fast_rcnn_loss(logits, deltas, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    assert out["loss_classifier"].item() == 0 and out["loss_box_reg"].item() == 0
    sum(out.values()).backward()  # still differentiable


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    deltas = torch.randn(5, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 0])
    targets = torch.randn(5, 4, dtype=torch.float64, generator=g) * 0.3

    def total(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(fast_rcnn_loss(a, b, labels, targets).values())

    assert torch.autograd.gradcheck(total, (logits, deltas))


def test_bad_input() -> None:
    logits, deltas, labels, targets = _case()
    with pytest.raises(ShapeError, match="box_deltas"):
        fast_rcnn_loss(logits, deltas[:, :2], labels, targets)
    with pytest.raises(ShapeError, match="labels"):
        fast_rcnn_loss(logits, deltas, labels[:2], targets)
    with pytest.raises(ShapeError, match="class_logits"):
        fast_rcnn_loss(logits[0], deltas, labels, targets)
    with pytest.raises(ConfigError, match="box_loss"):
        box_regression_loss(torch.zeros(1, 4), "l2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="box_loss"):
        FastRCNNLoss("huber")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lambda"):
        FastRCNNLoss(box_weight=-1.0)
