"""Dense optical flow between frames (OpenCV), and a disk cache so each video's flow is computed once.

Two-stream networks (Simonyan & Zisserman 2014; seed 004 "Two-stream networks", after Carreira
& Zisserman 2017, arXiv:1705.07750) feed a stack of ``L`` flow fields ``(dx, dy)`` beside the
RGB frames. The flow of a frame pair is the displacement ``d`` with
``I_{t+1}(x + d(x)) ~ I_t(x)``, in pixels.

* ``"farneback"``: Farnebäck 2003, "Two-frame motion estimation based on polynomial
  expansion" (``cv2.calcOpticalFlowFarneback``, in every OpenCV build).
* ``"tvl1"``: Zach, Pock & Bischof 2007, "A duality based approach for realtime TV-L1 optical
  flow", the flow I3D's two-stream model uses (``cv2.optflow``, only in opencv-contrib).

OpenCV computes each pair over all its pixels at once; the Python loop runs over frame pairs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from visrep.data.augment import rgb_to_luma
from visrep.data.video.io import file_signature
from visrep.errors import ConfigError, DataError, ShapeError

FlowMethod = Literal["farneback", "tvl1"]
FLOW_METHODS = ("farneback", "tvl1")


@dataclass(frozen=True)
class FarnebackParams:
    """``cv2.calcOpticalFlowFarneback``'s options (OpenCV's sample values: a 3-level pyramid)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


def _grey(frames: Tensor) -> np.ndarray:
    """``(T, H, W, C|1)`` uint8 or ``(T, C, H, W)`` float in [0, 1] -> ``(T, H, W)`` uint8 luma."""
    if frames.ndim != 4:
        raise ShapeError(
            "compute_flow expects (T, H, W, C) uint8 or (T, C, H, W) float frames, got "
            f"{tuple(frames.shape)}"
        )
    x = frames.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float()
    elif x.is_floating_point():
        x = x.float() * 255.0
    else:
        raise ShapeError(f"compute_flow expects uint8 or float frames, got {x.dtype}")
    c = x.shape[1]
    if c == 3:  # ITU-R BT.601 luma, as cv2.cvtColor(RGB2GRAY)
        x = rgb_to_luma(x, 1)[:, 0]
    elif c == 1:
        x = x[:, 0]
    else:
        raise ShapeError(f"compute_flow expects 1 or 3 channels, got {c} in {tuple(frames.shape)}")
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def _solver(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if method == "farneback":
        p = FarnebackParams()

        def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(
                a, b, None, p.pyr_scale, p.levels, p.winsize, p.iterations, p.poly_n,
                p.poly_sigma, 0,
            )  # fmt: skip

        return farneback
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise ConfigError(
                "flow method 'tvl1' needs OpenCV's contrib modules (cv2.optflow): install "
                "opencv-contrib-python-headless instead of opencv-python-headless, or use "
                "method 'farneback'"
            )
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    raise ConfigError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def check_flow_method(method: str) -> None:
    """Raise the ``ConfigError`` of an unknown method, or of ``tvl1`` without opencv-contrib."""
    _solver(method)


def flow_between(first: Tensor, second: Tensor, method: FlowMethod = "farneback") -> Tensor:
    """Flow from each frame of ``first`` to the frame at the same place in ``second``.

    Args:
        first, second: ``(N, H, W, C|1)`` uint8 or ``(N, C, H, W)`` float in [0, 1].

    Returns:
        ``(N, 2, H, W)`` float32, pixels ``(dx, dy)``.
    """
    solve = _solver(method)
    a, b = _grey(first), _grey(second)
    if a.shape != b.shape:
        raise ShapeError(f"flow_between: frame stacks differ, {a.shape} vs {b.shape}")
    out = np.empty((a.shape[0], 2, a.shape[1], a.shape[2]), dtype=np.float32)
    for i in range(a.shape[0]):  # one OpenCV call per frame pair, vectorised over pixels
        out[i] = solve(a[i], b[i]).transpose(2, 0, 1)
    return torch.from_numpy(out)


def compute_flow(frames: Tensor, method: FlowMethod = "farneback") -> Tensor:
    """Optical flow between consecutive frames of a clip.

    Args:
        frames: ``(T, H, W, C|1)`` uint8 or ``(T, C, H, W)`` float in [0, 1] (colour is turned
            to BT.601 luma first).
        method: ``"farneback"`` or ``"tvl1"`` (needs opencv-contrib).

    Returns:
        ``(T - 1, 2, H, W)`` float32: ``flow[t]`` moves frame ``t`` onto frame ``t + 1``, in
        pixels ``(dx, dy)``.

    Raises:
        ConfigError: an unknown method, or ``tvl1`` without ``cv2.optflow``.
        ShapeError: frames of the wrong shape or dtype, or fewer than two.
    """
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ShapeError(f"compute_flow needs >= 2 frames (T, ...), got {tuple(frames.shape)}")
    return flow_between(frames[:-1], frames[1:], method)


class FlowCache:
    """Flow of a whole video computed once and kept on disk as float16 ``.npy`` (memory-mapped).

    The entry of a video holds the flow of every frame pair ``(j, j + gap)`` of the frame
    sequence the caller decodes (``frames()``), so any clip whose consecutive frames are
    ``gap`` apart takes its ``L`` fields by indexing: ``flow[clip[:-1]]``. The key is the
    file's path, size and modification time, the method, ``gap`` and the caller's ``tag``
    (whatever else shapes the frames: size, frame rate); a changed file gets a new entry.
    Entries are written atomically, so loader workers may fill the cache together.

    Args:
        cache_dir: the folder of the ``.npy`` files.
        method: ``"farneback"`` or ``"tvl1"``.
    """

    def __init__(self, cache_dir: str | Path, method: FlowMethod = "farneback") -> None:
        check_flow_method(method)  # refuse an unknown or unavailable method at once
        self.cache_dir = Path(cache_dir)
        self.method = method

    def entry(self, source: str | Path, gap: int = 1, tag: str = "") -> Path:
        """The ``.npy`` file of ``source``'s flow for these parameters."""
        key = f"{file_signature(source)}|{self.method}|gap={gap}|{tag}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:20]
        return self.cache_dir / f"{Path(source).stem}-{digest}.npy"

    def get(
        self, source: str | Path, frames: Callable[[], Tensor], gap: int = 1, tag: str = ""
    ) -> np.ndarray:
        """The cached flow of ``source``, computed from ``frames()`` on the first call.

        Args:
            source: the video file (or frame folder) the frames come from.
            frames: returns all its frames, ``(N, H, W, C)`` uint8 or ``(N, C, H, W)`` float.
            gap: frames between the two of a pair.
            tag: the caller's other frame parameters, part of the key.

        Returns:
            ``(N - gap, 2, H, W)`` float16, memory-mapped read-only.
        """
        if gap < 1:
            raise ConfigError(f"FlowCache gap must be >= 1, got {gap}")
        path = self.entry(source, gap, tag)
        if path.is_file():
            try:
                return np.load(path, mmap_mode="r")
            except (ValueError, OSError):
                path.unlink(missing_ok=True)  # a damaged entry: compute it again
        x = frames()
        if x.shape[0] <= gap:
            raise DataError(f"{source}: {x.shape[0]} frames give no pair {gap} apart for flow")
        flow = flow_between(x[:-gap], x[gap:], self.method).numpy().astype(np.float16)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy", dir=self.cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, flow)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(path, mmap_mode="r")
