"""Video files and frame folders: metadata, seeking frame-accurate decoding (PyAV), clips.

A video file is indexed once (its packets demuxed, nothing decoded) to learn its frame count and
the presentation index of every keyframe; :func:`read_video_frames` then seeks to the keyframe at
or before each requested frame and decodes forward only as far as needed, so a 16-frame clip of a
long video costs one GOP or two of decoding, never the whole file. Frame ``i`` is the ``i``-th
frame a plain sequential decode outputs (what OpenCV's ``VideoCapture.read`` counts), so indices
agree across codecs whose timestamps do not (packed B-frames in MPEG-4 AVI give out-of-order
pts; H.264 open GOPs give leading frames before their keyframe).
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch import Tensor
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

from visrep.errors import DataError, ShapeError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds (its first video stream).

    Attributes:
        path: the file.
        codec: the decoder's name (``h264``, ``mpeg4``, ``msmpeg4`` ...).
        width, height: frame size in pixels.
        fps: the average frame rate.
        num_frames: frames a sequential decode yields (counted from the packets, not the header).
        duration: seconds (``num_frames / fps``).
    """

    path: str
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float


@dataclass(frozen=True)
class _Index:
    """A demuxed video's seek table: keyframe pts and their presentation ranks (sorted)."""

    info: VideoInfo
    key_pts: tuple[int, ...]  # pts of the keyframes, in presentation order
    key_rank: tuple[int, ...]  # presentation index of each keyframe


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable video file ({e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: the file has no video stream")
    return container


@functools.lru_cache(maxsize=1 << 17)  # a few hundred bytes each; UCF101 has 13,320 videos
def _index_cached(path: str, mtime_ns: int, size: int) -> _Index:
    p = Path(path)
    container = _open(p)
    try:
        stream = container.streams.video[0]
        stamps: list[int] = []
        keys: list[int] = []
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet
                    continue
                n += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                stamps.append(ts)
                if packet.is_keyframe:
                    keys.append(ts)
        except av.FFmpegError as e:
            raise DataError(f"{p}: corrupt or truncated video ({e})") from None
        ctx = stream.codec_context
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if n == 0 or ctx.width == 0:
            raise DataError(f"{p}: the video stream holds no frames")
        if fps <= 0:
            raise DataError(f"{p}: the video stream gives no frame rate")
        info = VideoInfo(str(p), ctx.name, ctx.width, ctx.height, fps, n, n / fps)
        order = np.sort(np.asarray(stamps, dtype=np.int64))
        if len(stamps) != n or not keys:
            # no usable timestamps: every read decodes from the start
            return _Index(info, (), ())
        keys = sorted(set(keys))
        ranks = np.searchsorted(order, np.asarray(keys, dtype=np.int64)).tolist()
        return _Index(info, tuple(int(k) for k in keys), tuple(int(r) for r in ranks))
    finally:
        container.close()


def _index(path: str | Path) -> _Index:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise DataError(f"{p}: no such video file") from None
    return _index_cached(str(p), st.st_mtime_ns, st.st_size)


def video_info(path: str | Path) -> VideoInfo:
    """Codec, size, frame rate, frame count and duration of a video file (demuxed, not decoded).

    Raises:
        DataError: the file is missing, not a video, or holds no frames.
    """
    return _index(path).info


def seek_points(path: str | Path) -> list[int]:
    """Frame indices of a video's keyframes (where a seek lands; empty: no usable timestamps)."""
    return list(_index(path).key_rank)


def _frames_from(
    container: av.container.InputContainer, stream: av.VideoStream, idx: _Index, k: int
) -> tuple[Iterator[av.VideoFrame], int]:
    """Decoded frames from keyframe ``k`` on (``k = -1``: from the start), and the first's index."""
    if k < 0:
        container.seek(0)
        return container.decode(stream), 0
    target = idx.key_pts[k]
    container.seek(target, stream=stream, backward=True, any_frame=False)
    frames = container.decode(stream)
    for f in frames:
        if f.pts is not None and f.pts < target:
            continue  # a leading frame of an open GOP (it belongs before the keyframe)
        if f.pts is not None and f.pts != target:
            break  # the demuxer landed elsewhere: decode from the start instead
        return _chain(f, frames), idx.key_rank[k]
    container.seek(0)
    return container.decode(stream), 0


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest


def _rgb(
    rgb: VideoReformatter, frame: av.VideoFrame, p: Path, i: int, first: list[tuple[int, int, int]]
) -> np.ndarray:
    """Frame ``i`` as ``(H, W, 3)`` uint8 RGB, refused when its size is not that of ``first``
    (``[(index, H, W)]`` of the first frame decoded; filled by the first call)."""
    if not first:
        first.append((i, frame.height, frame.width))
    elif (frame.height, frame.width) != first[0][1:]:
        raise DataError(
            f"{p}: frame {i} size {(frame.height, frame.width)} differs from {first[0][1:]} of "
            f"frame {first[0][0]} (the frame size changes within the video)"
        )
    return rgb.reformat(frame, format="rgb24").to_ndarray()


def read_video_frames(path: str | Path, indices: Sequence[int] | Tensor) -> Tensor:
    """The frames at ``indices`` of a video file, decoded with PyAV (FFmpeg).

    Seeks to the keyframe at or before each wanted frame and decodes forward from it, reusing
    the decoder when the next wanted frame lies ahead in the same stretch; frames come back in
    the order asked (repeats allowed).

    Args:
        path: a video file.
        indices: frame indices, ``0 <= i < num_frames``.

    Returns:
        ``(T, H, W, 3)`` uint8 RGB.

    Raises:
        DataError: missing, undecodable or truncated file; an index outside the video.
    """
    p = Path(path)
    want = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).numpy()
    idx = _index(p)
    n = idx.info.num_frames
    if want.size == 0:
        return torch.zeros(0, idx.info.height, idx.info.width, 3, dtype=torch.uint8)
    if want.min() < 0 or want.max() >= n:
        raise DataError(
            f"{p}: frame indices must be in [0, {n - 1}] (the video has {n} frames), "
            f"got {int(want.min())}..{int(want.max())}"
        )
    wanted = np.unique(want)
    got: dict[int, np.ndarray] = {}
    container = _open(p)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames: Iterator[av.VideoFrame] | None = None
        # one scaler context for all frames: to_ndarray() builds one per frame, 2-3x slower
        rgb = VideoReformatter()
        first: list[tuple[int, int, int]] = []
        pos = 0
        for i in wanted.tolist():
            k = bisect.bisect_right(idx.key_rank, i) - 1
            key_at = idx.key_rank[k] if k >= 0 else 0
            if frames is None or pos > i or key_at > pos:
                frames, pos = _frames_from(container, stream, idx, k)
            while pos <= i:
                frame = next(frames, None)
                if frame is None:
                    raise DataError(
                        f"{p}: frame {i} could not be decoded: the stream ends at frame {pos} "
                        f"of the {n} its packets announce (truncated or corrupt file?)"
                    )
                if pos == i:
                    got[i] = _rgb(rgb, frame, p, i, first)
                pos += 1
    except av.FFmpegError as e:
        raise DataError(f"{p}: cannot decode the video ({e})") from None
    finally:
        container.close()
    stack = np.stack([got[i] for i in wanted.tolist()])
    where = np.searchsorted(wanted, want)
    return torch.from_numpy(stack[where])


def iter_video_frames(path: str | Path, chunk: int = 64) -> Iterator[Tensor]:
    """A sequential decode of a whole video file, in chunks of at most ``chunk`` frames.

    Yields:
        ``(n, H, W, 3)`` uint8 RGB, frames ``0, 1, ...`` in order (the same frames as
        :func:`read_video_frames` gives for those indices), without holding the video whole.

    Raises:
        DataError: missing, undecodable or truncated file.
    """
    p = Path(path)
    n = _index(p).info.num_frames
    container = _open(p)
    got = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        buf: list[np.ndarray] = []
        rgb = VideoReformatter()
        first: list[tuple[int, int, int]] = []
        for frame in container.decode(stream):
            buf.append(_rgb(rgb, frame, p, got + len(buf), first))
            if len(buf) == chunk:
                got += len(buf)
                yield torch.from_numpy(np.stack(buf))
                buf = []
        if buf:
            got += len(buf)
            yield torch.from_numpy(np.stack(buf))
    except av.FFmpegError as e:
        raise DataError(f"{p}: cannot decode the video ({e})") from None
    finally:
        container.close()
    if got < n:
        raise DataError(
            f"{p}: the stream ends at frame {got} of the {n} its packets announce "
            "(truncated or corrupt file?)"
        )


def write_video(
    path: str | Path,
    frames: Tensor,
    fps: float = 25.0,
    codec: str = "libx264",
    gop: int = 12,
    b_frames: int = 2,
    quality: int | None = None,
) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames into a video file with PyAV (FFmpeg).

    Args:
        path: the file; its suffix picks the container (``.mp4``, ``.avi``, ``.mkv`` ...).
        frames: the frames (``H`` and ``W`` even for the YUV 4:2:0 codecs).
        fps: frame rate.
        codec: an FFmpeg encoder (``libx264``, ``mpeg4``, ``msmpeg4v3``, ``mjpeg`` ...).
        gop: frames between keyframes.
        b_frames: consecutive B-frames (0: none).
        quality: the encoder's constant quality (``crf`` of libx264, ``qscale`` otherwise);
            None: the encoder's default.

    Returns:
        ``path``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ShapeError(f"write_video expects (T, H, W, 3) uint8, got {tuple(frames.shape)}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(p), mode="w") as container:
        options = {"crf": str(quality)} if quality is not None and codec == "libx264" else {}
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        if quality is not None and codec != "libx264":
            stream.codec_context.qscale = quality
        for frame in frames.numpy():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p


def _natural_key(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """The image files of a frame folder (``.jpg .jpeg .png .bmp``), in natural order.

    ``frame2.jpg`` comes before ``frame10.jpg``.

    Raises:
        DataError: the folder is missing or holds no image files.
    """
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: no such frame folder")
    files = [f for f in d.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and f.is_file()]
    if not files:
        raise DataError(f"{d}: the frame folder holds no {'/'.join(FRAME_SUFFIXES)} files")
    return sorted(files, key=_natural_key)


def _decode_images(
    folder: str | Path, files: list[Path], ids: list[int], like: tuple[str, tuple] | None
) -> tuple[Tensor, tuple[str, tuple]]:
    """``files[ids]`` decoded to ``(n, 3, H, W)`` uint8, all of one size (``like``'s if given).

    ``like`` is ``(name, (H, W))`` of the frame the others must match; the one used is returned.
    """
    frames: list[Tensor] = []
    for i in ids:
        try:
            img = decode_image(str(files[i]), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError) as e:
            raise DataError(f"{files[i]}: not a readable image ({e})") from None
        if like is None:
            like = (files[i].name, tuple(img.shape[1:]))
        elif tuple(img.shape[1:]) != like[1]:
            raise DataError(
                f"{files[i]}: frame size {tuple(img.shape[1:])} differs from {like[1]} of "
                f"{like[0]} in the same folder {str(folder)!r}"
            )
        frames.append(img)
    if not frames:
        return torch.zeros(0, 3, 0, 0, dtype=torch.uint8), like  # type: ignore[return-value]
    return torch.stack(frames), like  # type: ignore[return-value]


def read_frame_folder(folder: str | Path, indices: Sequence[int] | Tensor | None = None) -> Tensor:
    """Frames of a frame folder (one image per frame, natural order) as one RGB tensor.

    Args:
        folder: the folder (e.g. DAVIS ``JPEGImages/480p/<seq>/``).
        indices: the frames to read (repeats allowed); None reads all.

    Returns:
        ``(T, H, W, 3)`` uint8 (grey and RGBA images are converted to RGB).

    Raises:
        DataError: missing folder, unreadable image, frames of different sizes, index out of range.
    """
    files = list_frames(folder)
    n = len(files)
    want = (
        np.arange(n)
        if indices is None
        else torch.as_tensor(indices, dtype=torch.int64).reshape(-1).numpy()
    )
    if want.size and (want.min() < 0 or want.max() >= n):
        raise DataError(
            f"{folder}: frame indices must be in [0, {n - 1}] (the folder has {n} frames), "
            f"got {int(want.min())}..{int(want.max())}"
        )
    wanted = np.unique(want)
    if wanted.size == 0:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    stack, _ = _decode_images(folder, files, wanted.tolist(), None)
    stack = stack.permute(0, 2, 3, 1)
    return stack[torch.from_numpy(np.searchsorted(wanted, want))].contiguous()


def count_frames(source: str | Path) -> int:
    """Frames of a video file (demuxed, :func:`video_info`) or a frame folder (its images).

    Raises:
        DataError: a missing source, an unreadable file, an empty folder.
    """
    p = Path(source)
    return len(list_frames(p)) if p.is_dir() else video_info(p).num_frames


def read_frames(source: str | Path, indices: Sequence[int] | Tensor) -> Tensor:
    """The frames at ``indices`` of a video file or a frame folder, ``(T, H, W, 3)`` uint8 RGB.

    :func:`read_video_frames` for a file, :func:`read_frame_folder` for a folder.
    """
    p = Path(source)
    return read_frame_folder(p, indices) if p.is_dir() else read_video_frames(p, indices)


def iter_frames(source: str | Path, chunk: int = 64) -> Iterator[Tensor]:
    """Every frame of a video file or a frame folder, in order, ``chunk`` frames at a time.

    All frames have the first frame's size, across chunks too: a source whose frame size
    changes raises instead of giving chunks that cannot be stacked.

    Yields:
        ``(n, H, W, 3)`` uint8 RGB, ``n <= chunk``.

    Raises:
        DataError: a missing or unreadable source, or frames of different sizes.
    """
    if chunk < 1:
        raise ShapeError(f"iter_frames chunk must be >= 1, got {chunk}")
    p = Path(source)
    if not p.is_dir():
        yield from iter_video_frames(p, chunk)
        return
    files = list_frames(p)
    like: tuple[str, tuple] | None = None
    for lo in range(0, len(files), chunk):
        x, like = _decode_images(p, files, list(range(lo, min(lo + chunk, len(files)))), like)
        yield x.permute(0, 2, 3, 1).contiguous()


def to_clip(frames_uint8: Tensor) -> tv_tensors.Video:
    """``(T, H, W, C)`` uint8 frames -> a ``tv_tensors.Video`` ``(T, C, H, W)`` float32 in [0, 1].

    >>> to_clip(torch.full((2, 4, 5, 3), 255, dtype=torch.uint8)).shape
    torch.Size([2, 3, 4, 5])
    """
    if frames_uint8.ndim != 4 or frames_uint8.dtype != torch.uint8:
        raise ShapeError(
            f"to_clip expects (T, H, W, C) uint8 frames, got {tuple(frames_uint8.shape)} "
            f"{frames_uint8.dtype}"
        )
    x = frames_uint8.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return tv_tensors.Video(x.contiguous())


def file_signature(path: str | Path) -> str:
    """``<absolute path>|<size>|<mtime ns>``: what identifies a file's content in caches."""
    p = Path(path).resolve()
    st = os.stat(p)
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"
