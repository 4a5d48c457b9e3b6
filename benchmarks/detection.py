"""Detection speed: DETR's matcher and training step, visrep's Faster R-CNN training against a
plain loop, and R-CNN / Fast R-CNN / Faster R-CNN at test time (the seed's speed claim).

Sections (``--sections``, default all):

``matcher``
    (a) Small cost matrices ``Q x M`` (random normal): milliseconds of
    :func:`visrep.models.detection.matcher.linear_assignment` (scipy's Hungarian solver)
    against brute force over every assignment of the ``M`` targets to distinct predictions
    (``Q! / (Q - M)!`` of them). The brute force is given its best case: the table of
    assignments is built once per shape outside the timing, and the search is one vectorised
    numpy gather-sum-argmin over it. Both must reach the same total cost (checked). The ratio
    is brute / Hungarian.
    (b) DETR-sized batches (``B`` images, ``Q = 100`` queries, ``M`` objects each, 3 classes):
    milliseconds of the whole :func:`~visrep.models.detection.matcher.hungarian_match` (batched
    cost + one assignment per image) against the same matching with the cost laid out as the
    authors' code does (all ``B x Q`` predictions against all targets of the batch, one
    ``(B Q, sum M)`` matrix, then each image's block); the ratio is authors' layout / visrep.
    Brute force is not run here: the line gives its number of assignments and its time
    extrapolated from the per-assignment cost of (a)'s largest case, to show why the Hungarian
    algorithm is used.

``detr``
    Seconds per training step, wall clock and process CPU time (forward, the set loss with auxiliary losses, backward, AdamW
    step) of the registered ``detr`` at its defaults on ``--batch`` random ``WxH`` images
    (default 2 of 640x480, BCCD's size) with ``--objects`` boxes each, 3 classes; the median
    of ``--steps`` steps after one warm-up step, at the default resize (shorter side 384,
    longer at most 512) and without resizing (``min_size=None``).

``faster_rcnn``
    Training images/s of ``visrep fit --config bccd_fasterrcnn`` (the real CLI: LightningCLI,
    the VOC data module and its sample dicts and collate, DetectionTask's normalisation,
    target building and loss logging, gradient clipping at the config's 10, checkpoints and the
    run directory) against the same torchvision ``FasterRCNN`` driven by a hand-written loop:
    the detector built from the config's spec (``DETECTORS.build``, same seed) with its
    ``.model`` called directly, the same training samples (the data module's training split,
    augmentation included) from a plain ``DataLoader`` with a list collate, images normalised
    with the same mean / std, labels shifted by 1 by hand, the config's AdamW and per-step
    warm-up + cosine schedule (``build_optimizer`` / ``build_scheduler``) and
    ``clip_grad_norm_`` at 10. Data: ``--frcnn-images`` synthetic ``--frcnn-size`` JPEGs of
    3-8 cell-like ellipses (RBC, WBC, Platelets) in a temporary VOC tree (plus 2 validation
    images, for visrep's per-epoch validation). Both resize to ``--min-size`` / ``--max-size``.
    Timed: each epoch's training batches, from the epoch's start (before its first batch is
    loaded) to the end of its last step; the first epoch (warm-up) and visrep's validation
    are not. Both wall clock and process CPU time (the latter less sensitive to other jobs on
    a shared machine) give img/s; the sides alternate over ``--rounds`` in ABBA order, and
    the medians give the ratio visrep / plain and the overhead ``1 - ratio`` (issue 12: at
    most 5%).

``speed``
    The seed's claim (seed 001: R-CNN is "inefficient since image locations are processed
    many times"; Fast R-CNN's "convolutions are applied only once to the image ...: much
    faster"; Faster R-CNN learns the proposals): seconds per image at inference on the first
    ``--speed-images`` BCCD validation images (640x480; the section is skipped, with a line,
    when ``--bccd`` is absent). Timed: each detector's ``forward`` in eval mode under
    ``torch.no_grad`` on one normalised ``3 x 480 x 640`` image (batch 1; normalised with the
    images' channel mean / std), from the image list to the final detections (per-class NMS
    included), after one untimed warm-up call per model (R-CNN's on 64 proposals). All use
    ResNet-18 from scratch (speed does not depend on training) and 3 classes:
    ``rcnn`` at its defaults (crops warped to ``--rcnn-warp`` pixels, default the model's 96;
    the paper's 227 is (227 / 96)^2 = 5.6 times the CNN arithmetic) with its test-time
    scoring: per-class SVMs and ridge box regressors (random weights in place of fitted ones:
    the same arithmetic); ``fast_rcnn`` at its defaults (no resize, RoI pooling on the last
    level, fc6 / fc7 of 1024); ``faster_rcnn`` with FPN and without (``fpn=False``), both with
    ``min_size=480, max_size=640`` (the image's own size) and their defaults otherwise (RPN:
    at most 1000 proposals per image after NMS, counted by a hook). R-CNN and Fast R-CNN read
    selective search's ``fast`` proposals (R-CNN's mode, at most 2000 per image), computed on
    the uint8 image and timed once per image: reported separately, and added to those two
    models' times for the "with proposals" figures. The models run in turn over the images
    for ``--rounds`` rounds (forward order in even rounds, reverse in odd ones); a model's
    time is the median over rounds of its mean seconds per image. Ratios: R-CNN / Fast
    R-CNN and Fast R-CNN / Faster R-CNN, networks alone and with proposals.

    python benchmarks/detection.py [--sections matcher,detr,faster_rcnn,speed] [--reps 5]
        [--batch 2] [--size 640x480] [--objects 30] [--steps 3] [--rounds 2]
        [--frcnn-images 24] [--frcnn-size 320x240] [--frcnn-batch 2] [--min-size 240]
        [--max-size 320] [--epochs 3] [--bccd ../shared/data/bccd/BCCD] [--speed-images 2]
        [--rcnn-warp 96]

Run with ``OMP_NUM_THREADS=1`` on a shared machine (one thread per side, as measured).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.ops import box_convert

from visrep.cli import main as cli_main
from visrep.configs import read_config, resolve_config
from visrep.data import LoaderConfig, VOCDetectionDataModule
from visrep.data.detection import DetAugment
from visrep.data.detection.selective_search import SelectiveSearch, selective_search
from visrep.data.samples import BOXES, IMAGE, LABELS, batch_size
from visrep.data.segmentation.base import read_rgb_or_grey
from visrep.losses.detection import generalized_box_iou
from visrep.models.detection import DETECTORS, Detector
from visrep.models.detection.matcher import hungarian_match, linear_assignment
from visrep.tasks import OptimConfig, build_optimizer, build_scheduler

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"


def _ms(fn: Callable[[], Any], reps: int) -> float:
    """Median milliseconds of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def brute_force(cost: np.ndarray, table: np.ndarray) -> float:
    """The lowest total cost over the assignments in ``table`` ``(P, M)`` (row of each column)."""
    return float(cost[table, np.arange(cost.shape[1])].sum(1).min())


