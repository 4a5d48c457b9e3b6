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

``task``
    Training images/s of ``visrep fit --config orl_triplet`` (the real CLI: LightningCLI, the
    identity-folder data module with its P x K batch sampler and on-device augmentation,
    EmbeddingTask's mining, loss and logging, per-epoch validation, checkpoints and the run
    directory) against a hand-written loop over the same model (``EmbeddingNet`` built from the
    config's backbone spec), the same training samples in the same P x K batches
    (``PKBatchSampler``, same seed, ``set_epoch``) with visrep's collate, the same augmentation
    (``augment_batch``), batch-hard mining, triplet loss, Adam and per-step warm-up + cosine
    schedule. Data: ``--task-people`` synthetic people x ``--task-photos`` grey
    ``--task-size`` photos (ORL's 40 x 10 at 112x92 by default) split by identity
    (``--task-val`` / ``--task-test`` people held out). Timed: each epoch's training batches
    (validation and the first, warm-up epoch are not), wall clock and process CPU time; the
    sides alternate over ``--rounds`` in ABBA order and the medians give the ratio
    visrep / plain and the overhead ``1 - ratio`` (issue 13: at most 5%).

    python benchmarks/embeddings.py --sections task [--rounds 2] [--task-epochs 3]

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


# -- task: EmbeddingTask training throughput against a plain loop ----------------------------------
TASK_CONFIG = "orl_triplet"
_EPOCHS: list[tuple[float, float, int]] = []  # (wall s, CPU s, images), filled by TaskEpochTimer


def write_identity_folder(root: Any, people: int, photos: int, size: tuple[int, int]) -> Any:
    """``root/p<i>/<j>.png``: grey ``size = (H, W)`` images, each person a fixed random 8x8
    pattern upsampled, plus per-photo noise (seeded)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(0)
    h, w = size
    for i in range(people):
        face = rng.uniform(40, 215, (8, 8)).repeat(-(-h // 8), 0).repeat(-(-w // 8), 1)[:h, :w]
        (root / f"p{i}").mkdir(parents=True)
        for j in range(photos):
            img = np.clip(face + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"p{i}" / f"{j + 1}.png")
    return root


def _task_timer() -> type:
    import lightning as L

    class TaskEpochTimer(L.Callback):
        """visrep's side: wall and process-CPU seconds of each epoch's training batches, from
        the epoch's start to the end of its last batch (validation is outside)."""

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.t0, self.c0, self.n = time.perf_counter(), time.process_time(), 0

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:  # fmt: skip
            self.n += len(batch["label"])
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            _EPOCHS.append((self.t - self.t0, self.c - self.c0, self.n))

    return TaskEpochTimer


TaskEpochTimer = _task_timer()


def _task_rates(epochs: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Images per wall second and per CPU second over the epochs after the first (warm-up)."""
    timed = epochs[1:]
    n = sum(e[2] for e in timed)
    return n / sum(e[0] for e in timed), n / sum(e[1] for e in timed)


def _task_identities(args: argparse.Namespace) -> list[str]:
    return ["--data.identities.val", str(args.task_val), "--data.identities.test",
            str(args.task_test)]  # fmt: skip


def task_fit(root: Any, args: argparse.Namespace) -> tuple[float, float]:
    """``visrep fit --config orl_triplet`` on ``root``: training img/s (wall, CPU)."""
    import tempfile

    from visrep.cli import main as cli_main

    _EPOCHS.clear()
    with tempfile.TemporaryDirectory() as d:
        code = cli_main([
            "fit", "--config", TASK_CONFIG, "--data.root", str(root), *_task_identities(args),
            "--trainer.max_epochs", str(args.task_epochs), "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.callbacks", f"{__name__}.TaskEpochTimer", "--test_after_fit", "false",
            "--run_dir", f"{d}/run",
        ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"visrep fit failed with exit code {code}")
    return _task_rates(_EPOCHS)


def task_plain_loop(root: Any, args: argparse.Namespace) -> tuple[float, float]:
    """The same EmbeddingNet, P x K batches, augmentation, batch-hard mining, triplet loss,
    optimiser and per-step schedule in a hand-written loop: training img/s (wall, CPU)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from visrep.configs import read_config, resolve_config
    from visrep.data import AugmentConfig, IdentityFolderDataModule, LoaderConfig
    from visrep.data.augment import augment_batch
    from visrep.data.embedding import IdentitySplit, PKBatchSampler
    from visrep.data.samples import IMAGE, LABEL, collate
    from visrep.models import BACKBONES, EmbeddingNet
    from visrep.tasks import OptimConfig, build_optimizer, build_scheduler

    cfg = read_config(resolve_config(TASK_CONFIG) or TASK_CONFIG)
    task, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    L.seed_everything(cfg["seed_everything"], verbose=False)
    loader_cfg = LoaderConfig(**data["loader"])
    dm = IdentityFolderDataModule(
        str(root),
        identities=IdentitySplit(val=args.task_val, test=args.task_test),
        cache=data.get("cache", False),
        loader=loader_cfg,
        augment=AugmentConfig(**data["augment"]),
    )
    dm.setup()
    spec = dm.spec()
    backbone = BACKBONES.build(task["backbone"], spec.in_chans, 0, spec.image_size)
    net = EmbeddingNet(backbone, spec.mean, spec.std, task["dim"], task.get("hidden"),
                       task["normalize"])  # fmt: skip
    sampler = PKBatchSampler(dm.train_labels(), loader_cfg.classes_per_batch,
                             loader_cfg.samples_per_class, seed=torch.initial_seed())  # fmt: skip
    loader = DataLoader(dm.train_set, batch_sampler=sampler, collate_fn=collate)
    optim = OptimConfig(**task["optim"])
    opt = build_optimizer(net, optim)
    sched = build_scheduler(opt, optim, len(loader), args.task_epochs)
    margin, aug = float(task["margin"]), dm.augment
    net.train()
    epochs = []
    for epoch in range(args.task_epochs):
        sampler.set_epoch(epoch)
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for batch in loader:
            x, y = augment_batch(batch[IMAGE], aug), batch[LABEL]
            emb = net(x)
            loss = triplet_loss(emb, batch_hard_triplets(emb.detach(), y), margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n += len(y)
        epochs.append((time.perf_counter() - t0, time.process_time() - c0, n))
    return _task_rates(epochs)


def bench_task(args: argparse.Namespace) -> None:
    """EmbeddingTask's training throughput against a plain loop (module docstring, ``task``)."""
    import tempfile
    from pathlib import Path

    h, w = (int(v) for v in args.task_size.split("x"))
    print(
        f"== task: visrep fit --config {TASK_CONFIG} vs a plain loop (threads="
        f"{torch.get_num_threads()}; {args.task_people} synthetic people x {args.task_photos} "
        f"grey {h}x{w} photos, {args.task_val} val and {args.task_test} test people; "
        f"{args.task_epochs} epochs, the first not timed; {args.rounds} rounds, ABBA) =="
    )
    plain: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as d:
        root = write_identity_folder(Path(d) / "people", args.task_people, args.task_photos,
                                     (h, w))  # fmt: skip
        for r in range(args.rounds):
            order = ("plain", "visrep") if r % 2 == 0 else ("visrep", "plain")
            for side in order:
                if side == "plain":
                    plain.append(task_plain_loop(root, args))
                else:
                    ours.append(task_fit(root, args))
            print(
                f"  round {r} ({' then '.join(order)}): plain {plain[-1][0]:.3f} img/s wall, "
                f"{plain[-1][1]:.3f} img/CPU-s | visrep {ours[-1][0]:.3f} img/s wall, "
                f"{ours[-1][1]:.3f} img/CPU-s"
            )
    for i, what in enumerate(("wall clock", "process CPU time")):
        p = statistics.median(x[i] for x in plain)
        v = statistics.median(x[i] for x in ours)
        print(
            f"  median, {what}: plain {p:.3f} img/s | visrep {v:.3f} img/s | ratio visrep/plain "
            f"{v / p:.4f} | overhead {100 * (1 - v / p):.2f}%"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "miners": bench_miners,
    "task": bench_task,
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
    ap.add_argument("--rounds", type=int, default=2, help="task: ABBA rounds")
    ap.add_argument("--task-epochs", type=int, default=3, help="task: epochs (first untimed)")
    ap.add_argument("--task-people", type=int, default=40, help="task: synthetic people")
    ap.add_argument("--task-photos", type=int, default=10, help="task: photos per person")
    ap.add_argument("--task-size", default="112x92", help="task: photo size HxW")
    ap.add_argument("--task-val", type=int, default=5, help="task: validation people")
    ap.add_argument("--task-test", type=int, default=10, help="task: test people")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
