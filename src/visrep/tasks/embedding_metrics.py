"""Evaluation of an embedding: verification on pairs and retrieval by nearest neighbours.

Verification (face verification's protocol, e.g. LFW, Huang et al. 2007; Taigman et al.,
DeepFace, CVPR 2014): a pair ``(i, j)`` is declared "same" when the Euclidean distance
``d_ij = ||f(x_i) - f(x_j)||_2`` is at most a threshold ``t``. Over all thresholds, with ``P``
positive (same-identity) and ``N`` negative pairs:

    TAR(t) = |{same pairs with d <= t}| / P        (true accept rate, recall)
    FAR(t) = |{different pairs with d <= t}| / N   (false accept rate)

The ROC is ``(FAR(t), TAR(t))`` at every distinct distance (:func:`roc_curve`, the curve
``sklearn.metrics.roc_curve`` gives for the score ``-d``, without dropping points); the AUC is
its trapezoidal area (ties count one half, as the Mann-Whitney statistic); the equal error rate
is where ``FAR = FRR = 1 - TAR`` on the piecewise-linear ROC; ``TAR@FAR=f`` is the largest TAR
of a threshold whose FAR is at most ``f``; the verification accuracy is the best accuracy
``(TP + TN) / (P + N)`` of one threshold on the evaluated pairs (an optimistic number: LFW's
protocol picks the threshold on other folds).

Retrieval (leave-one-out: every sample of a split queries all the others, Euclidean distance):

- ``recall@k`` (Jegou et al. 2011; Oh Song et al., CVPR 2016, "Recall@K"): the fraction of
  queries with at least one sample of their class among their ``k`` nearest neighbours;
- ``mAP@R`` (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020, Sec. 3.2): for a
  query with ``R`` other samples of its class, ``AP@R = 1/R sum_{i=1}^{R} P(i) rel(i)``, where
  ``rel(i)`` is 1 when the ``i``-th nearest neighbour has the query's class and ``P(i)`` is the
  precision of the ``i`` nearest; averaged over the queries.

Queries whose class has no other sample count in neither, as in pytorch-metric-learning's
``AccuracyCalculator`` (``recall@1`` is its ``precision_at_1``). Everything is vectorised over
pairs and over chunks of queries (memory ``chunk x N``; the neighbours are
:func:`visrep.utils.embedding.nearest_indices`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from visrep.errors import DataError, ShapeError
from visrep.utils.embedding import nearest_indices

__all__ = [
    "best_accuracy",
    "equal_error_rate",
    "far_key",
    "pair_distances",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "split_pairs",
    "tar_at_far",
    "verification_metrics",
]


def far_key(far: float) -> str:
    """The metric-key spelling of a FAR: ``1e-2`` for 0.01, ``5e-3``, ``0.15`` otherwise.

    >>> far_key(0.01), far_key(0.001), far_key(0.1), far_key(0.005), far_key(0.15)
    ('1e-2', '1e-3', '1e-1', '5e-3', '0.15')
    """
    mantissa, exponent = f"{far:e}".split("e")
    m = mantissa.rstrip("0").rstrip(".")
    if "." not in m and float(f"{m}e{exponent}") == far:
        return f"{m}e{int(exponent)}"
    return f"{far:g}"


def _check_embeddings(emb: Tensor, labels: Tensor | None = None) -> None:
    if emb.dim() != 2:
        raise ShapeError(f"embeddings must be (N, D), got {tuple(emb.shape)}")
    if labels is not None and (labels.dim() != 1 or len(labels) != len(emb)):
        raise ShapeError(
            f"labels must be (N,) with N = {len(emb)} embeddings, got {tuple(labels.shape)}"
        )


# -- pairs -----------------------------------------------------------------------------------------
def split_pairs(labels: Tensor, max_pairs: int | None = None, seed: int = 0) -> Tensor:
    """The pairs of a split: every ``i < j`` pair, or a seeded uniform sample of ``max_pairs``.

    Args:
        labels: ``(N,)`` class of each sample.
        max_pairs: when ``N (N - 1) / 2`` exceeds it, draw this many pairs uniformly (with
            replacement; duplicates are rare when ``max_pairs`` is far below the number of
            pairs) instead of enumerating them all.
        seed: seed of the sample.

    Returns:
        ``(n, 3)`` int64 rows ``(i, j, same)``.
    """
    n = len(labels)
    if n < 2:
        raise DataError(f"verification needs at least 2 samples, got {n}")
    dev = labels.device
    if max_pairs is None or n * (n - 1) // 2 <= max_pairs:
        i, j = torch.triu_indices(n, n, 1, device=dev)
    else:
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(n, (max_pairs,), generator=g)
        j = torch.randint(n - 1, (max_pairs,), generator=g)
        j = j + (j >= i)  # uniform over j != i
        i, j = torch.minimum(i, j).to(dev), torch.maximum(i, j).to(dev)
    same = (labels[i] == labels[j]).long()
    return torch.stack([i, j, same], 1)


def pair_distances(emb: Tensor, pairs: Tensor, chunk: int = 65536) -> Tensor:
    """Euclidean distances ``||e_i - e_j||_2`` of the rows ``(i, j, ...)`` of ``pairs``, ``(n,)``."""
    _check_embeddings(emb)
    if pairs.dim() != 2 or pairs.shape[1] < 2:
        raise ShapeError(f"pairs must be (n, 3) rows (i, j, same), got {tuple(pairs.shape)}")
    if len(pairs) and (pairs[:, :2].min() < 0 or pairs[:, :2].max() >= len(emb)):
        raise DataError(
            f"pairs index samples 0..{int(pairs[:, :2].max())}, but there are {len(emb)}"
        )
    return torch.cat(
        [(emb[p[:, 0]] - emb[p[:, 1]]).norm(dim=1) for p in pairs.split(chunk)]
        or [emb.new_zeros(0)]
    )


# -- verification ----------------------------------------------------------------------------------
def roc_curve(distances: Tensor, same: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ROC of the rule "same when ``d <= t``" at every distinct distance ``t``.

    Equal to ``sklearn.metrics.roc_curve(same, -distances, drop_intermediate=False)`` with the
    thresholds negated: the first point is ``(0, 0)`` at ``t = -inf``.

    Args:
        distances: ``(n,)`` pair distances.
        same: ``(n,)`` 1 for same-class pairs, 0 otherwise.

    Returns:
        ``(far, tar, thresholds)``, float64, FAR and TAR non-decreasing.

    Raises:
        DataError: no positive or no negative pair.
    """
    d = distances.detach().double().flatten().cpu()
    s = same.detach().flatten().cpu().double()
    if d.shape != s.shape:
        raise ShapeError(f"distances {tuple(d.shape)} and same {tuple(s.shape)} must match")
    pos = float(s.sum())
    neg = len(s) - pos
    if pos == 0 or neg == 0:
        raise DataError(
            f"verification needs same and different pairs, got {int(pos)} same and "
            f"{int(neg)} different"
        )
    order = torch.argsort(d, stable=True)
    d, s = d[order], s[order]
    last = torch.ones(len(d), dtype=torch.bool)
    last[:-1] = d[1:] != d[:-1]  # the last pair of each distinct distance
    tp, fp = s.cumsum(0)[last], (1 - s).cumsum(0)[last]
    zero = torch.zeros(1, dtype=torch.float64)
    far = torch.cat([zero, fp / neg])
    tar = torch.cat([zero, tp / pos])
    thresholds = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), d[last]])
    return far, tar, thresholds


