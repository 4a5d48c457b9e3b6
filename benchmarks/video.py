"""Video benchmarks: clip decoding against OpenCV, and training throughput against a plain loop.

``--sections`` (default ``reader,train``):

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

``train``: training clips/s of ``visrep fit --config CONFIG`` for each of ``--train-configs``
(default ``motion_c3d``, ``motion_i3d``: LightningCLI, the MovingDigitsDataModule's sample dicts,
VideoClassificationTask's steps with its metrics and logging, the warm-up + cosine schedule)
against a hand-written loop on the same network (``VIDEO_NETS.build`` of the config's ``net``
wrapped in ``VideoClassifier`` with the data's mean and std, as the task's ``build_net`` does;
seeded as the config seeds), data (the same ``MovingDigitsDataModule`` training set, so the same
clips rendered the same way, and the same ``EpochShuffleSampler`` order; torch's DataLoader
with the data module's collate, batch size and workers), loss (cross-entropy with the config's
label smoothing) and Adam settings (lr, betas, weight decay, biases and norm scales not
decayed); no scheduler, metrics or logging. Both run on the CPU in float32. Data: the config's
moving digits with ``--train-clips`` training clips (``--data.train_clips`` on visrep's side,
the data module's constructor on the plain side) and 64 validation and test clips (validation
runs on visrep's side only, untimed; no test); with ``--train-cache`` both sides get the same
temporary ``--data.cache_dir`` (the clips written once as ``.npy`` and memory-mapped), without
it both render clips when asked for (the configs' setting). Timed: the training batches of
each epoch after the first (visrep: a callback from the epoch's start to the end of its last
batch, before validation; plain: the whole epoch loop), wall and process CPU time, sides
alternating over ``--rounds`` (ABBA); medians give visrep / plain (above 1: visrep faster).

    OMP_NUM_THREADS=1 python benchmarks/video.py [--sections reader,train] [--rounds 3]
        [--reader-files a.mp4,b.avi] [--reader-len 16] [--reader-stride 2] [--reader-clips 4]
        [--train-configs motion_c3d,motion_i3d] [--train-clips 512] [--train-epochs 3]
        [--train-cache]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# first: it imports visrep.cli before Lightning (the CLI's environment on both sides)
from _fit_timing import Epochs, adam, compare, fit_epochs, time_epochs

from visrep.data.video import clip_indices, read_video_frames, video_info

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video-clips"
TRAIN_CONFIGS = ("motion_c3d", "motion_i3d")
EVAL_CLIPS = 64  # validation and test clips of the train section (validation is not timed)


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


# -- train: visrep fit against a plain loop --------------------------------------------------------
def _data_options(clips: int, cache_dir: str | None) -> dict[str, object]:
    """What the train section changes in the config's data module, on both sides."""
    opts: dict[str, object] = {
        "train_clips": clips, "val_clips": EVAL_CLIPS, "test_clips": EVAL_CLIPS
    }  # fmt: skip
    if cache_dir is not None:
        opts["cache_dir"] = cache_dir
    return opts


def visrep_fit(config: str, clips: int, epochs: int, cache_dir: str | None) -> Epochs:
    """``visrep fit --config CONFIG`` with ``clips`` training clips, in this process."""
    opts = [f"--data.{k}={v}" for k, v in _data_options(clips, cache_dir).items()]
    return fit_epochs(config, opts, epochs)


