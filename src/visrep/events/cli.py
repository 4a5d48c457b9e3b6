"""``visrep events info|show|convert|simulate``: event files from the command line.

* ``info FILE``: format, sensor size, number of events, duration, rate, polarity balance.
* ``show FILE --repr NAME -o out.png``: a representation as an image (``-o out.npy`` saves the
  ``(C, H, W)`` tensor instead).
* ``convert IN OUT``: any readable format to ``.npz``, ``.h5`` or ATIS ``.bin``.
* ``simulate INPUT OUT``: an image -> an N-MNIST-like saccade recording; a video or a folder of
  frames -> the events an event camera would have seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from jsonargparse import ArgumentParser, Namespace

from visrep.errors import ConfigError, DataError
from visrep.events.datasets import read_event_file
from visrep.events.io import READERS, WRITERS, write_events
from visrep.events.representations.registry import (
    create_representation,
    list_representations,
)
from visrep.events.simulate import saccade_events, simulate_events
from visrep.events.types import EventBatch, EventStream

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep events", description=__doc__.splitlines()[0], exit_on_error=False
    )
    sub = p.add_subcommands(dest="command")
    size_help = "sensor size W H (default: what the file or its reader says)"

    info = ArgumentParser(
        description="format, sensor size, count, duration, rate", exit_on_error=False
    )
    info.add_argument("file", type=str, help="an event file")
    info.add_argument("--sensor_size", type=tuple[int, int] | None, default=None, help=size_help)
    sub.add_subcommand("info", info, help="summary of an event file")

    show = ArgumentParser(
        description="render a representation of an event file", exit_on_error=False
    )
    show.add_argument("file", type=str, help="an event file")
    show.add_argument(
        "--repr", type=str, default="count", help=f"one of {', '.join(list_representations())}"
    )
    show.add_argument(
        "--repr_args",
        type=str,
        default="{}",
        help="the representation's options as JSON, e.g. '{\"bins\": 5}'",
    )
    show.add_argument(
        "-o", "--output", type=str, required=True, help="out.png (image) or out.npy (tensor)"
    )
    show.add_argument("--sensor_size", type=tuple[int, int] | None, default=None, help=size_help)
    sub.add_subcommand("show", show, help="render a representation to .png or save it as .npy")

    conv = ArgumentParser(description="convert between event file formats", exit_on_error=False)
    conv.add_argument("input", type=str, help="an event file in any readable format")
    conv.add_argument("output", type=str, help=f"the output file ({', '.join(WRITERS)})")
    conv.add_argument("--sensor_size", type=tuple[int, int] | None, default=None, help=size_help)
    sub.add_subcommand("convert", conv, help="convert an event file to .npz, .h5 or .bin")

    sim = ArgumentParser(description="simulate an event camera", exit_on_error=False)
    sim.add_argument("input", type=str, help="an image, a video, or a folder of frames")
    sim.add_argument("output", type=str, help=f"the event file to write ({', '.join(WRITERS)})")
    sim.add_argument(
        "--fps",
        type=float | None,
        default=None,
        help="frame rate of a folder of frames (default 1000) or of a video (default: its own)",
    )
    sim.add_argument("--pos_threshold", type=float, default=0.2, help="ON contrast threshold (log)")
    sim.add_argument(
        "--neg_threshold", type=float, default=0.2, help="OFF contrast threshold (log)"
    )
    sim.add_argument("--threshold_sigma", type=float, default=0.03, help="per-pixel threshold std")
    sim.add_argument("--refractory_period", type=int, default=0, help="per-pixel dead time, us")
    sim.add_argument(
        "--shot_noise_rate", type=float, default=0.0, help="noise events per pixel, Hz"
    )
    sim.add_argument(
        "--log_eps",
        type=float | None,
        default=None,
        help="log(I + eps) offset (default 0.1 for an image, 0.001 for frames)",
    )
    sim.add_argument(
        "--amplitude", type=float, default=3.0, help="saccade amplitude, pixels (image input)"
    )
    sim.add_argument(
        "--duration", type=int, default=300_000, help="saccade recording length, us (image input)"
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of the thresholds and the noise")
    sub.add_subcommand(
        "simulate", sim, help="image -> saccade recording; video or frames -> events"
    )
    return p


# -- info ------------------------------------------------------------------------------------------
def _format_name(path: Path) -> str:
    ext = path.suffix.lower()
    if ext == ".bs2":
        return "ATIS .bin (N-MNIST layout, .bs2)"
    reader = READERS.get(ext)
    return (
        f"{ext} ({reader.__name__})"
        if reader
        else f"sniffed from content ({ext or 'no extension'})"
    )


def _info(cfg: Namespace) -> int:
    path = Path(cfg.file)
    s = read_event_file(path, cfg.sensor_size)
    dur = s.duration
    rate = len(s) / (dur * 1e-6) if dur > 0 else float("nan")
    on = int(s.p.sum())
    lines = {
        "file": str(path),
        "format": _format_name(path),
        "sensor_size": f"{s.sensor_size[0]} x {s.sensor_size[1]} (W x H)",
        "events": f"{len(s):,}",
        "time": f"{int(s.t[0]) if len(s) else 0} .. {int(s.t[-1]) if len(s) else 0} us",
        "duration": f"{dur / 1e3:.3f} ms",
        "rate": f"{rate / 1e6:.4f} Mev/s" if dur > 0 else "n/a",
        "polarity": f"{on:,} ON / {len(s) - on:,} OFF",
    }
    if len(s):
        lines["extent"] = (
            f"x {int(s.x.min())}..{int(s.x.max())}, y {int(s.y.min())}..{int(s.y.max())}"
        )
    width = max(map(len, lines))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in lines.items()))
    return 0


# -- show ------------------------------------------------------------------------------------------
def _show(cfg: Namespace) -> int:
    import torch

    from visrep.plots.events import plot_event_frames
    from visrep.tasks.event_classification import event_frame_image

    out = Path(cfg.output)
    if out.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"-o {out}: expected a .png or .npy file")
    try:
        opts = json.loads(cfg.repr_args)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--repr_args is not JSON: {cfg.repr_args!r} ({e.msg})") from None
    if not isinstance(opts, dict):
        raise ConfigError(f"--repr_args must be a JSON object, got {cfg.repr_args!r}")
    s = read_event_file(cfg.file, cfg.sensor_size)
    rep = create_representation(cfg.repr, s.sensor_size, **opts).eval()
    with torch.no_grad():
        frames = rep(EventBatch.from_streams([s]))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, frames[0].numpy().astype(np.float32))
        print(f"{out}: {cfg.repr} tensor of shape {tuple(frames.shape[1:])} (C, H, W)")
        return 0
    title = f"{Path(cfg.file).name}: {cfg.repr}"
    plot_event_frames(frames[0], event_frame_image(frames)[0], title, out)
    print(f"{out}: {cfg.repr}, {frames.shape[1]} channels of {frames.shape[2]} x {frames.shape[3]}")
    return 0


# -- convert ---------------------------------------------------------------------------------------
def _check_writable(path: Path) -> None:
    if path.suffix.lower() not in WRITERS:
        raise DataError(f"{path}: cannot write this format, expected one of {', '.join(WRITERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)


def _convert(cfg: Namespace) -> int:
    out = Path(cfg.output)
    _check_writable(out)
    s = read_event_file(cfg.input, cfg.sensor_size)
    write_events(s, out)
    print(f"{out}: {_summary(s)}")
    return 0


# -- simulate --------------------------------------------------------------------------------------
def _grey(path: Path) -> np.ndarray:
    """An image file as uint8 grey levels (the simulator scales them to [0, 1])."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None


