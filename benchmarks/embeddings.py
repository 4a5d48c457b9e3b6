"""Embedding benchmarks: visrep's miners and triplet loss against pytorch-metric-learning's.

Sections (``--sections``, default all):

``miners``
    Milliseconds per batch of visrep's miners and triplet loss against pytorch-metric-learning
    (PML, a test-only reference; the section prints a line and exits 0 when it is not
    installed) on the same batch: ``--classes`` x ``--per-class`` samples (default 32 x 8 = 256)
    of ``--dim`` (128) L2-normalised float32 embeddings (random normal, seed 0), one thread
    (``torch.set_num_threads(1)``). Each case is the median of ``--reps`` calls per side after one
    warm-up call, the sides alternating call by call; the ratio is PML / visrep (above 1: visrep
    is faster). PML's distance is ``LpDistance(normalize_embeddings=False)`` (the embeddings are
    unit-norm already) except for its distance-weighted miner, which requires its default.
    Cases:

    - ``batch_hard``: :func:`~visrep.losses.batch_hard_triplets` / ``BatchHardMiner``; same
      triplets (checked).
    - ``hard_pairs``: :func:`~visrep.losses.hard_pairs` /
      ``BatchEasyHardMiner(pos_strategy="hard", neg_strategy="hard")``; same pairs (checked).
    - ``semi_hard``: :func:`~visrep.losses.semi_hard_triplets` (FaceNet: one negative per
      anchor-positive pair) / ``TripletMarginMiner(type_of_triplets="semihard")`` (every
      semi-hard triplet): not the same output (FaceNet's is PML's reduced to the nearest negative
      of each pair; the counts are printed), both at ``--margin``.
    - ``distance_weighted``: :func:`~visrep.losses.distance_weighted_triplets` /
      ``DistanceWeightedMiner`` (cutoffs 0.5 and 1.4): the same weights, different draws
      (visrep: every anchor-positive pair once; PML: ``n_c`` random positives per anchor).
    - ``triplet_loss``: forward + backward of :func:`~visrep.losses.triplet_loss` /
      ``TripletMarginLoss(reducer=MeanReducer())`` on the batch-hard triplets; same value
      (checked).
    - ``batch_hard_step``: mining + loss + backward, :class:`~visrep.losses.TripletLoss`
      (``miner="batch_hard"``) / ``BatchHardMiner`` then ``TripletMarginLoss``.

    python benchmarks/embeddings.py [--sections miners] [--reps 30] [--classes 32]
        [--per-class 8] [--dim 128] [--margin 0.2]

Run with ``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from visrep.losses import (
    TripletLoss,
    batch_hard_triplets,
    distance_weighted_triplets,
    hard_pairs,
    semi_hard_triplets,
    triplet_loss,
)


def _alternating_ms(a: Callable[[], Any], b: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median milliseconds of ``a`` and of ``b`` over ``reps`` calls each, alternating, after one
    warm-up call of each."""
    a()
    b()
    ta, tb = [], []
    for _ in range(reps):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return 1000 * statistics.median(ta), 1000 * statistics.median(tb)