def _targets(b: int, m: int, k: int, g: torch.Generator) -> list[dict[str, torch.Tensor]]:
    out = []
    for _ in range(b):
        cxcy = 0.1 + 0.8 * torch.rand(m, 2, generator=g)
        wh = 0.02 + 0.15 * torch.rand(m, 2, generator=g)
        out.append(
            {"labels": torch.randint(0, k, (m,), generator=g), "boxes": torch.cat([cxcy, wh], 1)}
        )
    return out


def authors_layout_match(
    logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The matching with the authors' cost layout: ``(B Q, sum M)``, then per-image blocks."""
    b, q = logits.shape[:2]
    prob = logits.flatten(0, 1).softmax(-1)
    out_bbox = boxes.flatten(0, 1)
    tgt_ids = torch.cat([t["labels"] for t in targets])
    tgt_bbox = torch.cat([t["boxes"] for t in targets])
    cost = (
        5.0 * torch.cdist(out_bbox, tgt_bbox, p=1)
        - prob[:, tgt_ids]
        - 2.0
        * generalized_box_iou(
            box_convert(out_bbox, "cxcywh", "xyxy"), box_convert(tgt_bbox, "cxcywh", "xyxy")
        )
    ).view(b, q, -1)
    sizes = [len(t["boxes"]) for t in targets]
    return [linear_assignment(c[i]) for i, c in enumerate(cost.split(sizes, -1))]


def bench_matcher(args: argparse.Namespace) -> None:
    print(f"== matcher (threads={torch.get_num_threads()}, median of {args.reps}) ==")
    rng = np.random.default_rng(0)
    ms_per = 0.0
    print("(a) small Q x M: brute force (all assignments, vectorised) vs Hungarian (scipy)")
    for q, m in ((4, 4), (6, 3), (6, 6), (8, 5), (8, 8), (9, 9)):
        table = np.array(list(itertools.permutations(range(q), m)), dtype=np.int64)
        cost = rng.normal(size=(q, m))
        brute = _ms(lambda c=cost, t=table: brute_force(c, t), args.reps)
        hung = _ms(lambda c=cost: linear_assignment(c), args.reps)
        rows, cols = linear_assignment(cost)
        same = abs(cost[rows.numpy(), cols.numpy()].sum() - brute_force(cost, table)) < 1e-9
        ms_per = brute / len(table)  # the largest case's, where overheads matter least
        print(
            f"  {q}x{m}: {len(table):7d} assignments | brute {brute:9.3f} ms | Hungarian "
            f"{hung:7.3f} ms | brute / Hungarian x{brute / hung:8.1f} | same optimum: {same}"
        )
    print("(b) DETR-sized batches, Q = 100, 3 classes: hungarian_match vs the authors' layout")
    g = torch.Generator().manual_seed(0)
    for b, m in ((2, 10), (2, 40), (8, 40)):
        logits = torch.randn(b, 100, 4, generator=g)
        boxes = torch.cat(
            [torch.rand(b, 100, 2, generator=g), 0.2 * torch.rand(b, 100, 2, generator=g)], -1
        )
        targets = _targets(b, m, 3, g)
        ours = _ms(lambda x=logits, y=boxes, t=targets: hungarian_match(x, y, t), args.reps)
        theirs = _ms(lambda x=logits, y=boxes, t=targets: authors_layout_match(x, y, t), args.reps)
        a, r = hungarian_match(logits, boxes, targets), authors_layout_match(logits, boxes, targets)
        same = all(
            torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, r, strict=True)
        )
        log10_n = (math.lgamma(101) - math.lgamma(101 - m)) / math.log(10)
        log10_s = log10_n + math.log10(ms_per / 1000 * b)
        print(
            f"  B={b} M={m:2d}: hungarian_match {ours:7.2f} ms | authors' layout {theirs:7.2f} ms "
            f"| ratio x{theirs / ours:5.2f} | same matching: {same} | brute force: 10^{log10_n:.0f} "
            f"assignments per image, ~10^{log10_s:.0f} s extrapolated"
        )


