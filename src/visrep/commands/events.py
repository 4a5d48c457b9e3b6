"""``visrep events info|show|convert|simulate``: event files from the command line.

* ``info FILE``: format, sensor size, number of events, duration, rate, polarity balance.
* ``show FILE --repr NAME -o out.png``: a representation as an image (``-o out.npy`` saves the
  ``(C, H, W)`` tensor instead, ``-o out.gif`` / ``out.mp4`` draws it per time window as a clip).
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
from visrep.data.video.io import write_video
from visrep.errors import ConfigError, DataError
from visrep.events.io import READERS, WRITERS, read_events, write_events
from visrep.events.representations.registry import create_representation, list_representations
from visrep.events.simulate import saccade_events, simulate_events
from visrep.events.types import EventBatch, EventStream
from visrep.plots.events import PERCENTILE, event_images, plot_event_frames
from visrep.plots.video import save_gif

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
# The largest dense frame `show` renders: 2**28 float32 elements (1 GiB) per sample.
MAX_FRAME_ELEMENTS = 2**28
IMAGE_OUTPUTS = (".png", ".npy")
CLIP_OUTPUTS = (".gif", ".mp4")
# Clips: the default window is 1/CLIP_RATE s; frames are enlarged to CLIP_MIN_SIDE pixels.
CLIP_RATE = 30.0
CLIP_MIN_SIDE = 256
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
    percentile: float = PERCENTILE,
    window_us: int | None = None,
    fps: float | None = None,
    max_frames: int = 300,
    zoom: int | None = None,
) -> int:
    """Render an event file: a representation as .png or .npy, or the stream as a .gif/.mp4 clip.

    Colours saturate at a percentile of the non-zero values, so hot pixels do not set the
    scale; counts are on a log scale, signed maps (voxel) diverge from white at 0, and the
    composite and the clips draw ON events red and OFF events blue on white.

    Args:
        file: an event file.
        out: out.png (a picture), out.npy (the (C, H, W) tensor), or a clip of the stream cut
            into time windows, one frame each: out.gif, or out.mp4 (H.264); -o for short.
        repr: the representation, one of {reprs}; a clip draws it per window.
        repr_args: the representation's options as JSON, e.g. '{{"bins": 5}}'.
        sensor_size: sensor size W H (default: what the file or its reader says).
        percentile: colours saturate at this percentile of the non-zero |values|, in (0, 100].
        window_us: clip: microseconds of events per frame (default 1/30 s, longer where that
            makes more than --max_frames frames).
        fps: clip: frames per second of playback (default: real time, 1e6 / window_us).
        max_frames: clip: at most this many frames; later events are left out.
        zoom: clip: integer enlargement of each frame (default: the smallest that makes the
            longer side at least {min_side} pixels).
    """
    path = Path(out)
    ext = path.suffix.lower()
    if ext not in IMAGE_OUTPUTS + CLIP_OUTPUTS:
        raise ConfigError(f"-o {path}: expected a .png or .npy file, or a .gif or .mp4 clip")
    _check_show_options(percentile, window_us, fps, max_frames, zoom)
    _refuse_folder(file)
    if sensor_size is not None:  # before the file is read at that size
        _check_frame_size(sensor_size)
    s = read_events(file, sensor_size)
    _check_frame_size(s.sensor_size)
    rep = create_representation(repr, s.sensor_size, **(repr_args or {})).eval()
    _check_frame_size(s.sensor_size, rep.out_channels)
    if ext in CLIP_OUTPUTS:
        if len(s) == 0:
            raise DataError(f"{file}: no events, nothing to draw in {path.name}")
        return _show_clip(s, rep, repr, path, percentile, window_us, fps, max_frames, zoom)
    with torch.no_grad():
        frames = rep(EventBatch.from_streams([s]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npy":
        np.save(path, frames[0].numpy().astype(np.float32))
        print(f"{path}: {repr} tensor of shape {tuple(frames.shape[1:])} (C, H, W)")
        return 0
    title = f"{Path(file).name}: {repr}"
    plot_event_frames(frames[0], None, title, path, name=repr, percentile=percentile)
    print(f"{path}: {repr}, {frames.shape[1]} channels of {frames.shape[2]} x {frames.shape[3]}")
    return 0


def _check_show_options(
    percentile: float, window_us: int | None, fps: float | None, max_frames: int, zoom: int | None
) -> None:
    if not 0 < percentile <= 100:
        raise ConfigError(f"--percentile must be in (0, 100], got {percentile}")
    if window_us is not None and window_us <= 0:
        raise ConfigError(f"--window_us must be > 0 microseconds, got {window_us}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be > 0, got {fps}")
    if max_frames < 1:
        raise ConfigError(f"--max_frames must be >= 1, got {max_frames}")
    if zoom is not None and zoom < 1:
        raise ConfigError(f"--zoom must be an integer >= 1, got {zoom}")


def _event_windows(s: EventStream, window_us: int, max_frames: int) -> EventBatch:
    """The stream cut into consecutive windows ``[t0 + k w, t0 + (k + 1) w)``, one sample each.

    At most ``max_frames`` windows; later events are left out. A view of the events with
    offsets from one ``searchsorted``: no copy per window, no padding.
    """
    t0 = int(s.t[0])
    n = min(-(-(int(s.t[-1]) - t0 + 1) // window_us), max_frames)
    offsets = np.searchsorted(s.t, t0 + window_us * np.arange(n + 1, dtype=np.int64), "left")
    k = int(offsets[-1])
    return EventBatch(
        x=torch.from_numpy(s.x[:k].astype(np.int32)),
        y=torch.from_numpy(s.y[:k].astype(np.int32)),
        t=torch.from_numpy(s.t[:k].copy()),
        p=torch.from_numpy(s.p[:k].copy()),
        offsets=torch.from_numpy(offsets.astype(np.int64)),
        sensor_size=s.sensor_size,
    )


def _show_clip(
    s: EventStream,
    rep: torch.nn.Module,
    name: str,
    path: Path,
    percentile: float,
    window_us: int | None,
    fps: float | None,
    max_frames: int,
    zoom: int | None,
) -> int:
    """``show`` of a .gif or .mp4: the representation of each window, one colour scale."""
    span = int(s.t[-1]) - int(s.t[0]) + 1
    if window_us is None:  # 1/30 s per frame, or the whole recording in max_frames frames
        window_us = max(round(1e6 / CLIP_RATE), -(-span // max_frames))
    batch = _event_windows(s, window_us, max_frames)
    n = len(batch)
    w, h = s.sensor_size
    if n * rep.out_channels * w * h > MAX_FRAME_ELEMENTS:
        fit = max(1, MAX_FRAME_ELEMENTS // (rep.out_channels * w * h))
        raise ConfigError(
            f"--max_frames: {n} frames of {rep.out_channels} x {w} x {h} exceed the "
            f"{MAX_FRAME_ELEMENTS:,} elements visrep events show renders; use at most {fit}"
        )
    with torch.no_grad():
        frames = rep(batch)
    rgb = event_images(frames, name, percentile=percentile, joint=True)  # (F, 3, H, W)
    fh, fw = rgb.shape[-2:]
    z = zoom or max(1, -(-CLIP_MIN_SIDE // max(fh, fw)))
    rgb = rgb.repeat_interleave(z, -2).repeat_interleave(z, -1)
    rate = fps or 1e6 / window_us
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        save_gif(rgb, path, fps=rate)
    else:  # H.264 in 4:2:0 needs even sides: pad with the white background
        rgb = torch.nn.functional.pad(rgb, (0, rgb.shape[-1] % 2, 0, rgb.shape[-2] % 2), value=1.0)
        u8 = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        write_video(path, u8, fps=rate)
    left = len(s) - batch.num_events
    cut = f"; {left:,} later events left out (--max_frames)" if left else ""
    print(
        f"{path}: {n} frames of {window_us / 1e3:g} ms ({name}) at {rate:.4g} fps, "
        f"{rgb.shape[-1]} x {rgb.shape[-2]} px{cut}"
    )
    return 0


show.__doc__ = show.__doc__.format(reprs=", ".join(list_representations()), min_side=CLIP_MIN_SIDE)


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
        what = f"{len(frames)} frames at {rate:.4g} fps"
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
