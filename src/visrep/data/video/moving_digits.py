"""Moving digits: clips of digit images moving on a canvas, generated from a seed (functional core).

Moving MNIST (Srivastava et al. 2015, "Unsupervised learning of video representations using
LSTMs", Sec. 3): "each video was 20 frames long and consisted of two digits moving inside a
64 x 64 patch ... placed initially at random locations ... a velocity whose direction was chosen
uniformly randomly on a unit circle ... the digits bounced-off the edges ... and overlapped";
overlapping digits combine by their pixel-wise maximum (the authors' ``Overlap`` in their data
handler). Here the same construction is written as three pure functions, vectorised over clips,
digits, frames and pixels:

- :func:`trajectories`: top-left positions ``p(t) = fold(p0 + v t)`` in closed form, where
  ``fold`` is the triangle wave of period ``2L`` (an elastic bounce between walls ``L`` pixels
  apart) or ``mod L`` (wrap: the digit leaves one side and re-enters the other);
- :func:`render_digits`: every frame of every clip from ONE ``grid_sample`` call (each output
  pixel looks up its position in each digit's rotated sprite), digits combined by max;
- :func:`motion_classes`: a class set whose class is the motion (direction, speed, rotation
  sense, bounce vs wrap), for the labelled variant.

A clip is a pure function of ``(seed, split, index)`` (:func:`sample_seed`). Digit images come
from scikit-learn's 8x8 digits (embedded, the default) or an MNIST-family IDX folder / file or
``.npz`` archive (:func:`load_digit_pool`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.video.digit_pool import DigitPool, load_digit_pool
from visrep.data.video.flow import FlowMethod, compute_flow
from visrep.errors import ConfigError, ShapeError

__all__ = [
    "FACTORS",
    "ClipParams",
    "DigitPool",
    "GeneratedClips",
    "MotionClass",
    "direction_name",
    "load_digit_pool",
    "motion_classes",
    "quantize",
    "render_digits",
    "sample_seed",
    "trajectories",
]

FACTORS = ("direction", "speed", "rotation", "boundary")
BOUNDARIES = ("wrap", "bounce")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def sample_seed(seed: int, split: str, index: int) -> int:
    """The generator seed of one sample: a hash of ``(seed, split, index)`` (numpy SeedSequence).

    >>> sample_seed(0, "train", 3) == sample_seed(0, "train", 3) != sample_seed(0, "val", 3)
    True
    """
    if split not in _SPLIT_CODES:
        raise ConfigError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    state = np.random.SeedSequence([int(seed) % 2**63, _SPLIT_CODES[split], int(index)])
    return int(state.generate_state(1, dtype=np.uint64)[0] % 2**63)


def quantize(frames: Tensor) -> Tensor:
    """Round [0, 1] frames to 8-bit levels (what a decoded video or a written cache holds)."""
    return frames.clamp(0, 1).mul(255).round().div(255)


# ----------------------------------------------------------------------------- motion
def trajectories(
    start: Tensor, velocity: Tensor, num_frames: int, extent: Tensor, bounce: Tensor | bool
) -> Tensor:
    """Positions of moving points at frames ``0 .. num_frames - 1``, in closed form.

    With the unfolded coordinate ``u(t) = p0 + v t`` per axis, a bouncing point is at
    ``L - |(u mod 2L) - L|`` (the triangle wave: an elastic reflection at 0 and ``L``, the
    "bounced-off the edges" of Srivastava et al. 2015, Sec. 3) and a wrapping one at
    ``u mod L``. A start ``p0`` uniform on ``[0, 2L)`` (bounce) or ``[0, L)`` (wrap) is the
    stationary distribution of the motion: the position is then uniform on ``[0, L]`` at every
    frame, whatever ``v``.

    Args:
        start: ``(..., 2)`` unfolded start ``(x, y)`` in pixels.
        velocity: ``(..., 2)`` pixels per frame.
        num_frames: ``T``.
        extent: ``(2,)`` or ``(..., 2)`` the free range ``L`` per axis (canvas minus digit box).
        bounce: bool or ``(...)`` bool tensor; False wraps.

    Returns:
        ``(..., T, 2)`` positions in ``[0, L]``.

    Shape:
        start ``(N, D, 2)`` -> ``(N, D, T, 2)``.

    >>> trajectories(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 0.0]]), 5, torch.tensor([4.0, 4.0]), True)[0, :, 0]
    tensor([0., 3., 2., 1., 4.])
    """
    if start.shape[-1] != 2 or velocity.shape != start.shape:
        raise ShapeError(
            f"trajectories: start and velocity must be (..., 2) of one shape, got "
            f"{tuple(start.shape)} and {tuple(velocity.shape)}"
        )
    t = torch.arange(num_frames, dtype=start.dtype, device=start.device)
    u = start[..., None, :] + velocity[..., None, :] * t[:, None]  # (..., T, 2)
    L = torch.as_tensor(extent, dtype=start.dtype, device=start.device)
    L = L.expand_as(start)[..., None, :]
    wrapped = torch.remainder(u, L)
    folded = L - (torch.remainder(u, 2 * L) - L).abs()
    b = torch.as_tensor(bounce, device=start.device)
    b = b.expand(start.shape[:-1])[..., None, None]
    return torch.where(b, folded, wrapped)


def render_digits(
    sprites: Tensor, positions: Tensor, angles: Tensor | None, size: tuple[int, int]
) -> Tensor:
    """Draw digits at their positions and orientations in every frame: one ``grid_sample``.

    Each output pixel centre ``x`` is mapped into each digit's sprite,
    ``q = R(theta)^T (x - c)`` with ``c`` the digit box's centre, and the sprite is sampled
    bilinearly there (zero outside it); the digits of a frame combine by their pixel-wise
    maximum (Srivastava et al. 2015's ``Overlap``). With integer positions and no rotation a
    sprite is pasted exactly; ``theta > 0`` turns a digit counter-clockwise on screen.

    Args:
        sprites: ``(N, D, S, S)`` digit images in [0, 1] (``D`` digits per clip).
        positions: ``(N, D, T, 2)`` top-left ``(x, y)`` of each digit's box, pixels.
        angles: ``(N, D, T)`` radians, or None (upright).
        size: canvas ``(H, W)``.

    Returns:
        ``(N, T, H, W)`` frames in [0, 1].
    """
    if sprites.ndim != 4 or sprites.shape[-1] != sprites.shape[-2]:
        raise ShapeError(f"render_digits: sprites must be (N, D, S, S), got {tuple(sprites.shape)}")
    n, d, s, _ = sprites.shape
    if positions.ndim != 4 or positions.shape[:2] != (n, d) or positions.shape[-1] != 2:
        raise ShapeError(
            f"render_digits: positions must be ({n}, {d}, T, 2), got {tuple(positions.shape)}"
        )
    t = positions.shape[2]
    if angles is not None and angles.shape != positions.shape[:3]:
        raise ShapeError(
            f"render_digits: angles must be ({n}, {d}, {t}), got {tuple(angles.shape)}"
        )
    h, w = size
    dev, dt = sprites.device, sprites.dtype
    ys = torch.arange(h, device=dev, dtype=dt) + 0.5
    xs = torch.arange(w, device=dev, dtype=dt) + 0.5
    centre = positions.to(dt) + s / 2  # (N, D, T, 2)
    u = xs.view(1, 1, 1, 1, w) - centre[..., 0, None, None]  # (N, D, T, 1, W)
    v = ys.view(1, 1, 1, h, 1) - centre[..., 1, None, None]  # (N, D, T, H, 1)
    u, v = torch.broadcast_tensors(u, v)
    if angles is not None:
        cos = torch.cos(angles.to(dt))[..., None, None]
        sin = torch.sin(angles.to(dt))[..., None, None]
        # On screen (y down) a counter-clockwise turn maps sprite q to R q, R = [[c, s], [-s, c]].
        u, v = cos * u - sin * v, sin * u + cos * v
    grid = torch.stack((u, v), dim=-1) / (s / 2)  # (N, D, T, H, W, 2) in sprite [-1, 1] units
    grid = grid.reshape(n * d, t * h, w, 2)
    out = F.grid_sample(
        sprites.reshape(n * d, 1, s, s),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return out.view(n, d, t, h, w).amax(dim=1)


# ----------------------------------------------------------------------------- clip sets
_CHUNK = 256  # clips rendered per grid_sample call when a split is written to disk


@dataclass(frozen=True)
class ClipParams:
    """What one clip is made of (drawn from its own generator); ``integer`` truncates positions
    to whole pixels (the reference Moving-MNIST handler's int32 cast)."""

    label: int
    digits: Tensor  # (D,) pool indices
    start: Tensor  # (D, 2) unfolded start, pixels
    velocity: Tensor  # (D, 2) pixels per frame
    angle0: Tensor  # (D,) radians
    omega: Tensor  # (D,) radians per frame
    bounce: bool
    integer: bool = False


class GeneratedClips(Dataset):
    """Clips ``(N, T, H, W)`` rendered from per-index parameters (:meth:`params`, drawn from the
    clip's own generator), or read from an 8-bit ``.npy`` written once under ``cache_dir``
    (memory-mapped; the same frames, since rendered frames are rounded to 8 bits too).

    A missing cache file is written when the set is built (frames) or its flow is first asked
    for (:meth:`flow_array`); the data modules do both in ``prepare_data``, which Lightning runs
    on one process, so the processes of a distributed run only read them in ``setup``.

    Subclasses implement :meth:`params` and ``__getitem__``.
    """

    def __init__(
        self,
        pool: DigitPool,
        split: str,
        length: int,
        seed: int,
        num_frames: int,
        size: tuple[int, int],
        cache_dir: str | None,
        cache_key: str,
    ) -> None:
        self.pool, self.split, self.length, self.seed = pool, split, length, seed
        self.num_frames, self.size = num_frames, size
        self.cache_dir, self.cache_key = cache_dir, cache_key
        self.array: np.ndarray | None = None
        self.flow_arrays: dict[str, np.ndarray] = {}
        if cache_dir is not None:
            self.array = self._cached(self.cache_path("frames"), "frames")

    def __len__(self) -> int:
        return self.length

    def cache_path(self, what: str) -> Path:
        """The cache file of the frames (``what="frames"``) or of the flow by method ``what``."""
        if self.cache_dir is None:
            raise ConfigError(f"the {self.split} clips have no cache_dir, so no cache file")
        tail = "" if what == "frames" else f"-flow-{what}"
        return Path(self.cache_dir) / f"{self.cache_key}-{self.split}{tail}.npy"

    def params(self, index: int) -> ClipParams:
        raise NotImplementedError

    def render(self, params: list[ClipParams]) -> Tensor:
        """``(N, T, H, W)`` frames of the given clips, 8-bit levels in [0, 1]."""
        digits = torch.stack([p.digits for p in params])  # (N, D)
        start = torch.stack([p.start for p in params]).double()
        velocity = torch.stack([p.velocity for p in params]).double()
        bounce = torch.tensor([p.bounce for p in params])[:, None]
        s = self.pool.images.shape[-1]
        extent = torch.tensor([self.size[1] - s, self.size[0] - s], dtype=torch.float64)
        pos = trajectories(start, velocity, self.num_frames, extent, bounce)  # (N, D, T, 2)
        if params[0].integer:
            pos = pos.floor()  # the reference data handler's int32 cast of its positions
        t = torch.arange(self.num_frames, dtype=torch.float64)
        angle0 = torch.stack([p.angle0 for p in params]).double()
        omega = torch.stack([p.omega for p in params]).double()
        angles = None
        if bool((angle0 != 0).any() or (omega != 0).any()):
            angles = (angle0[..., None] + omega[..., None] * t).float()
        frames = render_digits(self.pool.images[digits], pos.float(), angles, self.size)
        return quantize(frames)

    def frames(self, index: int, params: ClipParams | None = None) -> Tensor:
        """``(T, 1, H, W)`` float32 in [0, 1]; ``params``: clip ``index``'s :meth:`params`, when
        the caller has them already (read from the cache, or rendered from them)."""
        if not 0 <= index < self.length:
            raise IndexError(f"clip {index} of a {self.split} set of {self.length}")
        if self.array is not None:
            return torch.from_numpy(np.asarray(self.array[index], dtype=np.float32) / 255.0)[
                :, None
            ]
        return self.render([self.params(index) if params is None else params])[0][:, None]

    def batch_frames(self, indices: Sequence[int]) -> Tensor:
        """``(N, T, H, W)`` frames of several clips at once (cache read or one render call)."""
        if self.array is not None:
            idx = np.asarray(indices, dtype=np.int64)
            return torch.from_numpy(self.array[idx].astype(np.float32) / 255.0)
        return self.render([self.params(i) for i in indices])

    def flow(
        self, index: int, method: FlowMethod = "farneback", clip: Tensor | None = None
    ) -> Tensor:
        """``(T - 1, 2, H, W)`` optical flow of clip ``index`` (:func:`compute_flow`); with a
        ``cache_dir`` computed once for the whole split and kept as float16 (memory-mapped).
        ``clip``: clip ``index``'s :meth:`frames`, when the caller has them already."""
        if self.cache_dir is None:
            return compute_flow(self.frames(index) if clip is None else clip, method)
        return torch.from_numpy(np.asarray(self.flow_array(method)[index], dtype=np.float32))

    def flow_array(self, method: FlowMethod = "farneback") -> np.ndarray:
        """The split's cached flow ``(N, T - 1, 2, H, W)`` float16 (memory-mapped), computed and
        written first if the file is missing (needs ``cache_dir``)."""
        if method not in self.flow_arrays:
            self.flow_arrays[method] = self._cached(self.cache_path(method), method)
        return self.flow_arrays[method]

    def _cached(self, path: Path, what: str) -> np.ndarray:
        """Read ``path`` memory-mapped, writing it first (atomically) if it is not there."""
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            t, (h, w) = self.num_frames, self.size
            shape, dtype = (self.length, t, h, w), np.uint8
            if what != "frames":
                shape, dtype = (self.length, t - 1, 2, h, w), np.float16
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            for lo in range(0, self.length, _CHUNK):
                idx = range(lo, min(lo + _CHUNK, self.length))
                if what == "frames":
                    clips = self.render([self.params(i) for i in idx])
                    out[lo : lo + len(idx)] = clips.mul(255).round().to(torch.uint8).numpy()
                else:
                    for i in idx:  # one OpenCV call per frame pair (vectorised over pixels)
                        out[i] = compute_flow(self.frames(i), what).numpy()
            out.flush()
            del out
            os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


# ----------------------------------------------------------------------------- motion classes
_DIR_NAMES = {
    4: ("right", "down", "left", "up"),
    8: ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right"),
}


def direction_name(k: int, n: int) -> str:
    """The name of direction ``k`` of ``n`` (angle ``2 pi k / n``, x right, y down).

    >>> direction_name(1, 4), direction_name(3, 8), direction_name(1, 6)
    ('down', 'down-left', 'dir60')
    """
    return _DIR_NAMES[n][k] if n in _DIR_NAMES else f"dir{360 * k / n:g}"


def _unit(k: int, n: int) -> tuple[float, float]:
    a = 2 * math.pi * k / n
    return round(math.cos(a), 12) + 0.0, round(math.sin(a), 12) + 0.0


def _axis_name(c: float, s: float) -> str:
    if s == 0:
        return "horizontal"
    if c == 0:
        return "vertical"
    deg = math.degrees(math.atan2(s, c))
    return "diagonal" if abs(deg - 45) < 1e-9 else f"axis{deg:g}"


@dataclass(frozen=True)
class MotionClass:
    """One motion class: an unfolded velocity direction, a speed, a rotation, a boundary.

    ``None`` marks a factor that is not part of the class (drawn per clip, independently of it).
    For a bouncing class the direction is kept up to the sign of each axis: the start phase is
    stationary (:func:`trajectories`), so which way a bouncing digit first moves is random.
    """

    name: str
    direction: tuple[float, float] | None
    speed: float | None
    rotation: float | None  # degrees per frame, > 0 counter-clockwise
    boundary: str | None


def _rotation_name(w: float) -> str:
    return "still" if w == 0 else f"{'ccw' if w > 0 else 'cw'}{abs(w):g}"


def motion_classes(
    factors: Sequence[str],
    directions: int = 4,
    speeds: Sequence[float] = (1.0, 2.5),
    rotations: Sequence[float] = (0.0,),
    boundaries: Sequence[str] = ("wrap",),
) -> list[MotionClass]:
    """The classes of a motion-labelled set: the product of the chosen factors' values.

    Args:
        factors: which of ``direction``, ``speed``, ``rotation``, ``boundary`` define the class.
        directions: number of directions (angles ``2 pi k / n``; 4: right, down, left, up).
        speeds: pixels per frame.
        rotations: degrees per frame (> 0 counter-clockwise; 0: no rotation).
        boundaries: ``wrap`` and / or ``bounce``.

    Returns:
        The classes, in product order; bouncing classes that differ only in the signs of their
        direction are one class (named by their axis: ``horizontal``, ``vertical``, ``diagonal``).

    Raises:
        ConfigError: an unknown or repeated factor, a factor with fewer than two values, or a
            direction factor while bounces happen outside the class (their sign is unobservable).

    >>> [c.name for c in motion_classes(("direction", "boundary"), boundaries=("wrap", "bounce"))]
    ['right-wrap', 'horizontal-bounce', 'down-wrap', 'vertical-bounce', 'left-wrap', 'up-wrap']
    """
    bad = [f for f in factors if f not in FACTORS]
    if bad or not factors or len(set(factors)) != len(factors):
        raise ConfigError(
            f"data.factors must be distinct names from {list(FACTORS)}, got {list(factors)}"
        )
    if directions < 1:
        raise ConfigError(f"data.directions must be >= 1, got {directions}")
    if not speeds or any(s < 0 for s in speeds):
        raise ConfigError(f"data.speeds must be non-negative pixels per frame, got {list(speeds)}")
    if not rotations:
        raise ConfigError("data.rotations must hold at least one value (0: no rotation)")
    if not boundaries or any(b not in BOUNDARIES for b in boundaries):
        raise ConfigError(
            f"data.boundaries must be from {list(BOUNDARIES)}, got {list(boundaries)}"
        )
    values: dict[str, list] = {
        "direction": list(range(directions)),
        "speed": list(speeds),
        "rotation": list(rotations),
        "boundary": list(boundaries),
    }
    for f in factors:
        if len(set(values[f])) < 2:
            option = {"direction": "directions"}.get(f, f + "s")
            raise ConfigError(
                f"factor {f!r} needs at least two distinct values in data.{option}, got "
                f"{values[f] if f != 'direction' else directions}"
            )
    if "direction" in factors and "bounce" in boundaries and "boundary" not in factors:
        raise ConfigError(
            "data.factors has 'direction' but not 'boundary' while data.boundaries holds "
            "'bounce': a bounce hides the sign of the direction; add 'boundary' or drop 'bounce'"
        )
    out: list[MotionClass] = []
    seen: set = set()
    for combo in itertools.product(*(values[f] for f in factors)):
        c = dict(zip(factors, combo, strict=True))
        names: dict[str, str] = {}
        direction = None
        if "direction" in c:
            direction = _unit(c["direction"], directions)
            if c.get("boundary") == "bounce":
                direction = (abs(direction[0]), abs(direction[1]))
                names["direction"] = _axis_name(*direction)
            else:
                names["direction"] = direction_name(c["direction"], directions)
        key = (direction, c.get("speed"), c.get("rotation"), c.get("boundary"))
        if key in seen:
            continue
        seen.add(key)
        if "speed" in c:
            names["speed"] = f"{c['speed']:g}px"
        if "rotation" in c:
            names["rotation"] = _rotation_name(c["rotation"])
        if "boundary" in c:
            names["boundary"] = c["boundary"]
        out.append(MotionClass("-".join(names[f] for f in factors), *key))
    return out
