"""Metric-learning losses for Siamese towers: the contrastive loss (seed 001; Hadsell, Chopra
and LeCun 2006) and the triplet loss (Schroff et al. 2015, FaceNet; Hermans et al. 2017).

Both read the distances of their pairs / triplets from one :func:`pairwise_distances` matrix of
the batch, so their gradients are finite when two embeddings coincide; the modules mine their
pairs or triplets with a miner of :mod:`visrep.losses.miners` (by name or as a module).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.losses.miners import (
    PAIR_MINERS,
    TRIPLET_MINERS,
    Pairs,
    SemiHardMiner,
    Triplets,
    check_margin,
    pairwise_distances,
    sqrt0,
)


def _check_indices(emb: Tensor, idx: tuple[Tensor, ...], kind: str, who: str) -> None:
    """ShapeError unless ``emb`` is ``(B, D)`` and ``idx`` is three equal ``(n,)`` integer
    tensors of indices in ``[0, B)``."""
    if not isinstance(emb, Tensor) or emb.dim() != 2:
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise ShapeError(f"{who}: embeddings must be (B, D), got {shape}")
    if (
        not isinstance(idx, tuple | list)
        or len(idx) != 3
        or any(not isinstance(t, Tensor) or t.dim() != 1 or t.is_floating_point() for t in idx)
        or len({t.shape[0] for t in idx}) != 1
    ):
        raise ShapeError(f"{who}: {kind} must be three (n,) integer tensors of equal length")
    n = idx[0].shape[0]
    ids = torch.stack(list(idx[:2] if kind == "pairs" else idx))
    if n and bool((ids.min() < 0) | (ids.max() >= emb.shape[0])):
        raise ShapeError(f"{who}: {kind} index outside the batch of {emb.shape[0]} embeddings")
    if n and kind == "pairs" and bool(((idx[2] != 0) & (idx[2] != 1)).any()):
        raise ShapeError(f"{who}: the same flags of pairs must be 0 or 1")


def pair_sq_distances(emb: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """``|emb[i] - emb[j]|^2`` for index vectors ``i, j``: from the differences when there are
    few pairs (at most ``B^2 / 16``: mined pairs and triplets), else gathered from the batch's
    :func:`pairwise_distances` matrix (cheaper for all pairs / all triplets); both are exact
    when two rows nearly coincide.

    Shape: ``(B, D)``, ``(n,)``, ``(n,)`` -> ``(n,)``.
    """
    b = emb.shape[0]
    if 16 * i.numel() <= b * b:
        return (emb[i] - emb[j]).pow(2).sum(1)
    return pairwise_distances(emb, squared=True)[i, j]


def contrastive_loss(emb: Tensor, pairs: Pairs, margin: float = 1.0) -> Tensor:
    """The contrastive loss as seed 001 writes it (Hadsell, Chopra and LeCun 2006,
    "Dimensionality Reduction by Learning an Invariant Mapping", eq. 4): mean over the pairs of
    ``1/2 d^2`` for a same pair and ``1/2 max(0, m - d)^2`` for a different pair, with
    ``d = |f(x_i) - f(x_j)|``.

    Args:
        emb: ``(B, D)`` embeddings.
        pairs: ``(i, j, same)``, three ``(n,)`` int64 tensors, ``same`` in {0, 1}.
        margin: ``m > 0``.

    Returns:
        The scalar loss (0, still attached to ``emb``, when there are no pairs).

    >>> emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.0, 0.2]])
    >>> pairs = (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([1, 0]))
    >>> round(float(contrastive_loss(emb, pairs, margin=1.0)), 4)  # (0.5 * 0.25 + 0.5 * 0.64) / 2
    0.2225
    """
    margin = check_margin(margin, "contrastive_loss")
    _check_indices(emb, pairs, "pairs", "contrastive_loss")
    i, j, same = pairs
    if i.numel() == 0:
        return emb.sum() * 0
    d2 = pair_sq_distances(emb, i, j)
    d = sqrt0(d2)
    s = same.to(emb.dtype)
    per_pair = s * 0.5 * d2 + (1 - s) * 0.5 * torch.relu(margin - d).pow(2)
    return per_pair.mean()


def triplet_loss(
    emb: Tensor, triplets: Triplets, margin: float = 0.2, squared: bool = False
) -> Tensor:
    """The triplet loss: mean over the triplets of ``max(0, d_ap - d_an + m)`` with Euclidean
    ``d`` (Hermans et al. 2017, "In Defense of the Triplet Loss for Person Re-Identification"),
    or with squared distances when ``squared`` (Schroff et al. 2015, FaceNet's loss, averaged
    instead of summed).

    Args:
        emb: ``(B, D)`` embeddings.
        triplets: ``(a, p, n)``, three ``(n,)`` int64 tensors.
        margin: ``m > 0``.
        squared: use ``d^2``.

    Returns:
        The scalar loss (0, still attached to ``emb``, when there are no triplets).

    >>> emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.2]])
    >>> t = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    >>> round(float(triplet_loss(emb, t, margin=0.2)), 4)  # 0.1 - 0.2 + 0.2
    0.1
    """
    margin = check_margin(margin, "triplet_loss")
    _check_indices(emb, triplets, "triplets", "triplet_loss")
    a, p, n = triplets
    if a.numel() == 0:
        return emb.sum() * 0
    d = pair_sq_distances(emb, torch.cat([a, a]), torch.cat([p, n]))
    dap, dan = (d if squared else sqrt0(d)).split(a.numel())
    return torch.relu(dap - dan + margin).mean()


def _miner(miner: str | nn.Module, table: dict[str, type[nn.Module]], who: str) -> nn.Module:
    if isinstance(miner, nn.Module):
        return miner
    if miner not in table:
        raise ConfigError(f"{who}: miner must be one of {sorted(table)} or a module, got {miner!r}")
    return table[miner]()


class ContrastiveLoss(nn.Module):
    """Module form of :func:`contrastive_loss` that mines its pairs.

    Args:
        margin: ``m > 0``.
        miner: a pair miner by name (``"all" | "random" | "hard"``, see
            :data:`~visrep.losses.miners.PAIR_MINERS`) or a module ``(emb, labels) -> pairs``.
    """

    def __init__(self, margin: float = 1.0, miner: str | nn.Module = "all") -> None:
        super().__init__()
        self.margin = check_margin(margin, "ContrastiveLoss")
        self.miner = _miner(miner, PAIR_MINERS, "ContrastiveLoss")

    def forward(
        self, emb: Tensor, labels: Tensor | None = None, pairs: Pairs | None = None
    ) -> Tensor:
        """Loss over ``pairs``, or over the miner's pairs of ``(emb, labels)`` when None."""
        if pairs is None:
            if labels is None:
                raise ConfigError("ContrastiveLoss: give labels (to mine pairs) or pairs")
            pairs = self.miner(emb, labels)
        return contrastive_loss(emb, pairs, self.margin)


