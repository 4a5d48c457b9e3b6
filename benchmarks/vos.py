"""One-shot VOS inference benchmark (issue 16): ReConvNet and the OSMN-style network against
OSVOS counted with its per-sequence fine-tuning, in frames per second, on a real DAVIS sequence.

All three networks are built as the configs build them (``reconvnet_davis``, ``osmn_davis``,
``osvos_davis``: 4 stages 16-32-64-128, frames at ``--size``), with their initial weights (speed
does not depend on them). A side segments one whole sequence (``--sequence`` of ``--root``,
every frame at ``--size``, one object) the way the task does at test time: ReConvNet and OSMN in
one pass from the first frame's mask; OSVOS first takes ``--finetune_steps`` Adam steps on the
first frame (a copy of the parent), then segments every frame. Sides alternate over
``--rounds`` (ABBA order) after a warm-up; medians; the ratio is frames/s over OSVOS's (above 1:
faster than OSVOS). The per-frame J&F of trained networks is in the run directories, not here.

    OMP_NUM_THREADS=1 python benchmarks/vos.py [--root DIR] [--sequence dog] [--size 120 216]
        [--finetune_steps 50] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _abba import abba

from visrep.data.samples import META, OBJECT_MASKS, VIDEO
from visrep.data.vos import DavisVosDataModule, VosSequences, find_vos_sequences
from visrep.tasks import VideoObjectSegmentationTask

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016-subset" / "DAVIS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--sequence", default="dog")
    ap.add_argument("--size", type=int, nargs=2, default=[120, 216])
    ap.add_argument("--finetune_steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seqs = find_vos_sequences(args.root)
    sample = VosSequences([seqs[args.sequence]], tuple(args.size))[0]
    batch = {
        VIDEO: sample[VIDEO][None],
        OBJECT_MASKS: sample[OBJECT_MASKS][None],
        META: [sample[META]],
    }
    spec_source = None
    tasks = {}
    for method in ("reconvnet", "osmn", "osvos"):
        rec = (2, 3) if method == "reconvnet" else ()
        task = VideoObjectSegmentationTask(
            method, recurrent_stages=rec, finetune_steps=args.finetune_steps
        )
        if spec_source is None:
            others = [s for s in seqs if s != args.sequence]
            dm = DavisVosDataModule(
                args.root,
                train_sequences=others[:1],
                test_sequences=[args.sequence],
                size=tuple(args.size),
            )
            dm.setup("test")
            spec_source = dm.spec()
        task.setup_spec(spec_source)
        tasks[method] = task.eval()

    def run(method: str):
        def go() -> None:
            with torch.inference_mode():
                tasks[method]._segment(batch)

        return go

    t = len(sample[VIDEO])
    print(f"sequence {args.sequence}: {t} frames at {args.size[0]}x{args.size[1]}, "
          f"J&F at {tuple(sample[OBJECT_MASKS].shape[-2:])}; threads {args.threads}; "
          f"OSVOS fine-tuning {args.finetune_steps} steps")  # fmt: skip
    secs = abba({m: run(m) for m in tasks}, args.rounds, 1, lambda: None)
    base = t / secs["osvos"]
    for m, s in secs.items():
        fps = t / s
        print(
            f"{m:10s} {s:8.3f} s / sequence  {fps:8.2f} frames/s  {1000 / fps:8.2f} ms/frame  x{fps / base:6.2f} vs OSVOS"
        )


if __name__ == "__main__":
    main()
