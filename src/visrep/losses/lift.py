"""LIFT's losses as seed 001 writes them (Yi et al., ECCV 2016, Sec. 4).

* ``L_class(P) = max(0, 1 - y softmax(DET(P)))^2``, ``y = +1`` for patches centred on a
  keypoint, ``-1`` for the others (:func:`lift_class_loss`). ``softmax`` is LIFT's soft
  maximum of the score map, the log-mean-exp ``(1 / s) log mean_x exp(s S(x))`` of the
  authors' code (:func:`soft_max_score`): between the mean (``s -> 0``) and the max
  (``s -> inf``), so every pixel gets a gradient.
* ``L_pair(P1, P2) = ||DESC(G(P1, ...)) - DESC(G(P2, ...))||^2`` and ``L_neg(P1, P3) =
  max(0, 1 - ||DESC(...) - DESC(...)||)^2`` (the global cost's form; the descriptor slide
  writes ``max(0, 1 - d^2)``, the global cost ``max(0, 1 - d)^2``, which is Hadsell et al.'s
  contrastive loss with margin 1): these are exactly twice the same / different terms of
  :func:`~visrep.losses.metric.contrastive_loss`, so they are computed by it, on pairs chosen by
  the shared miners (:mod:`visrep.losses.miners`; ``hard``: per anchor the farthest positive
  and the nearest negative, "hard example mining is very important").
* The orientation loss is ``L_pair`` of the rotated patches (:func:`lift_pair_loss`).
* The single global cost (:func:`lift_global_cost`): ``class_weight L_class + L_pair + L_neg``.

Sums over the training set become means over a batch (the same minimiser, a step size that
does not grow with the batch); ``L_class`` weighs keypoint and non-keypoint patches equally
(half each), as the authors' code does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.losses.metric import contrastive_loss
from visrep.losses.miners import PAIR_MINERS, check_margin

__all__ = [
    "LiftLoss",
    "lift_class_loss",
    "lift_descriptor_losses",
    "lift_global_cost",
    "lift_pair_loss",
    "soft_max_score",
]


def soft_max_score(score: Tensor, strength: float = 10.0) -> Tensor:
    """LIFT's ``softmax`` of score maps ``(B, ..., H, W)`` -> ``(B,)``:
    ``(1 / s) log mean_x exp(s S(x))`` over everything but the batch.

    >>> round(float(soft_max_score(torch.tensor([[0.0, 0.0], [0.0, 1.0]])[None], 1e4)), 3)
    1.0
    """
    if not strength > 0:
        raise ConfigError(f"soft_max_score: strength must be > 0, got {strength}")
    flat = score.flatten(1)
    return (torch.logsumexp(strength * flat, 1) - math.log(flat.shape[1])) / strength


def lift_class_loss(score: Tensor, y: Tensor, strength: float = 10.0) -> Tensor:
    """``L_class``: mean of ``max(0, 1 - y softmax(S))^2`` over the keypoint patches (``y = 1``)
    plus the same mean over the others (``y = -1``), each weighted 1/2.

    Shape: score ``(B, 1, h, w)``, y ``(B,)`` in {-1, +1} -> ``()``.

    >>> s = torch.tensor([0.5, 2.0, -0.5]).view(3, 1, 1, 1)  # one-pixel maps: softmax = value
    >>> float(lift_class_loss(s, torch.tensor([1, 1, -1])))  # (0.25 + 0) / 2 / 2 + 0.25 / 2
    0.1875
    """
    if score.dim() < 2 or y.shape != score.shape[:1]:
        raise ShapeError(
            f"lift_class_loss: score (B, ...) and y (B,) expected, got {tuple(score.shape)} and "
            f"{tuple(y.shape)}"
        )
    yf = y.to(score.dtype)
    per = torch.relu(1 - yf * soft_max_score(score, strength)).pow(2)
    total = score.new_zeros(())
    for side in (yf > 0, yf < 0):
        if bool(side.any()):
            total = total + 0.5 * per[side].mean()
    return total


def lift_pair_loss(d1: Tensor, d2: Tensor) -> Tensor:
    """``L_pair``: mean of ``||d1 - d2||^2`` over matching rows ``(N, D)`` (twice the same-pair
    term of :func:`~visrep.losses.metric.contrastive_loss`)."""
    if d1.shape != d2.shape or d1.dim() != 2:
        raise ShapeError(
            f"lift_pair_loss: two (N, D) expected, got {tuple(d1.shape)}, {tuple(d2.shape)}"
        )
    n = d1.shape[0]
    i = torch.arange(n, device=d1.device)
    return 2 * contrastive_loss(torch.cat([d1, d2]), (i, i + n, torch.ones_like(i)))


def lift_descriptor_losses(
    d1: Tensor, d2: Tensor, d3: Tensor, miner: str = "hard", margin: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``(L_pair, L_neg)`` over the pairs a shared miner picks from ``[d1; d2; d3]``.

    Row ``k`` of ``d1`` and ``d2`` is one scene point (one class); every row of ``d3`` is a
    point of its own. ``L_pair`` is the mean ``d^2`` of the mined positive pairs,
    ``L_neg`` the mean ``max(0, margin - d)^2`` of the mined negative pairs (both twice
    :func:`~visrep.losses.metric.contrastive_loss` on them).

    Shape: ``(N, D)`` each -> two ``()``.
    """
    if not (
        d1.shape == d2.shape and d1.dim() == 2 and d3.dim() == 2 and d3.shape[1] == d1.shape[1]
    ):
        raise ShapeError(
            f"lift_descriptor_losses: (N, D), (N, D), (M, D) expected, got {tuple(d1.shape)}, "
            f"{tuple(d2.shape)}, {tuple(d3.shape)}"
        )
    if miner not in PAIR_MINERS:
        raise ConfigError(f"--model.miner must be one of {sorted(PAIR_MINERS)}, got {miner!r}")
    margin = check_margin(margin, "lift_descriptor_losses")
    n, m = d1.shape[0], d3.shape[0]
    emb = torch.cat([d1, d2, d3])
    ids = torch.arange(n, device=d1.device)
    labels = torch.cat([ids, ids, n + torch.arange(m, device=d1.device)])
    i, j, same = PAIR_MINERS[miner]()(emb, labels)
    pos, neg = same == 1, same == 0
    l_pair = 2 * contrastive_loss(emb, (i[pos], j[pos], same[pos]), margin)
    l_neg = 2 * contrastive_loss(emb, (i[neg], j[neg], same[neg]), margin)
    return l_pair, l_neg