def _step_seconds(
    model: torch.nn.Module, images: list, targets: list, steps: int
) -> tuple[float, float]:
    """Median wall and process-CPU seconds of a training step (CPU time: less sensitive to
    other processes on a shared machine)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    wall, cpu = [], []
    for i in range(steps + 1):
        t, c = time.perf_counter(), time.process_time()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step is warm-up
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def bench_detr(args: argparse.Namespace) -> None:
    w, h = (int(v) for v in args.size.split("x"))
    print(
        f"== detr training step (threads={torch.get_num_threads()}, {args.batch} images of "
        f"{w}x{h}, {args.objects} objects each, median of {args.steps} after a warm-up) =="
    )
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, h, w, generator=g) for _ in range(args.batch)]
    targets = []
    for _ in range(args.batch):
        xy = torch.rand(args.objects, 2, generator=g) * torch.tensor([0.85 * w, 0.85 * h])
        wh = torch.tensor([0.03 * w, 0.03 * h]) + torch.rand(args.objects, 2, generator=g) * 0.1 * w
        boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w, h]))], 1)
        targets.append(
            {"boxes": boxes, "labels": torch.randint(0, 3, (args.objects,), generator=g)}
        )
    for label, opts in (
        ("defaults (resize to 384 / 512)", {}),
        ("min_size=None", {"min_size": None}),
    ):
        torch.manual_seed(0)
        model = DETECTORS.build({"class_path": "detr", "init_args": opts}, 3, 3).train()
        n = sum(p.numel() for p in model.parameters())
        wall, cpu = _step_seconds(model, images, targets, args.steps)
        print(
            f"  {label}: {wall:.3f} s/step wall ({wall / args.batch:.3f} s/image), "
            f"{cpu:.3f} s/step process CPU, {n:,} parameters"
        )


# -- faster_rcnn: visrep fit against a plain loop ---------------------------------------------------
CONFIG = "bccd_fasterrcnn"
# class -> (RGB, radius range in pixels): BCCD-like cells on a pale background
_CELLS = {"RBC": ((200, 90, 100), (14, 26)), "WBC": ((110, 60, 160), (24, 36)),
          "Platelets": ((150, 70, 150), (5, 9))}  # fmt: skip


def write_synthetic_voc(root: Path, counts: dict[str, int], size: tuple[int, int]) -> Path:
    """A VOC tree of ``W x H`` JPEG images of 3-8 noisy elliptical cells each (classes RBC, WBC,
    Platelets), their XML annotations and ``ImageSets/Main/<split>.txt`` lists; seeded."""
    rng = np.random.default_rng(0)
    w, h = size
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:h, :w]
    k = 0
    for split, n in counts.items():
        ids = []
        for _ in range(n):
            img = rng.normal(225, 12, (h, w, 3))
            body = []
            for _ in range(int(rng.integers(3, 9))):  # objects, not pixels
                name = str(rng.choice(list(_CELLS)))
                colour, (lo, hi) = _CELLS[name]
                rx, ry = rng.uniform(lo, hi, 2)
                cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
                img[inside] = np.asarray(colour) + rng.normal(0, 10, (int(inside.sum()), 3))
                x1, y1 = max(1, int(cx - rx) + 1), max(1, int(cy - ry) + 1)
                x2, y2 = min(w, int(cx + rx) + 1), min(h, int(cy + ry) + 1)
                body.append(
                    f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}"
                    f"</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                )
            name = f"im{k:04d}"
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                root / "JPEGImages" / f"{name}.jpg", quality=90
            )
            (root / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
                f"{''.join(body)}</annotation>"
            )
            ids.append(name)
            k += 1
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


EPOCHS: list[tuple[float, float, int]] = []  # (wall s, CPU s, images); filled by EpochTimer


class EpochTimer(L.Callback):
    """visrep's side: the wall and process-CPU seconds of each training epoch's batches, from
    the epoch's start (before its first batch is loaded) to the end of its last batch (so
    validation and checkpointing are outside), into ``EPOCHS``."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0, self.c0, self.n = time.perf_counter(), time.process_time(), 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
    ) -> None:
        self.n += batch_size(batch)
        self.t, self.c = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        EPOCHS.append((self.t - self.t0, self.c - self.c0, self.n))