class TripletLoss(nn.Module):
    """Module form of :func:`triplet_loss` that mines its triplets.

    Args:
        margin: ``m > 0``.
        squared: use squared distances (FaceNet).
        miner: a triplet miner by name (``"all" | "batch_hard" | "semi_hard" |
            "distance_weighted"``, see :data:`~visrep.losses.miners.TRIPLET_MINERS`; ``semi_hard``
            takes this loss's margin and ``squared``) or a module ``(emb, labels) -> triplets``.
    """

    def __init__(
        self, margin: float = 0.2, squared: bool = False, miner: str | nn.Module = "batch_hard"
    ) -> None:
        super().__init__()
        self.margin = check_margin(margin, "TripletLoss")
        self.squared = squared
        if miner == "semi_hard":
            self.miner: nn.Module = SemiHardMiner(self.margin, squared)
        else:
            self.miner = _miner(miner, TRIPLET_MINERS, "TripletLoss")

    def forward(
        self, emb: Tensor, labels: Tensor | None = None, triplets: Triplets | None = None
    ) -> Tensor:
        """Loss over ``triplets``, or over the miner's triplets of ``(emb, labels)`` when None."""
        if triplets is None:
            if labels is None:
                raise ConfigError("TripletLoss: give labels (to mine triplets) or triplets")
            triplets = self.miner(emb, labels)
        return triplet_loss(emb, triplets, self.margin, self.squared)