def lift_global_cost(
    score: Tensor,
    y: Tensor,
    d1: Tensor,
    d2: Tensor,
    d3: Tensor,
    class_weight: float = 1.0,
    strength: float = 10.0,
    miner: str = "hard",
    margin: float = 1.0,
) -> dict[str, Tensor]:
    """Seed 001's single global cost: ``class_weight L_class + L_pair + L_neg``, with the
    descriptors ``d = DESC(G(P, softargmax(DET(P))))`` of P1, P2, P3; returns every term and
    ``loss``."""
    l_class = lift_class_loss(score, y, strength)
    l_pair, l_neg = lift_descriptor_losses(d1, d2, d3, miner, margin)
    loss = class_weight * l_class + l_pair + l_neg
    return {"loss": loss, "class": l_class, "pair": l_pair, "neg": l_neg}


class LiftLoss(nn.Module):
    """Module form of :func:`lift_global_cost` (holds its options)."""

    def __init__(
        self,
        class_weight: float = 1.0,
        strength: float = 10.0,
        miner: str = "hard",
        margin: float = 1.0,
    ) -> None:
        super().__init__()
        if miner not in PAIR_MINERS:
            raise ConfigError(f"--model.miner must be one of {sorted(PAIR_MINERS)}, got {miner!r}")
        self.class_weight, self.strength = class_weight, strength
        self.miner, self.margin = miner, check_margin(margin, "LiftLoss")

    def forward(
        self, score: Tensor, y: Tensor, d1: Tensor, d2: Tensor, d3: Tensor
    ) -> dict[str, Tensor]:
        return lift_global_cost(
            score, y, d1, d2, d3, self.class_weight, self.strength, self.miner, self.margin
        )
