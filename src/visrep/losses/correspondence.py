"""The losses of Yi et al. 2018 ("Learning to Find Good Correspondences", CVPR, sec. 3.3).

``L = sum_k alpha L_x(k) + beta L_e(k)`` over the pairs ``k`` of a batch:

* ``L_x``, the classification loss: binary cross-entropy of the logits ``o_i`` against the
  inlier labels ``y_i``, each match weighted by ``gamma_i`` to balance the classes. As the
  authors' code (``Network._build_loss`` in ``network.py`` of
  github.com/vcg-uvic/learned-correspondence-release: ``classif_loss_p * 0.5 / num_pos +
  classif_loss_n * 0.5 / num_neg`` with ``num = relu(sum - 1) + 1``): ``gamma = 0.5 /
  max(n_pos, 1)`` for inliers and ``0.5 / max(n_neg, 1)`` for outliers of the pair, always;
  a pair with one class only thus weighs it by one half too.
* ``L_e``, the regression loss on the geometry ``g(x, w)`` estimated from the weights ``w =
  tanh(ReLU(o))`` by the weighted eight-point algorithm. The default (``squared=True``, the
  authors' code: ``essential_loss`` of the same ``network.py``) is the SQUARED distance
  ``min(||e - e*||^2, ||e + e*||^2)``; the paper's sec. 3.3 writes the plain norms
  ``min(||e - e*||, ||e + e*||)``, which ``squared=False`` gives. ``e`` and ``e*`` are the
  unit-norm vectorised estimate and truth. The homography analogue uses the weighted DLT and
  the unit-norm ``H``.

``alpha = 1``, ``beta = 0.1``; the paper trains with ``beta = 0`` for the first 20k iterations
(the geometry term needs a classifier that already finds some inliers), which
:class:`CorrespondenceLoss` does with ``geometry_after_steps``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.correspondence.geometry import weighted_dlt, weighted_eight_point
from visrep.models.correspondence.network import as_match_tensor, inlier_weights

__all__ = [
    "GEOMETRIES",
    "CorrespondenceLoss",
    "balanced_classification_loss",
    "correspondence_loss",
    "estimate_geometry",
    "geometry_loss",
]

Geometry = Literal["essential", "homography"]
GEOMETRIES: tuple[str, ...] = ("essential", "homography")


def balanced_classification_loss(
    logits: Tensor, labels: Tensor, mask: Tensor | None = None
) -> Tensor:
    """``L_x``: class-balanced binary cross-entropy (Yi et al. 2018, sec. 3.3), mean over pairs:
    ``0.5 mean_inliers BCE + 0.5 mean_outliers BCE`` per pair, an empty class counting 0 (the
    authors' ``0.5 / max(num_pos, 1)`` and ``0.5 / max(num_neg, 1)``; module docstring).

    Args:
        logits: ``(B, N)``; labels: ``(B, N)`` bool (inlier); mask: ``(B, N)`` valid matches.

    >>> lab = torch.tensor([[True, False, False, False]])
    >>> round(float(balanced_classification_loss(torch.zeros(1, 4), lab)), 4)  # log 2
    0.6931
    """
    if logits.dim() != 2 or labels.shape != logits.shape:
        raise ShapeError(
            f"classification loss: logits and labels must both be (B, N), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    valid = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool()
    pos = (labels.bool() & valid).to(logits.dtype)
    neg = (~labels.bool() & valid).to(logits.dtype)
    # -log sigmoid(+-o): the BCE of an inlier / an outlier
    loss_pos = F.softplus(-logits)
    loss_neg = F.softplus(logits)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    per_pair = 0.5 * (
        (loss_pos * pos).sum(1) / n_pos.clamp_min(1) + (loss_neg * neg).sum(1) / n_neg.clamp_min(1)
    )
    return per_pair.mean()


def estimate_geometry(
    matches: Tensor, weights: Tensor, kind: Geometry, mask: Tensor | None = None
) -> Tensor:
    """``E`` (weighted eight-point) or ``H`` (weighted DLT) ``(B, 3, 3)`` of matches ``(B, N,
    4)`` with weights ``(B, N)`` (padded matches get weight 0); unit Frobenius norm."""
    x = as_match_tensor(matches)
    w = weights if mask is None else weights * mask.to(weights.dtype)
    if kind == "essential":
        return weighted_eight_point(x[..., :2], x[..., 2:], w)
    if kind == "homography":
        return weighted_dlt(x[..., :2], x[..., 2:], w)
    raise ConfigError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {kind!r}")


def geometry_loss(estimate: Tensor, truth: Tensor, squared: bool = True) -> Tensor:
    """``L_e`` (Yi et al. 2018, sec. 3.3) of ``(B, 3, 3)`` matrices, each scaled to unit
    Frobenius norm first (both are defined up to scale), mean over the batch.

    ``squared=True`` (default, the authors' code): ``min(||e - e*||^2, ||e + e*||^2)``;
    ``squared=False``: the plain norms ``min(||e - e*||, ||e + e*||)`` as the paper writes.

    >>> E = torch.eye(3)[None]
    >>> round(float(geometry_loss(-2 * E, E)), 4), round(float(geometry_loss(E.flip(1), E)), 4)
    (0.0, 1.3333)
    """
    if estimate.shape != truth.shape or estimate.shape[-2:] != (3, 3):
        raise ShapeError(
            f"geometry loss: estimate and truth must both be (B, 3, 3), got "
            f"{tuple(estimate.shape)} and {tuple(truth.shape)}"
        )
    e = estimate.flatten(-2)
    t = truth.to(e.dtype).flatten(-2)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    d = torch.minimum((e - t).square().sum(-1), (e + t).square().sum(-1))
    return (d if squared else d.sqrt()).mean()


def correspondence_loss(
    logits: Tensor,
    labels: Tensor,
    matches: Tensor,
    truth: Tensor,
    kind: Geometry,
    mask: Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.1,
    squared: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``alpha L_x + beta L_e`` and its parts ``{"classification", "geometry"}`` (the
    geometry part is computed only when ``beta > 0``; ``squared`` as :func:`geometry_loss`:
    True, the default, squared norms as the authors' code, False the plain norms)."""
    parts = {"classification": balanced_classification_loss(logits, labels, mask)}
    total = alpha * parts["classification"]
    if beta > 0:
        est = estimate_geometry(matches, inlier_weights(logits), kind, mask)
        parts["geometry"] = geometry_loss(est, truth, squared)
        total = total + beta * parts["geometry"]
    return total, parts


class CorrespondenceLoss(nn.Module):
    """Module form of :func:`correspondence_loss` with the paper's schedule: the geometry term
    (weight ``beta``) counts from step ``geometry_after_steps`` on.

    Args:
        kind: ``essential`` or ``homography``.
        alpha, beta: weights of the classification and geometry terms (1 and 0.1, the paper's).
        geometry_after_steps: training steps with ``beta = 0`` first (20,000 in the paper).
        squared: True (default): squared norms in ``L_e`` as the authors' code; False: the
            plain norms of the paper's equation (:func:`geometry_loss`).
    """

    def __init__(
        self,
        kind: Geometry = "homography",
        alpha: float = 1.0,
        beta: float = 0.1,
        geometry_after_steps: int = 20_000,
        squared: bool = True,
    ) -> None:
        super().__init__()
        if kind not in GEOMETRIES:
            raise ConfigError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {kind!r}")
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ConfigError(f"alpha and beta must be >= 0, not both 0, got {alpha} and {beta}")
        if geometry_after_steps < 0:
            raise ConfigError(f"geometry_after_steps must be >= 0, got {geometry_after_steps}")
        self.kind, self.alpha, self.beta = kind, alpha, beta
        self.geometry_after_steps, self.squared = geometry_after_steps, squared

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        matches: Tensor,
        truth: Tensor,
        mask: Tensor | None = None,
        step: int | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        beta = self.beta if step is None or step >= self.geometry_after_steps else 0.0
        return correspondence_loss(
            logits, labels, matches, truth, self.kind, mask, self.alpha, beta, self.squared
        )
