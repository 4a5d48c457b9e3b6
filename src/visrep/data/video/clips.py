"""Which frames make a clip: training clips at random, test clips spread over the video.

A clip is ``clip_len`` frames ``stride`` apart, so it spans ``(clip_len - 1) * stride + 1``
frames. Karpathy et al. 2014 (seed: "Large-scale video classification with CNNs", sec. 4.1)
train on clips at random positions and, at test time, average the class scores of 20 clips
spread over the video; C3D (Tran et al. 2015, sec. 3.2 / 3.3) does the same with 16-frame
clips. ``mode="random"`` and ``mode="dense"`` are these two samplers; ``mode="uniform"`` puts
one clip in the middle of each of ``num_clips`` equal segments (the deterministic validation
clip: the centre clip for ``num_clips=1``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from visrep.errors import ConfigError, DataError

ClipMode = Literal["uniform", "random", "dense"]


def clip_span(clip_len: int, stride: int = 1) -> int:
    """Frames a clip of ``clip_len`` frames ``stride`` apart covers, first to last."""
    return (clip_len - 1) * stride + 1


def clip_indices(
    num_frames: int,
    clip_len: int,
    stride: int = 1,
    mode: ClipMode = "uniform",
    num_clips: int = 1,
    generator: torch.Generator | None = None,
    source: str = "video",
) -> Tensor:
    """Frame indices of ``num_clips`` clips of a video with ``num_frames`` frames.

    Args:
        num_frames: frames in the video.
        clip_len: frames per clip ``T``.
        stride: step between a clip's frames (temporal subsampling).
        mode: ``"random"`` start frames drawn uniformly (training), ``"dense"`` starts evenly
            spaced from the first possible to the last possible one (test-time multi-clip
            averaging, Karpathy et al. 2014), ``"uniform"`` the centre clip of each of
            ``num_clips`` equal segments.
        num_clips: clips ``K``.
        generator: the random source of ``"random"`` (None: torch's global one).
        source: the video's name, for the error message.

    Returns:
        ``(K, T)`` int64, each row increasing by ``stride``.

    Raises:
        ConfigError: ``clip_len``, ``stride`` or ``num_clips`` < 1, or an unknown mode.
        DataError: the clip spans more frames than the video has.

    >>> clip_indices(10, 3, stride=2, mode="dense", num_clips=2).tolist()
    [[0, 2, 4], [5, 7, 9]]
    """
    for name, v in (("clip_len", clip_len), ("stride", stride), ("num_clips", num_clips)):
        if v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
    span = clip_span(clip_len, stride)
    if span > num_frames:
        raise DataError(
            f"{source}: a clip of {clip_len} frames at stride {stride} spans {span} frames, "
            f"but the video has only {num_frames}"
        )
    last = num_frames - span  # the last possible start
    if mode == "random":
        starts = torch.randint(0, last + 1, (num_clips,), generator=generator)
    elif mode == "dense":
        if num_clips == 1:  # the centre clip, as ``"uniform"`` with one clip
            starts = torch.tensor([(last + 1) // 2])
        else:
            starts = torch.floor(
                torch.linspace(0, last, num_clips, dtype=torch.float64) + 0.5
            ).long()
    elif mode == "uniform":
        # centre of segment k of K equal parts of the start range [0, last]
        k = torch.arange(num_clips, dtype=torch.float64)
        starts = torch.floor((2 * k + 1) * (last + 1) / (2 * num_clips)).long().clamp_max(last)
    else:
        raise ConfigError(f"clip mode must be 'uniform', 'random' or 'dense', got {mode!r}")
    return starts.long()[:, None] + stride * torch.arange(clip_len, dtype=torch.int64)


def resample_indices(num_frames: int, src_fps: float, dst_fps: float) -> Tensor:
    """Source frame indices that play a ``src_fps`` video at ``dst_fps`` (nearest earlier frame).

    Frame ``j`` of the resampled video shows the moment ``j / dst_fps``, i.e. source frame
    ``floor(j * src_fps / dst_fps)``; the result covers the whole video (its duration is kept),
    so a 30 fps video at 15 fps keeps every other frame and at 60 fps repeats every frame.

    Returns:
        ``(M,)`` int64 with ``M = ceil(num_frames * dst_fps / src_fps)``.

    Raises:
        ConfigError: a frame rate that is not positive.

    >>> resample_indices(6, 30.0, 15.0).tolist()
    [0, 2, 4]
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ConfigError(f"frame rates must be > 0, got src_fps={src_fps}, dst_fps={dst_fps}")
    if num_frames <= 0:
        return torch.zeros(0, dtype=torch.int64)
    ratio = src_fps / dst_fps
    # a tiny tolerance keeps exact ratios (30 -> 10) from losing a frame to rounding
    m = int(torch.ceil(torch.tensor(num_frames / ratio - 1e-9, dtype=torch.float64)))
    j = torch.arange(m, dtype=torch.float64)
    return torch.floor(j * ratio + 1e-9).long().clamp_max(num_frames - 1)
