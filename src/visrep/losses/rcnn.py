"""Fast R-CNN's multi-task loss (Girshick 2015, eq. 1; seed 001, eq. 15).

For each sampled RoI with true class ``u`` (0 = background) and box target ``v``:

    L(p, u, t^u, v) = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)

with ``L_cls = -log p_u`` (softmax over ``K + 1`` classes) and ``L_loc`` summed over the four
box coordinates ``(x, y, w, h)`` of the regressor of the true class, ``t^u``:

- ``smooth_l1`` (the paper's eq. 2-3): ``0.5 x^2 / beta`` if ``|x| < beta`` else
  ``|x| - 0.5 beta``, with ``x = t^u_i - v_i`` (paper: ``beta = 1``), robust to outliers;
- ``squared``: the seed's squared error ``sum_i (t^u_i - v_i)^2`` (seed 001 writes it on the
  region's corner coordinates; here on the same targets as smooth L1).

Background RoIs (``u = 0``) add no box loss. As in the authors' Caffe code both terms are
averaged over the ``R`` RoIs of the mini-batch (the box term is divided by ``R``, not by the
number of foreground RoIs). Targets ``v`` are the box offsets of the paper's appendix-C
parametrisation (R-CNN), normalised (by default with weights 10, 10, 5, 5, the inverse of the
code's target standard deviations 0.1, 0.1, 0.2, 0.2), so ``lambda = 1`` balances the terms.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = ["BoxLoss", "FastRCNNLoss", "box_regression_loss", "fast_rcnn_loss", "smooth_l1"]

BoxLoss = Literal["smooth_l1", "squared"]


def smooth_l1(x: Tensor, beta: float = 1.0) -> Tensor:
    """Elementwise smooth L1 (Girshick 2015, eq. 3; ``beta = 1`` in the paper).

    >>> smooth_l1(torch.tensor([0.5, -2.0])).tolist()
    [0.125, 1.5]
    """
    if beta <= 0:
        return x.abs()
    ax = x.abs()
    return torch.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def box_regression_loss(diff: Tensor, box_loss: BoxLoss = "smooth_l1", beta: float = 1.0) -> Tensor:
    """``L_loc`` per RoI from the differences ``t^u - v``: ``(R, 4) -> (R,)``."""
    if box_loss == "smooth_l1":
        return smooth_l1(diff, beta).sum(-1)
    if box_loss == "squared":
        return (diff * diff).sum(-1)
    raise ConfigError(f"box_loss must be 'smooth_l1' or 'squared', got {box_loss!r}")


def _check(logits: Tensor, deltas: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    if logits.dim() != 2:
        raise ShapeError(f"class_logits must be (R, K + 1), got {tuple(logits.shape)}")
    r, k1 = logits.shape
    if deltas.dim() == 2 and deltas.shape == (r, 4 * k1):
        deltas = deltas.view(r, k1, 4)
    if deltas.shape != (r, k1, 4):
        raise ShapeError(
            f"box_deltas must be (R, K + 1, 4) or (R, 4 (K + 1)) = {(r, k1, 4)}, got "
            f"{tuple(deltas.shape)}"
        )
    if labels.shape != (r,) or targets.shape != (r, 4):
        raise ShapeError(
            f"labels must be (R,) = ({r},) and box_targets (R, 4), got {tuple(labels.shape)} "
            f"and {tuple(targets.shape)}"
        )
    return deltas


def fast_rcnn_loss(
    class_logits: Tensor,
    box_deltas: Tensor,
    labels: Tensor,
    box_targets: Tensor,
    box_loss: BoxLoss = "smooth_l1",
    box_weight: float = 1.0,
    beta: float = 1.0,
) -> dict[str, Tensor]:
    """Eq. 15 of seed 001 (eq. 1 of Fast R-CNN), averaged over the ``R`` RoIs.

    Args:
        class_logits: ``(R, K + 1)`` scores, class 0 the background.
        box_deltas: per-class box offsets ``(R, K + 1, 4)`` (or flat ``(R, 4 (K + 1))``).
        labels: ``(R,)`` int64 true class ``u`` in ``0..K``.
        box_targets: ``(R, 4)`` targets ``v`` (rows of background RoIs are ignored).
        box_loss: ``smooth_l1`` (paper) or ``squared`` (the seed's).
        box_weight: ``lambda`` (paper: 1).
        beta: smooth L1's transition point (paper: 1).

    Returns:
        ``{"loss_classifier": mean -log p_u, "loss_box_reg": lambda * sum_fg L_loc / R}``; with
        no RoIs both are zero (and keep the graph).

    >>> logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    >>> deltas = torch.zeros(2, 2, 4)
    >>> out = fast_rcnn_loss(logits, deltas, torch.tensor([1, 0]), torch.tensor([[0.5, 0, 0, 0]] * 2))
    >>> round(out["loss_classifier"].item(), 4), out["loss_box_reg"].item()
    (0.6931, 0.0625)
    """
    deltas = _check(class_logits, box_deltas, labels, box_targets)
    r = class_logits.shape[0]
    if r == 0:
        zero = class_logits.sum() * 0 + deltas.sum() * 0
        return {"loss_classifier": zero, "loss_box_reg": zero.clone()}
    labels = labels.long()
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).squeeze(1)
    chosen = deltas[fg, labels[fg]]  # t^u of each foreground RoI, (F, 4)
    per_roi = box_regression_loss(chosen - box_targets[fg], box_loss, beta)
    loss_box = box_weight * per_roi.sum() / r
    if fg.numel() == 0:
        loss_box = loss_box + deltas.sum() * 0  # keep the regressor in the graph
    return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}


class FastRCNNLoss(nn.Module):
    """:func:`fast_rcnn_loss` with its options (``box_loss``, ``box_weight`` = lambda,
    ``beta``)."""

    def __init__(
        self, box_loss: BoxLoss = "smooth_l1", box_weight: float = 1.0, beta: float = 1.0
    ) -> None:
        super().__init__()
        if box_loss not in ("smooth_l1", "squared"):
            raise ConfigError(f"box_loss must be 'smooth_l1' or 'squared', got {box_loss!r}")
        if box_weight < 0 or beta < 0:
            raise ConfigError(
                f"box_weight (lambda) and beta must be >= 0, got {box_weight} and {beta}"
            )
        self.box_loss: BoxLoss = box_loss
        self.box_weight = float(box_weight)
        self.beta = float(beta)

    def forward(
        self, class_logits: Tensor, box_deltas: Tensor, labels: Tensor, box_targets: Tensor
    ) -> dict[str, Tensor]:
        return fast_rcnn_loss(
            class_logits, box_deltas, labels, box_targets, self.box_loss, self.box_weight, self.beta
        )

    def extra_repr(self) -> str:
        return f"box_loss={self.box_loss!r}, box_weight={self.box_weight}, beta={self.beta}"
