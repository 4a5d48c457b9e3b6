"""``visrep events info|show|convert|simulate``: event files from the command line.

* ``info FILE``: format, sensor size, number of events, duration, rate, polarity balance.
* ``show FILE --repr NAME -o out.png``: a representation as an image (``-o out.npy`` saves the
  ``(C, H, W)`` tensor instead).
* ``convert IN OUT``: any readable format to ``.npz``, ``.h5`` or ATIS ``.bin``.
* ``simulate INPUT OUT``: an image -> an N-MNIST-like saccade recording; a video or a folder of
  frames -> the events an event camera would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrep.commands._common import Command, run_subcommands
from visrep.data.datasets import IMAGE_EXTENSIONS
from visrep.errors import ConfigError, DataError
from visrep.events.io import READERS, WRITERS, read_events, write_events
from visrep.events.representations.registry import create_representation, list_representations
from visrep.events.simulate import saccade_events, simulate_events
from visrep.events.types import EventBatch, EventStream
from visrep.plots.events import plot_event_frames
from visrep.tasks.event_classification import event_frame_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
# The largest dense frame `show` renders: 2**28 float32 elements (1 GiB) per sample.
MAX_FRAME_ELEMENTS = 2**28
Size = tuple[int, int]


# -- info ------------------------------------------------------------------------------------------
# The simulator's saccade recording: three saccades of this many frames each.
FRAMES_PER_SACCADE = 20


def _refuse_folder(file: str) -> None:
    """One line for a folder given where an event file is expected."""
    if Path(file).is_dir():
        raise DataError(f"{file} is a folder; expected an event file")


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


def info(file: str, *, sensor_size: Size | None = None) -> int:
    """Summary of an event file: format, sensor size, count, duration, rate, polarity.

    Args:
        file: an event file.
        sensor_size: sensor size W H (default: what the file or its reader says).
    """
    _refuse_folder(file)
    path = Path(file)
    s = read_events(path, sensor_size)
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
def _check_frame_size(sensor: Size, channels: int = 1) -> None:
    """Refuse a dense frame larger than :data:`MAX_FRAME_ELEMENTS` before it is allocated."""
    w, h = sensor
    if w < 1 or h < 1:
        raise ConfigError(f"--sensor_size must be positive, got {w} x {h}")
    if channels * w * h > MAX_FRAME_ELEMENTS:
        raise ConfigError(
            f"sensor size {w} x {h} with {channels} channel(s) is a dense frame of "
            f"{channels * w * h:,} elements, more than the {MAX_FRAME_ELEMENTS:,} (1 GiB of "
            "float32) visrep events show renders; check --sensor_size"
        )


def show(
    file: str,
    *,
    out: str,
    repr: str = "count",
    repr_args: dict[str, Any] | None = None,
    sensor_size: Size | None = None,
) -> int:
    """Render a representation of an event file to .png, or save it as .npy.

    Args:
        file: an event file.
        out: out.png (an image) or out.npy (the (C, H, W) tensor); -o for short.
        repr: the representation, one of {reprs}.
        repr_args: the representation's options as JSON, e.g. '{{"bins": 5}}'.
        sensor_size: sensor size W H (default: what the file or its reader says).
    """
    path = Path(out)
    if path.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"-o {path}: expected a .png or .npy file")
    _refuse_folder(file)
    if sensor_size is not None:  # before the file is read at that size
        _check_frame_size(sensor_size)
    s = read_events(file, sensor_size)
    _check_frame_size(s.sensor_size)
    rep = create_representation(repr, s.sensor_size, **(repr_args or {})).eval()
    _check_frame_size(s.sensor_size, rep.out_channels)
    with torch.no_grad():
        frames = rep(EventBatch.from_streams([s]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, frames[0].numpy().astype(np.float32))
        print(f"{path}: {repr} tensor of shape {tuple(frames.shape[1:])} (C, H, W)")
        return 0
    title = f"{Path(file).name}: {repr}"
    plot_event_frames(frames[0], event_frame_image(frames)[0], title, path)
    print(f"{path}: {repr}, {frames.shape[1]} channels of {frames.shape[2]} x {frames.shape[3]}")
    return 0


show.__doc__ = show.__doc__.format(reprs=", ".join(list_representations()))


# -- convert ---------------------------------------------------------------------------------------
def _check_writable(path: Path) -> None:
    if path.suffix.lower() not in WRITERS:
        raise DataError(f"{path}: cannot write this format, expected one of {', '.join(WRITERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)


def convert(source: str, out: str, *, sensor_size: Size | None = None) -> int:
    """Convert an event file to .npz, .h5 or .bin.

    Args:
        source: an event file in any readable format.
        out: the output file ({writers}).
        sensor_size: sensor size W H (default: what the file or its reader says).
    """
    path = Path(out)
    _check_writable(path)
    _refuse_folder(source)
    s = read_events(source, sensor_size)
    write_events(s, path)
    print(f"{path}: {_summary(s)}")
    return 0


convert.__doc__ = convert.__doc__.format(writers=", ".join(WRITERS))


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


def simulate(
    source: str,
    out: str,
    *,
    fps: float | None = None,
    pos_threshold: float = 0.2,
    neg_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period: int = 0,
    shot_noise_rate: float = 0.0,
    log_eps: float | None = None,
    amplitude: float = 3.0,
    duration: int = 300_000,
    seed: int = 0,
) -> int:
    """Simulate an event camera: image -> saccade recording; video or frames -> events.

    Args:
        source: an image, a video, or a folder of frames.
        out: the event file to write ({writers}).
        fps: frame rate of a folder of frames (default 1000) or of a video (default: its own).
        pos_threshold: ON contrast threshold (log).
        neg_threshold: OFF contrast threshold (log).
        threshold_sigma: per-pixel threshold std.
        refractory_period: per-pixel dead time, us.
        shot_noise_rate: noise events per pixel, Hz.
        log_eps: log(I + eps) offset (default 0.1 for an image, 0.001 for frames).
        amplitude: saccade amplitude, pixels (image input).
        duration: saccade recording length, us (image input).
        seed: seed of the thresholds and the noise.
    """
    src, path = Path(source), Path(out)
    _check_writable(path)
    _check_simulator_options(
        pos_threshold=pos_threshold, neg_threshold=neg_threshold,
        threshold_sigma=threshold_sigma, refractory_period=refractory_period,
        shot_noise_rate=shot_noise_rate, log_eps=log_eps, amplitude=amplitude, duration=duration,
    )  # fmt: skip
    common: dict[str, Any] = {
        "pos_threshold": pos_threshold,
        "neg_threshold": neg_threshold,
        "threshold_sigma": threshold_sigma,
        "refractory_period": refractory_period,
        "shot_noise_rate": shot_noise_rate,
        "rng": np.random.default_rng(seed),
    }
    if log_eps is not None:
        common["log_eps"] = log_eps
    if src.is_file() and src.suffix.lower() in IMAGE_EXTENSIONS:
        s = saccade_events(_grey(src), amplitude=amplitude, duration=duration, **common)
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
            rate = fps or 1000.0
        elif src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS:
            frames, own_fps = _video(src)
            rate = fps or own_fps or 30.0
        else:
            raise DataError(
                f"{src}: expected an image ({', '.join(IMAGE_EXTENSIONS)}), a video "
                f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames"
            )
        if rate <= 0:
            raise ConfigError(f"--fps must be > 0, got {rate}")
        t = np.rint(np.arange(len(frames)) * 1e6 / rate).astype(np.int64)
        s = simulate_events(frames, t, **common)
        what = f"{len(frames)} frames at {rate:g} fps"
    write_events(s, path)
    print(f"{path}: {_summary(s)} ({what})")
    return 0


simulate.__doc__ = simulate.__doc__.format(writers=", ".join(WRITERS))


def _check_simulator_options(**values: float | None) -> None:
    """The simulator's options, checked here so that the message names the option."""
    for name, v in values.items():
        if v is None:
            continue
        if name in ("pos_threshold", "neg_threshold", "amplitude") and not v > 0:
            raise ConfigError(f"--{name} must be > 0, got {v}")
        if not v >= 0:
            raise ConfigError(f"--{name} must be >= 0, got {v}")
    shortest = 3 * FRAMES_PER_SACCADE
    if values["duration"] < shortest:
        raise ConfigError(
            f"--duration must be >= {shortest} us (three saccades of {FRAMES_PER_SACCADE} "
            f"frames), got {values['duration']}"
        )


def _summary(s: EventStream) -> str:
    """One line: number of events, sensor size and duration."""
    w, h = s.sensor_size
    return f"{len(s):,} events, sensor {w} x {h}, {s.duration / 1e3:.1f} ms"


COMMANDS = {
    "info": Command(info),
    "show": Command(
        show,
        aliases={"-o": "--out", "--output": "--out"},
        messages={
            "repr_args": "--repr_args is not JSON of the representation's options, e.g. "
            "'{\"bins\": 5}'"
        },
    ),
    "convert": Command(convert),
    "simulate": Command(simulate),
}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep events ...``; returns the exit code."""
    doc = "event files: info, show a representation, convert, simulate"
    return run_subcommands(COMMANDS, "visrep events", doc, argv)