def bench_miners(args: argparse.Namespace) -> None:
    try:
        from pytorch_metric_learning import losses as pml_losses
        from pytorch_metric_learning import miners as pml_miners
        from pytorch_metric_learning.distances import LpDistance
        from pytorch_metric_learning.reducers import MeanReducer
    except ImportError:
        print("miners: pytorch-metric-learning is not installed; nothing to compare against")
        return
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(args.classes).repeat_interleave(args.per_class)
    emb = F.normalize(torch.randn(len(labels), args.dim, generator=g), dim=1)
    dist = LpDistance(normalize_embeddings=False)
    print(
        f"miners: B = {len(labels)} ({args.classes} classes x {args.per_class}), D = {args.dim}, "
        f"float32, 1 thread, median of {args.reps} calls; ms per batch"
    )
    print(f"  {'case':<18} {'visrep':>9} {'PML':>9} {'PML/visrep':>11}  notes")

    def row(name: str, ours: Callable[[], Any], theirs: Callable[[], Any], note: str) -> None:
        v, p = _alternating_ms(ours, theirs, args.reps)
        print(f"  {name:<18} {v:9.3f} {p:9.3f} {p / v:11.2f}  {note}")

    pml_bh = pml_miners.BatchHardMiner(distance=dist)
    same = all(
        torch.equal(x, y)
        for x, y in zip(batch_hard_triplets(emb, labels), pml_bh(emb, labels), strict=True)
    )
    row(
        "batch_hard",
        lambda: batch_hard_triplets(emb, labels),
        lambda: pml_bh(emb, labels),
        f"same triplets: {same}",
    )

    pml_hp = pml_miners.BatchEasyHardMiner(pos_strategy="hard", neg_strategy="hard", distance=dist)
    i, j, s = hard_pairs(emb, labels)
    a1, p, a2, n = pml_hp(emb, labels)
    same = all(
        torch.equal(x, y)
        for x, y in ((i[s == 1], a1), (j[s == 1], p), (i[s == 0], a2), (j[s == 0], n))
    )
    row(
        "hard_pairs",
        lambda: hard_pairs(emb, labels),
        lambda: pml_hp(emb, labels),
        f"same pairs: {same}",
    )

    pml_sh = pml_miners.TripletMarginMiner(
        margin=args.margin, type_of_triplets="semihard", distance=dist
    )
    ours_n = len(semi_hard_triplets(emb, labels, args.margin)[0])
    theirs_n = len(pml_sh(emb, labels)[0])
    row(
        "semi_hard",
        lambda: semi_hard_triplets(emb, labels, args.margin),
        lambda: pml_sh(emb, labels),
        f"triplets {ours_n} (one per pair) vs {theirs_n} (all)",
    )

    pml_dw = pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    ours_n = len(distance_weighted_triplets(emb, labels)[0])
    theirs_n = len(pml_dw(emb, labels)[0])
    row(
        "distance_weighted",
        lambda: distance_weighted_triplets(emb, labels),
        lambda: pml_dw(emb, labels),
        f"triplets {ours_n} vs {theirs_n}",
    )

    x = emb.clone().requires_grad_()
    trip = batch_hard_triplets(emb, labels)
    pml_loss = pml_losses.TripletMarginLoss(
        margin=args.margin, distance=dist, reducer=MeanReducer()
    )
    ours_v = float(triplet_loss(x, trip, args.margin).detach())
    theirs_v = float(pml_loss(x, labels, trip).detach())

    def ours_loss() -> None:
        x.grad = None
        triplet_loss(x, trip, args.margin).backward()

    def theirs_loss() -> None:
        x.grad = None
        pml_loss(x, labels, trip).backward()

    row(
        "triplet_loss",
        ours_loss,
        theirs_loss,
        f"fwd+bwd, {len(trip[0])} triplets, loss {ours_v:.6f} vs {theirs_v:.6f}",
    )

    module = TripletLoss(args.margin, miner="batch_hard")

    def ours_step() -> None:
        x.grad = None
        module(x, labels).backward()

    def theirs_step() -> None:
        x.grad = None
        pml_loss(x, labels, pml_bh(x, labels)).backward()

    row("batch_hard_step", ours_step, theirs_step, "mine + loss + backward")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "miners": bench_miners,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS)
    )
    ap.add_argument("--reps", type=int, default=30, help="miners: timed calls per side")
    ap.add_argument("--classes", type=int, default=32, help="miners: classes per batch (P)")
    ap.add_argument("--per-class", type=int, default=8, help="miners: samples per class (K)")
    ap.add_argument("--dim", type=int, default=128, help="miners: embedding size")
    ap.add_argument("--margin", type=float, default=0.2, help="miners: triplet margin")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