def _rates(epochs: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Images per wall second and per CPU second over the epochs after the first (warm-up)."""
    timed = epochs[1:]
    n = sum(e[2] for e in timed)
    return n / sum(e[0] for e in timed), n / sum(e[1] for e in timed)


def _frcnn_options(args: argparse.Namespace) -> list[str]:
    return [
        "--model.model.min_size", str(args.min_size), "--model.model.max_size", str(args.max_size),
        "--data.loader.batch_size", str(args.frcnn_batch), "--trainer.max_epochs", str(args.epochs),
    ]  # fmt: skip


def visrep_fit(root: Path, args: argparse.Namespace) -> tuple[float, float]:
    """``visrep fit --config bccd_fasterrcnn`` on ``root``: img/s (wall, CPU)."""
    EPOCHS.clear()
    with tempfile.TemporaryDirectory() as d:
        code = cli_main([
            "fit", "--config", CONFIG, "--data.root", str(root), *_frcnn_options(args),
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.callbacks",
            f"{__name__}.EpochTimer", "--test_after_fit", "false", "--run_dir", f"{d}/run",
        ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"visrep fit failed with exit code {code}")
    return _rates(EPOCHS)


def plain_loop(root: Path, args: argparse.Namespace) -> tuple[float, float]:
    """The same torchvision Faster R-CNN, data, optimiser, schedule and clipping driven by a
    hand-written loop: img/s (wall, CPU)."""
    cfg = read_config(resolve_config(CONFIG) or CONFIG)
    task, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    spec = {
        "class_path": task["model"]["class_path"],
        "init_args": {
            **task["model"]["init_args"], "min_size": args.min_size, "max_size": args.max_size,
        },
    }  # fmt: skip
    L.seed_everything(cfg["seed_everything"], verbose=False)
    dm = VOCDetectionDataModule(
        str(root),
        augment=DetAugment(**data["augment"]),
        loader=LoaderConfig(batch_size=args.frcnn_batch),
    )
    dm.setup()  # the same samples (and augmentation) as visrep's loader gives
    detector = DETECTORS.build(spec, 3, len(dm.class_names))
    net = detector.model  # the torchvision FasterRCNN
    mean, std = torch.tensor(dm.mean).view(-1, 1, 1), torch.tensor(dm.std).view(-1, 1, 1)
    loader = DataLoader(
        dm.train_set, batch_size=args.frcnn_batch, shuffle=True, drop_last=True, collate_fn=list
    )
    optim = OptimConfig(**task["optim"])
    opt = build_optimizer(net, optim)
    sched = build_scheduler(opt, optim, len(loader), args.epochs)
    clip = float(cfg["trainer"]["gradient_clip_val"])
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    epochs = []
    for _ in range(args.epochs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for samples in loader:
            images = [(s[IMAGE].as_subclass(torch.Tensor) - mean) / std for s in samples]
            targets = [
                {"boxes": s[BOXES].as_subclass(torch.Tensor), "labels": s[LABELS] + 1}
                for s in samples
            ]
            loss = sum(net(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            n += len(samples)
        epochs.append((time.perf_counter() - t0, time.process_time() - c0, n))
    return _rates(epochs)


def bench_faster_rcnn(args: argparse.Namespace) -> None:
    """visrep's Faster R-CNN training throughput against a plain loop (module docstring)."""
    w, h = (int(v) for v in args.frcnn_size.split("x"))
    print(
        f"== faster_rcnn training throughput: visrep fit --config {CONFIG} vs a plain loop "
        f"(threads={torch.get_num_threads()}; {args.frcnn_images} synthetic {w}x{h} train images, "
        f"batch {args.frcnn_batch}, min_size {args.min_size}, max_size {args.max_size}, "
        f"{args.epochs} epochs, the first not timed; {args.rounds} rounds, ABBA) =="
    )
    plain: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as d:
        root = write_synthetic_voc(
            Path(d) / "voc", {"train": args.frcnn_images, "val": 2, "test": 2}, (w, h)
        )
        for r in range(args.rounds):
            order = ("plain", "visrep") if r % 2 == 0 else ("visrep", "plain")
            for side in order:
                if side == "plain":
                    plain.append(plain_loop(root, args))
                else:
                    ours.append(visrep_fit(root, args))
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


# -- speed: R-CNN vs Fast R-CNN vs Faster R-CNN at test time ----------------------------------------
def _speed_models(args: argparse.Namespace) -> dict[str, Detector]:
    """The detectors compared (ResNet-18 from scratch, 3 classes), in eval mode."""
    side = {"min_size": 480, "max_size": 640}  # BCCD's 640x480 kept, as fast_rcnn's default
    specs = {
        "rcnn": ("rcnn", {"warp_size": args.rcnn_warp}),
        "fast_rcnn": ("fast_rcnn", {}),
        "faster_rcnn": ("faster_rcnn", side),
        "faster_rcnn fpn=False": ("faster_rcnn", {**side, "fpn": False}),
    }
    models = {}
    for name, (cls, opts) in specs.items():
        torch.manual_seed(0)
        models[name] = DETECTORS.build(
            {"class_path": cls, "init_args": {"backbone": "resnet18", **opts}}, 3, 3
        ).eval()
    r = models["rcnn"]  # test-time R-CNN scores with its SVMs and regresses the boxes
    g = torch.Generator().manual_seed(0)
    r.svm_weight.copy_(0.01 * torch.randn(r.svm_weight.shape, generator=g))
    r.bbox_beta.copy_(1e-4 * torch.randn(r.bbox_beta.shape, generator=g))
    r.fitted.fill_(True)
    return models


def bench_speed(args: argparse.Namespace) -> None:
    """Seconds per image at inference (module docstring, ``speed``)."""
    root = Path(args.bccd)
    listing = root / "ImageSets" / "Main" / "val.txt"
    if not listing.is_file():
        print(f"== speed: skipped, no BCCD at {root} ({listing} is missing) ==")
        return
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    raw = [
        read_rgb_or_grey(str(root / "JPEGImages" / f"{i}.jpg"), 3) for i in ids[: args.speed_images]
    ]
    print(
        f"== speed at inference (threads={torch.get_num_threads()}, {len(raw)} BCCD val images "
        f"{raw[0].shape[1]}x{raw[0].shape[0]}: {', '.join(ids[: len(raw)])}; {args.rounds} "
        "rounds) =="
    )
    search = SelectiveSearch(strategy="fast")
    ss_times, proposals = [], []
    for im in raw:
        t = time.perf_counter()
        proposals.append(torch.from_numpy(selective_search(im, search)))
        ss_times.append(time.perf_counter() - t)
    ss = statistics.mean(ss_times)
    counts = [len(p) for p in proposals]
    print(
        f"  selective search (fast): {ss:.3f} s/image (per image: "
        f"{', '.join(f'{t:.3f}' for t in ss_times)}), proposals per image {counts}"
    )
    x = torch.from_numpy(np.stack(raw)).permute(0, 3, 1, 2).float() / 255
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    images = list((x - mean) / std)
    models = _speed_models(args)
    rpn_counts: dict[str, list[int]] = {}
    for name in ("faster_rcnn", "faster_rcnn fpn=False"):
        counts_of = rpn_counts.setdefault(name, [])
        models[name].model.rpn.register_forward_hook(
            lambda m, i, out, c=counts_of: c.extend(len(b) for b in out[0])
        )

    def run(name: str, i: int) -> None:
        m = models[name]
        if m.needs_proposals:
            m([images[i]], proposals=[proposals[i]])
        else:
            m([images[i]])

    per_round: dict[str, list[float]] = {n: [] for n in models}
    with torch.no_grad():
        for name, m in models.items():  # warm-up
            if name == "rcnn":
                m([images[0]], proposals=[proposals[0][:64]])
            else:
                run(name, 0)
        for c in rpn_counts.values():
            c.clear()
        for r in range(args.rounds):
            for name in list(models) if r % 2 == 0 else list(models)[::-1]:
                times = []
                for i in range(len(images)):
                    t = time.perf_counter()
                    run(name, i)
                    times.append(time.perf_counter() - t)
                per_round[name].append(statistics.mean(times))
    sec = {n: statistics.median(v) for n, v in per_round.items()}
    for name, s in sec.items():
        rounds = ", ".join(f"{v:.3f}" for v in per_round[name])
        if models[name].needs_proposals:
            used = [min(c, models[name].test_proposals or c) for c in counts]
            extra = f" | with proposals {s + ss:.3f} s/image | {used} proposals per image"
        else:
            extra = f" | RPN proposals per image {rpn_counts[name][: len(images)]}"
        print(f"  {name}: {s:.3f} s/image (rounds: {rounds}){extra}")
    r, f = sec["rcnn"], sec["fast_rcnn"]
    print(
        f"  R-CNN / Fast R-CNN: x{r / f:.2f} networks only, x{(r + ss) / (f + ss):.2f} with proposals"
    )
    for name in ("faster_rcnn", "faster_rcnn fpn=False"):
        fr = sec[name]
        print(
            f"  Fast R-CNN / {name}: x{f / fr:.2f} networks only, x{(f + ss) / fr:.2f} with "
            f"proposals (R-CNN / {name} with proposals: x{(r + ss) / fr:.1f})"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "matcher": bench_matcher,
    "detr": bench_detr,
    "faster_rcnn": bench_faster_rcnn,
    "speed": bench_speed,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS)
    )
    ap.add_argument("--reps", type=int, default=5, help="matcher: timed calls per case")
    ap.add_argument("--batch", type=int, default=2, help="detr: images per step")
    ap.add_argument("--size", default="640x480", help="detr: WxH of the images")
    ap.add_argument("--objects", type=int, default=30, help="detr: boxes per image")
    ap.add_argument("--steps", type=int, default=3, help="detr: timed steps")
    ap.add_argument("--rounds", type=int, default=2, help="faster_rcnn, speed: ABBA rounds")
    ap.add_argument("--frcnn-images", type=int, default=24, help="faster_rcnn: train images")
    ap.add_argument("--frcnn-size", default="320x240", help="faster_rcnn: WxH of the images")
    ap.add_argument("--frcnn-batch", type=int, default=2, help="faster_rcnn: batch size")
    ap.add_argument("--min-size", type=int, default=240, help="faster_rcnn: the model's min_size")
    ap.add_argument("--max-size", type=int, default=320, help="faster_rcnn: the model's max_size")
    ap.add_argument("--epochs", type=int, default=3, help="faster_rcnn: epochs (first untimed)")
    ap.add_argument("--bccd", default=str(BCCD), help="speed: the BCCD VOC folder")
    ap.add_argument("--speed-images", type=int, default=2, help="speed: BCCD val images")
    ap.add_argument("--rcnn-warp", type=int, default=96, help="speed: rcnn's warp_size")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