def plain_loop(config: str, clips: int, epochs: int, cache_dir: str | None) -> Epochs:
    """The config's network, training clips, loss and Adam settings in a hand-written loop."""
    import lightning as L
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from visrep.configs import read_config, resolve_config
    from visrep.data import LoaderConfig, MovingDigitsDataModule, SplitConfig
    from visrep.data.base import EpochShuffleSampler
    from visrep.data.samples import LABEL, VIDEO
    from visrep.models.video import VIDEO_NETS, VideoClassifier

    cfg = read_config(resolve_config(config))
    hp, data = cfg["model"]["init_args"], dict(cfg["data"]["init_args"])
    if cfg["data"]["class_path"] != "visrep.data.MovingDigitsDataModule":
        raise SystemExit(f"train: {config} does not train on visrep.data.MovingDigitsDataModule")
    L.seed_everything(cfg["seed_everything"], verbose=False)
    loader_cfg = LoaderConfig(**data.pop("loader", {}))
    split = SplitConfig(**data.pop("split")) if "split" in data else None
    dm = MovingDigitsDataModule(
        **{**data, **_data_options(clips, cache_dir)}, loader=loader_cfg, split=split
    )
    dm.setup()
    spec = dm.spec()
    # as VideoClassificationTask.build_net builds it
    net = VideoClassifier(
        VIDEO_NETS.build(
            hp["net"], spec.in_chans, spec.num_classes, spec.num_frames, spec.image_size
        ),
        spec.mean,
        spec.std,
        flow_scale=hp.get("flow_scale", 20.0),
    )
    if net.uses_flow:
        raise SystemExit(f"train: {config}'s network reads optical flow; the plain loop does not")
    opt = adam(net, hp["optim"])
    smoothing = hp.get("label_smoothing", 0.0)
    bs = loader_cfg.batch_size
    sampler = EpochShuffleSampler(dm.train_set, torch.initial_seed())
    loader = DataLoader(
        dm.train_set,
        batch_size=bs,
        sampler=sampler,
        drop_last=len(dm.train_set) > bs,
        num_workers=loader_cfg.num_workers,
        collate_fn=type(dm).collate_fn,
    )

    def run_epoch(epoch: int) -> int:
        sampler.set_epoch(epoch)
        n = 0
        for batch in loader:
            x, y = batch[VIDEO], batch[LABEL]
            loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        return n

    net.train()
    return time_epochs(epochs, run_epoch)


def bench_train(args: argparse.Namespace) -> None:
    """VideoClassificationTask's training throughput against a plain loop, per config."""
    configs = [c.strip() for c in args.train_configs.split(",") if c.strip()]
    print(
        f"== train: visrep fit --config CONFIG vs a plain loop (threads="
        f"{torch.get_num_threads()}; {args.train_clips} moving-digits training clips, "
        f"{EVAL_CLIPS} validation; clip cache {'on' if args.train_cache else 'off'}; "
        f"{args.train_epochs} epochs, the first not timed; {args.rounds} rounds, ABBA) =="
    )
    ratios = {}
    for config in configs:
        print(f"  -- {config}")
        with tempfile.TemporaryDirectory() as d:
            cache = d if args.train_cache else None
            run = (config, args.train_clips, args.train_epochs, cache)
            ratios[config] = compare(
                args.rounds, partial(plain_loop, *run), partial(visrep_fit, *run), "clips"
            )
    print(f"  {'config':<14} {'visrep/plain wall':>18} {'visrep/plain CPU':>17}")
    for config, (wall, cpu) in ratios.items():
        print(f"  {config:<14} {wall:18.4f} {cpu:17.4f}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "reader": bench_reader, "train": bench_train
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="reader,train", help="comma-separated: " + ", ".join(SECTIONS))
    add("--rounds", type=int, default=3, help="ABBA rounds")
    add("--reader-files", default="", help="reader: comma-separated video files")
    add("--reader-len", type=int, default=16, help="reader: frames per clip")
    add("--reader-stride", type=int, default=2, help="reader: frames between clip frames")
    add("--reader-clips", type=int, default=4, help="reader: clips per file (dense)")
    add("--train-configs", default=",".join(TRAIN_CONFIGS), help="train: comma-separated configs")
    add("--train-clips", type=int, default=512, help="train: training clips")
    add("--train-epochs", type=int, default=3, help="train: epochs per run (the first not timed)")
    add(
        "--train-cache",
        action="store_true",
        help="train: --data.cache_dir, one temporary folder per config, on both sides",
    )
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
