"""Detection speed: DETR's Hungarian matcher against brute force, and a DETR training step.

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

    python benchmarks/detection.py [--sections matcher,detr] [--reps 5] [--batch 2]
        [--size 640x480] [--objects 30] [--steps 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert

from visrep.losses.detection import generalized_box_iou
from visrep.models.detection import DETECTORS
from visrep.models.detection.matcher import hungarian_match, linear_assignment


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


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "matcher": bench_matcher,
    "detr": bench_detr,
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
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
