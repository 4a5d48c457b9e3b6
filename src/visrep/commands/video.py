"""``visrep video info|show``: video files and frame folders from the command line.

* ``info FILE [FILE ...]``: codec, frame size, frame rate, frame count, duration and keyframes
  (how far a seek may have to decode) of video files; frame count and size of frame folders;
  ``--check`` decodes every frame to prove the count (a truncated file fails).
* ``show FILE -o strip.png|clip.gif [--start 0 --frames 8 --stride 1]``: a clip as a strip of
  frames (PNG) or an animated GIF, decoded by seeking, as the data modules read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from visrep.commands._common import Command, run_subcommands
from visrep.data.video.clips import clip_span
from visrep.data.video.io import (
    VIDEO_SUFFIXES,
    count_frames,
    iter_frames,
    list_frames,
    read_frame_folder,
    read_frames,
    seek_points,
    to_clip,
    video_info,
)
from visrep.errors import ConfigError, DataError
from visrep.plots.video import plot_clip_strips, save_gif


def _print(lines: dict[str, Any]) -> None:
    width = max(map(len, lines))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in lines.items()))


def _source(file: str) -> Path:
    p = Path(file)
    if p.is_dir():
        list_frames(p)  # a frame folder, or a DataError saying it holds no frames
        return p
    if not p.is_file():
        raise DataError(f"{file}: no such file or frame folder")
    return p


def _info_lines(p: Path, check: bool) -> dict[str, Any]:
    if p.is_dir():
        files = list_frames(p)
        first = read_frame_folder(p, [0])
        lines: dict[str, Any] = {"folder": str(p), "format": "frame folder"}
        lines["frames"] = f"{len(files):,} ({files[0].name} .. {files[-1].name})"
        lines["size"] = f"{first.shape[2]} x {first.shape[1]} (W x H)"
        if check:
            sum(len(c) for c in iter_frames(p))  # every frame decodable, all of one size
            lines["check"] = f"all {len(files):,} frames decoded, one size"
        return lines
    info = video_info(p)
    keys = seek_points(p)
    lines = {"file": str(p), "codec": info.codec}
    lines["size"] = f"{info.width} x {info.height} (W x H)"
    lines["fps"] = f"{info.fps:.6g}"
    lines["frames"] = f"{info.num_frames:,}"
    lines["duration"] = f"{info.duration:.3f} s"
    gaps = [b - a for a, b in zip(keys, [*keys[1:], info.num_frames], strict=True)]
    lines["keyframes"] = (
        f"{len(keys)} (longest stretch {max(gaps)} frames)"
        if keys
        else "none indexed (every read decodes from the start)"
    )
    if check:
        n = sum(len(c) for c in iter_frames(p))
        lines["check"] = f"{n:,} frames decoded"
    return lines


def info(files: list[str], *, check: bool = False) -> int:
    """Codec, size, frame rate, frames, duration and keyframes of video files / frame folders.

    Args:
        files: video files (.mp4, .avi, .mkv, .webm, .mov ...) or folders of frame images.
        check: decode every frame (slow for long videos) to prove the file is whole.
    """
    blocks = []
    for f in files:
        blocks.append(_info_lines(_source(f), check))
    for i, lines in enumerate(blocks):
        if i:
            print()
        _print(lines)
    return 0


def show(
    file: str,
    *,
    out: str,
    start: int = 0,
    frames: int = 8,
    stride: int = 1,
    fps: float | None = None,
) -> int:
    """Write a clip of a video file or frame folder as a frame strip (.png) or a GIF (.gif).

    Args:
        file: a video file or a folder of frame images.
        out: the .png (a strip of the frames) or .gif (the clip, animated) to write.
        start: the first frame (0-based).
        frames: frames in the clip.
        stride: frames between two shown frames.
        fps: GIF frame rate (default: the video's rate / stride; 8 for frame folders).
    """
    o = Path(out)
    if o.suffix.lower() not in (".png", ".gif"):
        raise ConfigError(f"-o {out}: expected a .png (frame strip) or .gif (animation) file")
    for name, v in (("frames", frames), ("stride", stride)):
        if v < 1:
            raise ConfigError(f"--{name} must be >= 1, got {v}")
    if start < 0:
        raise ConfigError(f"--start must be >= 0, got {start}")
    if fps is not None and fps <= 0:
        raise ConfigError(f"--fps must be > 0, got {fps}")
    p = _source(file)
    n = count_frames(p)
    rate = 8.0 * stride if p.is_dir() else video_info(p).fps
    end = start + clip_span(frames, stride)
    if end > n:
        raise DataError(
            f"{file}: frames {start}..{end - 1} (--start {start} --frames {frames} --stride "
            f"{stride}) go past the last frame {n - 1}"
        )
    ids = torch.arange(start, end, stride)
    raw = read_frames(p, ids)
    clip = to_clip(raw).as_subclass(torch.Tensor)
    if o.suffix.lower() == ".gif":
        save_gif(clip, o, fps or rate / stride)
        print(f"{o}: {len(ids)} frames {start}..{int(ids[-1])} at {fps or rate / stride:.3g} fps")
    else:
        title = f"{p.name} {start}..{int(ids[-1])}" + (f" /{stride}" if stride > 1 else "")
        plot_clip_strips(clip[None], [title], o, max_frames=frames, frame_ids=ids.tolist())
        print(f"{o}: {len(ids)} frames {start}..{int(ids[-1])}")
    return 0


COMMANDS = {
    "info": Command(info),
    "show": Command(show, aliases={"-o": "--out", "--output": "--out"}),
}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep video ...``; returns the exit code."""
    return run_subcommands(
        COMMANDS,
        "visrep video",
        f"video files ({', '.join(VIDEO_SUFFIXES)}) and frame folders: info, show",
        argv,
    )
