"""DAVIS evaluation benchmark (issue 16): visrep's J & F against the official code, in
evaluated frames per second, on real DAVIS masks.

For each sequence of ``--sequences`` (default: every folder under ``--root``, the DAVIS 2016
subset's ``Annotations/480p``) and each prediction of ``--preds``, the ground truth is the
sequence's masks (DAVIS 2016 stores the object as 255: read as object 1) and the prediction is
derived from it: ``shift`` rolls every mask 4 px right and 2 px down, ``erode`` erodes it with
a 7x7 square, ``split`` cuts it into two objects (1 left, 2 right of the first frame's median
column) and shifts object 2 (a multi-object case). Sides, both on masks already in memory:

- ``visrep``: :func:`~visrep.tasks.vos_metrics.evaluate_sequence` (all frames of an object at
  once; boundaries matched at boundary pixels only), on ``--device``;
- ``official``: vos-benchmark's ``Evaluator.feed_frame`` (the davis2017-evaluation J and F:
  ``seg2bmap``, ``cv2.dilate`` with ``skimage`` ``disk``) frame by frame on the same frames
  (first and last left out, as its ``VideoEvaluator`` does), on the CPU.

Checked and printed (``same``): every object's J mean and F mean agree to 1e-6. Timed: sides
alternating over ``--rounds`` (ABBA order) after one warm-up call each, medians; frames/s counts
evaluated frames (``T - 2`` per sequence); ratio visrep / official (above 1: visrep faster).
``--threads`` sets torch's and OpenCV's thread counts alike.

    OMP_NUM_THREADS=1 python benchmarks/vos_metrics.py [--root DIR] [--sequences a,b]
        [--preds shift,erode,split] [--rounds 2] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _abba import abba
from PIL import Image

from visrep.tasks.vos_metrics import evaluate_sequence

ROOT = Path("/work/shared/data/davis2016-subset/DAVIS/Annotations/480p")
PREDS = ("shift", "erode", "split")


def load_gt(folder: Path) -> np.ndarray:
    """``(T, H, W)`` uint8 ids of one DAVIS 2016 sequence (object 255 -> 1)."""
    files = sorted(folder.glob("*.png"))
    if len(files) < 3:
        raise SystemExit(f"--sequences: {folder} holds {len(files)} PNG masks, need >= 3")
    return np.stack([(np.array(Image.open(f)) > 127).astype(np.uint8) for f in files])


def make_case(gt: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) ids for a prediction kind."""
    if kind == "shift":
        return np.roll(gt, (2, 4), axis=(1, 2)), gt
    if kind == "erode":
        x = torch.from_numpy(gt).float()[:, None]
        eroded = -F.max_pool2d(-x, 7, stride=1, padding=3)
        return eroded[:, 0].to(torch.uint8).numpy(), gt
    cols = np.nonzero(gt[0].any(0))[0]
    mid = int(np.median(cols)) if cols.size else gt.shape[2] // 2
    two = gt.copy()
    two[:, :, mid:] *= 2
    pred = np.where(two == 2, 0, two)
    pred = np.where(np.roll(two, (3, -5), axis=(1, 2)) == 2, 2, pred).astype(np.uint8)
    return pred, two


def official_sequence(pred: np.ndarray, gt: np.ndarray) -> tuple[dict, dict]:
    """vos-benchmark's VideoEvaluator on in-memory frames: per-object J and F means (x100)."""
    from vos_benchmark.evaluator import Evaluator

    ev = Evaluator(boundary=0.008)
    for p, g in zip(pred[1:-1], gt[1:-1], strict=True):
        ev.feed_frame(p, g)
    return ev.conclude()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--root", type=Path, default=ROOT, help="folder of sequence folders of PNG masks")
    add("--sequences", default="", help="comma-separated sequence names (default: all)")
    add("--preds", default=",".join(PREDS), help="comma-separated: " + ", ".join(PREDS))
    add("--rounds", type=int, default=2, help="ABBA rounds")
    add("--threads", type=int, default=1, help="torch and OpenCV threads")
    add("--device", default="cpu", help="visrep side: cpu or cuda")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.preds.split(",") if k.strip()]
    if not kinds or sorted(set(kinds) - set(PREDS)):
        ap.error(f"--preds: choose from {list(PREDS)}, got {kinds}")
    if not args.root.is_dir():
        ap.error(f"--root: {args.root} is not a folder")
    names = [s.strip() for s in args.sequences.split(",") if s.strip()] or sorted(
        p.name for p in args.root.iterdir() if p.is_dir()
    )
    import cv2
    import vos_benchmark  # noqa: F401  (fail early when the reference is missing)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(
        f"== vos_metrics: visrep evaluate_sequence vs vos-benchmark 0.1.0 (davis2017 J and F); "
        f"visrep on {dev}, official on cpu; threads={args.threads}; {args.rounds} rounds ABBA, "
        f"medians; fps = evaluated frames (T - 2) per second =="
    )
    print(
        f"  {'sequence':<12} {'pred':<6} {'frames':>6} {'objs':>4} {'visrep fps':>11} "
        f"{'official fps':>13} {'ratio':>6}  same  J&F"
    )
    totals = {"visrep": 0.0, "official": 0.0}
    n_frames = 0
    for name in names:
        gt_np = load_gt(args.root / name)
        for kind in kinds:
            pred_np, g_np = make_case(gt_np, kind)
            pred_t = torch.from_numpy(pred_np).to(dev)
            gt_t = torch.from_numpy(g_np).to(dev)
            sides = {
                "visrep": lambda p=pred_t, g=gt_t: evaluate_sequence(p, g),
                "official": lambda p=pred_np, g=g_np: official_sequence(p, g),
            }
            ours = sides["visrep"]()
            iou, bf = sides["official"]()
            ids = ours.object_ids.tolist()
            same = sorted(iou) == ids and all(
                abs(ours.j_stats["mean"][i].item() * 100 - iou[k]) < 1e-4
                and abs(ours.f_stats["mean"][i].item() * 100 - bf[k]) < 1e-4
                for i, k in enumerate(ids)
            )  # percent: 1e-4 here is 1e-6 of a score
            med = abba(sides, args.rounds, 1, sync)
            frames = len(gt_np) - 2
            n_frames += frames
            for s in totals:
                totals[s] += med[s]
            fps = {s: frames / v for s, v in med.items()}
            print(
                f"  {name:<12} {kind:<6} {frames:6d} {len(ids):4d} {fps['visrep']:11.1f} "
                f"{fps['official']:13.1f} {fps['visrep'] / fps['official']:6.2f}  "
                f"{'yes' if same else 'NO ':<4}  {ours.jf_mean.mean().item():.4f}"
            )
    fps = {s: n_frames / v for s, v in totals.items()}
    print(
        f"  {'all':<12} {'':<6} {n_frames:6d} {'':>4} {fps['visrep']:11.1f} "
        f"{fps['official']:13.1f} {fps['visrep'] / fps['official']:6.2f}"
    )


if __name__ == "__main__":
    main()