def roc_auc(far: Tensor, tar: Tensor) -> float:
    """The trapezoidal area under the ROC ``(far, tar)`` (equals ``roc_auc_score``)."""
    return float(torch.trapezoid(tar, far))


def equal_error_rate(far: Tensor, tar: Tensor) -> float:
    """The error rate where ``FAR = FRR = 1 - TAR``, linearly interpolated on the ROC.

    ``FAR - FRR`` is non-decreasing along the curve, from -1 at ``(0, 0)`` to 1 at ``(1, 1)``;
    the EER is FAR where it crosses 0.
    """
    f = far - (1 - tar)
    i = int(torch.searchsorted(f, torch.zeros(1, dtype=f.dtype)))  # first f >= 0 (i >= 1)
    w = f[i - 1] / (f[i - 1] - f[i])
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def tar_at_far(far: Tensor, tar: Tensor, target: float) -> float:
    """The largest TAR of a threshold whose FAR is at most ``target`` (no interpolation)."""
    i = int(
        torch.searchsorted(far, torch.tensor([target * (1 + 1e-9)], dtype=far.dtype), right=True)
    )
    return float(tar[max(i - 1, 0)])


def best_accuracy(
    far: Tensor, tar: Tensor, thresholds: Tensor, positives: int, negatives: int
) -> tuple[float, float]:
    """The best accuracy ``(TP + TN) / (P + N)`` of one threshold, and that threshold."""
    acc = (tar * positives + (1 - far) * negatives) / (positives + negatives)
    i = int(acc.argmax())
    return float(acc[i]), float(thresholds[i])


def verification_metrics(
    distances: Tensor, same: Tensor, fars: Sequence[float] = (1e-3, 1e-2, 1e-1)
) -> dict[str, float]:
    """AUC, EER, TAR at each FAR, best accuracy and its threshold of pair distances.

    Returns:
        ``{"auc", "eer", "tar@far=<f>" (see :func:`far_key`), "accuracy", "threshold"}``.
    """
    far, tar, thr = roc_curve(distances, same)
    pos = int(same.sum())
    acc, t = best_accuracy(far, tar, thr, pos, len(same) - pos)
    out = {"auc": roc_auc(far, tar), "eer": equal_error_rate(far, tar)}
    out |= {f"tar@far={far_key(f)}": tar_at_far(far, tar, f) for f in fars}
    return out | {"accuracy": acc, "threshold": t}


# -- retrieval -------------------------------------------------------------------------------------
def retrieval_metrics(
    emb: Tensor, labels: Tensor, ks: Sequence[int] = (1, 2, 4, 8), chunk: int = 1024
) -> dict[str, float]:
    """Leave-one-out ``recall@k`` for each ``k`` and ``mAP@R`` (Musgrave et al. 2020).

    Returns:
        ``{"recall@<k>": ..., "map@r": ...}``; ``k`` larger than ``N - 1`` is read at ``N - 1``.

    Raises:
        DataError: no class has two samples (nothing to retrieve).
    """
    _check_embeddings(emb, labels)
    labels = labels.to(emb.device)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    r = counts[inverse] - 1  # other samples of each query's class
    valid = r > 0
    if not bool(valid.any()):
        raise DataError("retrieval needs a class with at least 2 samples; every class has 1")
    n = len(emb)
    kmax = min(max(max(ks), int(r.max())), n - 1)
    idx = nearest_indices(emb, emb, kmax, "l2", chunk, exclude_self=True)
    hits = labels[idx] == labels[:, None]  # (N, kmax), nearest first
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(hits[:, : min(k, kmax)].any(1)[valid].double().mean())
    ranks = torch.arange(1, kmax + 1, device=emb.device)
    rel = hits & (ranks[None] <= r[:, None])  # only the first R neighbours count
    precision = rel.double().cumsum(1) / ranks
    ap = (precision * rel).sum(1) / r.clamp_min(1)
    out["map@r"] = float(ap[valid].mean())
    return out
