"""Video benchmarks: clip decoding against OpenCV.

``--sections`` (default ``reader``):

``reader``: decoded frames/s of :func:`~visrep.data.video.read_video_frames` (PyAV: one open
per clip, a seek to the keyframe at or before the clip, decoding forward; frame-threaded
FFmpeg decoding) against ``cv2.VideoCapture`` reading the same frames (one open per clip,
``CAP_PROP_POS_FRAMES`` set to the clip's first frame, then ``grab`` for every frame and
``retrieve`` + BGR->RGB for the clip's frames), as a data loader reads a clip per sample. Per
file, ``--reader-clips`` clips of ``--reader-len`` frames ``--reader-stride`` apart, spread
evenly over the video (:func:`~visrep.data.video.clip_indices`, ``dense``). Both sides return
``(T, H, W, 3)`` uint8 RGB; the mean absolute difference of the two (levels) is printed, so a
wrong OpenCV seek would show. Timed: all clips of a file per call, after one untimed warm-up
call per side (visrep's demux index is cached per file after its first use, as in training),
sides alternating over ``--rounds`` (ABBA); medians; ratio visrep / OpenCV (above 1: visrep
faster). Files: ``--reader-files`` or the clips under ``../shared/data/video-clips``.

    OMP_NUM_THREADS=1 python benchmarks/video.py [--sections reader] [--rounds 3]
        [--reader-files a.mp4,b.avi] [--reader-len 16] [--reader-stride 2] [--reader-clips 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from visrep.data.video import clip_indices, read_video_frames, video_info

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video-clips"


# -- reader: read_video_frames against cv2.VideoCapture -------------------------------------------
def cv2_read(path: Path, indices: list[int]) -> np.ndarray:
    """The frames at ``indices`` (increasing) as OpenCV reads them: seek, then grab forward."""
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
    want = set(indices)
    out = []
    pos = indices[0]
    while pos <= indices[-1]:
        if not cap.grab():
            raise RuntimeError(f"{path}: OpenCV stops at frame {pos}")
        if pos in want:
            out.append(cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB))
        pos += 1
    cap.release()
    return np.stack(out)


def _reader_case(path: Path, clips: torch.Tensor, rounds: int) -> tuple[dict[str, float], float]:
    rows = [c.tolist() for c in clips]
    sides: dict[str, Callable[[], list[np.ndarray]]] = {
        "visrep": lambda: [read_video_frames(path, r).numpy() for r in rows],
        "opencv": lambda: [cv2_read(path, r) for r in rows],
    }
    results = {s: f() for s, f in sides.items()}  # warm-up (and the frames compared)
    diff = float(
        np.mean(
            [
                np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
                for a, b in zip(results["visrep"], results["opencv"], strict=True)
            ]
        )
    )
    times: dict[str, list[float]] = {s: [] for s in sides}
    order = list(sides)
    for r in range(rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            sides[side]()
            times[side].append(time.perf_counter() - t)
    frames = clips.numel()
    return {s: frames / statistics.median(times[s]) for s in sides}, diff


def bench_reader(args: argparse.Namespace) -> None:
    """Clip decoding: visrep's seeking PyAV reader against OpenCV's VideoCapture."""
    if args.reader_files:
        files = [Path(f.strip()) for f in args.reader_files.split(",") if f.strip()]
    else:
        files = sorted(
            f for f in SHARED_CLIPS.rglob("*") if f.suffix.lower() in (".mp4", ".avi", ".mkv")
        )
    if not files:
        raise SystemExit(f"reader: no video files (give --reader-files; {SHARED_CLIPS} is empty)")
    print(
        f"== reader: decoded frames/s of visrep read_video_frames (PyAV) vs cv2.VideoCapture "
        f"(OpenCV {cv2.__version__}, cv2 threads={cv2.getNumThreads()}, torch threads="
        f"{torch.get_num_threads()}); per file {args.reader_clips} dense clips of "
        f"{args.reader_len} frames at stride {args.reader_stride}, one open per clip; "
        f"{args.rounds} rounds, ABBA, medians =="
    )
    print(
        f"  {'file':<12} {'codec':<8} {'size':>9} {'frames':>6} {'visrep f/s':>11} "
        f"{'opencv f/s':>11} {'visrep/opencv':>14} {'mean |diff|':>12}"
    )
    for path in files:
        info = video_info(path)
        clips = clip_indices(
            info.num_frames, args.reader_len, args.reader_stride, "dense", args.reader_clips
        )
        rate, diff = _reader_case(path, clips, args.rounds)
        print(
            f"  {path.name:<12} {info.codec:<8} {f'{info.width}x{info.height}':>9} "
            f"{info.num_frames:>6} {rate['visrep']:11.1f} {rate['opencv']:11.1f} "
            f"{rate['visrep'] / rate['opencv']:14.2f} {diff:12.3f}"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"reader": bench_reader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="reader", help="comma-separated: " + ", ".join(SECTIONS))
    add("--rounds", type=int, default=3, help="ABBA rounds")
    add("--reader-files", default="", help="reader: comma-separated video files")
    add("--reader-len", type=int, default=16, help="reader: frames per clip")
    add("--reader-stride", type=int, default=2, help="reader: frames between clip frames")
    add("--reader-clips", type=int, default=4, help="reader: clips per file (dense)")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