def _video(path: Path) -> tuple[np.ndarray, float]:
    try:
        import cv2
    except ImportError:
        raise DataError(
            f"{path}: reading videos needs OpenCV (pip install opencv-python)"
        ) from None
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    if len(frames) < 2:
        raise DataError(f"{path}: could not read at least 2 video frames")
    return np.stack(frames), fps


def _simulate(cfg: Namespace) -> int:
    src, out = Path(cfg.input), Path(cfg.output)
    _check_writable(out)
    common = {
        "pos_threshold": cfg.pos_threshold,
        "neg_threshold": cfg.neg_threshold,
        "threshold_sigma": cfg.threshold_sigma,
        "refractory_period": cfg.refractory_period,
        "shot_noise_rate": cfg.shot_noise_rate,
        "rng": np.random.default_rng(cfg.seed),
    }
    if cfg.log_eps is not None:
        common["log_eps"] = cfg.log_eps
    if src.is_file() and src.suffix.lower() in IMAGE_EXTENSIONS:
        s = saccade_events(_grey(src), amplitude=cfg.amplitude, duration=cfg.duration, **common)
        what = "saccade recording of an image"
    else:
        if src.is_dir():
            files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if len(files) < 2:
                raise DataError(
                    f"{src}: a folder of frames needs at least 2 images, found {len(files)}"
                )
            frames = np.stack([_grey(f) for f in files])
            if frames.ndim != 3:
                raise DataError(f"{src}: frames must all have one size")
            fps = cfg.fps or 1000.0
        elif src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS:
            frames, own_fps = _video(src)
            fps = cfg.fps or own_fps or 30.0
        else:
            raise DataError(
                f"{src}: expected an image ({', '.join(IMAGE_EXTENSIONS)}), a video "
                f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames"
            )
        if fps <= 0:
            raise ConfigError(f"--fps must be > 0, got {fps}")
        t = np.rint(np.arange(len(frames)) * 1e6 / fps).astype(np.int64)
        s = simulate_events(frames, t, **common)
        what = f"{len(frames)} frames at {fps:g} fps"
    write_events(s, out)
    print(f"{out}: {_summary(s)} ({what})")
    return 0


def _summary(s: EventStream) -> str:
    """One line: number of events, sensor size and duration."""
    return f"{len(s):,} events, sensor {s.sensor_size[0]} x {s.sensor_size[1]}, {s.duration / 1e3:.1f} ms"


COMMANDS = {"info": _info, "show": _show, "convert": _convert, "simulate": _simulate}


def main(argv: list[str]) -> int:
    """Run ``visrep events ...``; returns the exit code."""
    cfg = build_parser().parse_args(argv)
    return COMMANDS[cfg.command](cfg[cfg.command])
