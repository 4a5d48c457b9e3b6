"""Moving-digit gestures: clips of one digit that rests, performs a gesture made of ORDERED motion
parts, and rests again, with a label per clip and per frame (seed 003, "Motivation: Gesture
Recognition": a gesture is a sequence of parts, some shared by several gestures, and only the
gesture, or the gesture of each frame, is labelled).

A clip of ``T`` frames: the digit sits at a random position (still, or with sub-pixel jitter),
then, from a random onset, moves ``m_1`` frames in the direction of the gesture's first part,
``m_2`` frames in the second's ..., each ``m_i`` drawn per clip from ``part_frames``, at a speed
drawn per clip from ``speed``; then it rests until the end. Positions wrap at the canvas edges
as :func:`~visrep.data.video.moving_digits.trajectories` does with ``bounce=False`` (the digit
leaves one side and re-enters the other, never cut), so the position at every frame is uniform
on the free range whatever the gesture: no single frame tells the gesture, only motion does.

The default vocabulary, ``right>down``, ``down>right``, ``right>up``, ``up>right``,
``left>down``, ``down>left``, uses every part in several gestures and every pair of parts in
both orders, so neither one part nor the set of parts tells the gesture: the ORDER does (what a
hidden CRF's part states and their transitions model; Quattoni et al. 2007, Morency et al.
2007). Bounces are not offered: a bounce reverses a part's direction and so turns one gesture
into another, and keeping the path away from the walls would make the rest position tell the
gesture.

Frame labels (``frame_labels``, int64 ``(T,)``): frame ``t`` is labelled by the step from frame
``t - 1`` to frame ``t``: ``g + 1`` when that step is part of gesture ``g``, 0 (background)
when the digit rests (frame 0 has no step: always background). So there are ``G + 1`` frame
classes, ``("background", *class_names)`` (:func:`frame_class_names`), for ``G`` gestures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import FRAME_LABELS, LABEL, META, VIDEO
from visrep.data.video.moving_digits import (
    DigitPool,
    GeneratedClips,
    _unit,
    direction_name,
    load_digit_pool,
    quantize,
    render_digits,
    sample_seed,
)
from visrep.errors import ConfigError

__all__ = [
    "DEFAULT_GESTURES",
    "PART_DIRECTIONS",
    "GestureClipDataset",
    "GestureParams",
    "MovingDigitsGestureDataModule",
    "frame_class_names",
    "gesture_name",
]

# part name -> unit step (x right, y down): the 8 directions of the motion set
PART_DIRECTIONS: dict[str, tuple[float, float]] = {
    direction_name(k, 8): _unit(k, 8) for k in range(8)
}
DEFAULT_GESTURES: tuple[tuple[str, ...], ...] = (
    ("right", "down"),
    ("down", "right"),
    ("right", "up"),
    ("up", "right"),
    ("left", "down"),
    ("down", "left"),
)
BACKGROUND = "background"


def gesture_name(parts: Sequence[str]) -> str:
    """A gesture's class name: its parts in order, joined by ``>``.

    >>> gesture_name(["right", "down"])
    'right>down'
    """
    return ">".join(parts)


def frame_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    """The ``G + 1`` per-frame classes of ``G`` gestures: background (0), then the gestures.

    >>> frame_class_names(["right>down", "down>right"])
    ('background', 'right>down', 'down>right')
    """
    return (BACKGROUND, *class_names)


def _check_gestures(gestures: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    out = tuple(tuple(str(p) for p in g) for g in gestures)
    if len(out) < 2:
        raise ConfigError(f"data.gestures must list at least 2 gestures, got {len(out)}")
    for g in out:
        bad = [p for p in g if p not in PART_DIRECTIONS]
        if not g or bad:
            raise ConfigError(
                f"data.gestures: every gesture is a non-empty list of parts from "
                f"{list(PART_DIRECTIONS)}, got {list(g)}"
            )
    if len(set(out)) != len(out):
        raise ConfigError(f"data.gestures: gestures must be distinct, got {[list(g) for g in out]}")
    return out


@dataclass(frozen=True)
class GestureParams:
    """What one gesture clip is made of (drawn from its own generator).

    Attributes:
        label: the gesture id ``g``.
        digit: ``(1,)`` pool index of the digit.
        positions: ``(T, 2)`` unfolded top-left ``(x, y)`` per frame, pixels (before the wrap).
        frame_labels: ``(T,)`` int64, 0 background, ``g + 1`` on the gesture's frames.
        frame_parts: ``(T,)`` int64, the part index within the gesture (0, 1 ...), -1 at rest.
        onset: the first gesture frame.
    """

    label: int
    digit: Tensor
    positions: Tensor
    frame_labels: Tensor
    frame_parts: Tensor
    onset: int


class GestureClipDataset(GeneratedClips):
    """Gesture clips: ``{"video": Video (T, 1, H, W), "label": int, "frame_labels": (T,) int64,
    "meta": dict}``; clip ``i`` performs gesture ``i mod G``.

    ``meta`` holds ``index``, ``split``, ``class``, ``digits``, ``onset`` and ``frame_parts``
    (the part index within the gesture per frame, -1 at rest).
    """

    def __init__(
        self,
        pool: DigitPool,
        gestures: tuple[tuple[str, ...], ...],
        split: str,
        length: int,
        seed: int,
        num_frames: int,
        size: tuple[int, int],
        speed: tuple[float, float],
        part_frames: tuple[int, int],
        jitter: float,
        cache_dir: str | None = None,
        cache_key: str = "",
    ) -> None:
        self.gestures, self.speed, self.part_frames, self.jitter = (
            gestures,
            speed,
            part_frames,
            jitter,
        )
        super().__init__(pool, split, length, seed, num_frames, size, cache_dir, cache_key)

    @property
    def targets(self) -> np.ndarray:
        return np.arange(self.length) % len(self.gestures)

    def params(self, index: int) -> GestureParams:  # type: ignore[override]
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.split, index))
        label = index % len(self.gestures)
        parts = self.gestures[label]
        t = self.num_frames
        s = self.pool.images.shape[-1]
        extent = torch.tensor([self.size[1] - s, self.size[0] - s], dtype=torch.float64)
        digit = torch.randint(len(self.pool), (1,), generator=g)
        start = torch.rand(2, generator=g, dtype=torch.float64) * extent  # stationary for wrap
        lo, hi = self.speed
        speed = lo + (hi - lo) * float(torch.rand(1, generator=g, dtype=torch.float64))
        m = torch.randint(self.part_frames[0], self.part_frames[1] + 1, (len(parts),), generator=g)
        total = int(m.sum())
        # onset in [1, T - total - 1]: frame 0 (no step) and at least the last frame rest
        onset = int(torch.randint(1, t - total, (1,), generator=g))
        part_of_step = torch.full((t,), -1, dtype=torch.int64)
        part_of_step[onset : onset + total] = torch.repeat_interleave(torch.arange(len(parts)), m)
        dirs = torch.tensor([PART_DIRECTIONS[p] for p in parts], dtype=torch.float64)
        steps = torch.where(
            (part_of_step >= 0)[:, None], dirs[part_of_step.clamp(min=0)] * speed, 0.0
        )  # (T, 2): step from frame t - 1 to t (row 0: none)
        noise = (torch.rand(t, 2, generator=g, dtype=torch.float64) * 2 - 1) * self.jitter
        positions = start + steps.cumsum(0) + noise
        frame_labels = torch.where(part_of_step >= 0, label + 1, 0)
        return GestureParams(label, digit, positions, frame_labels, part_of_step, onset)

    def render(self, params: list[GestureParams]) -> Tensor:  # type: ignore[override]
        """``(N, T, H, W)`` frames of the given clips, 8-bit levels in [0, 1]: one
        :func:`~visrep.data.video.moving_digits.render_digits` call, positions wrapped
        (``u mod L``, as :func:`~visrep.data.video.moving_digits.trajectories` wraps)."""
        s = self.pool.images.shape[-1]
        extent = torch.tensor([self.size[1] - s, self.size[0] - s], dtype=torch.float64)
        pos = torch.remainder(torch.stack([p.positions for p in params]), extent)  # (N, T, 2)
        digits = torch.stack([p.digit for p in params])  # (N, 1)
        frames = render_digits(self.pool.images[digits], pos[:, None].float(), None, self.size)
        return quantize(frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.params(index)
        clip = self.frames(index, p)  # type: ignore[arg-type]
        return {
            VIDEO: tv_tensors.Video(clip),
            LABEL: p.label,
            FRAME_LABELS: p.frame_labels,
            META: {
                "index": index,
                "split": self.split,
                "class": gesture_name(self.gestures[p.label]),
                "digits": self.pool.labels[p.digit].tolist(),
                "onset": p.onset,
                "frame_parts": p.frame_parts.tolist(),
            },
        }


def _key(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


class MovingDigitsGestureDataModule(SplitDataModule):
    """Moving-digit gestures for sequence labelling (family ``video``; see the module docstring).

    ``spec().num_classes`` is the number of gestures ``G`` (the clip label); the per-frame
    classes are ``G + 1`` (background first, :func:`frame_class_names`).

    Args:
        source: digit images (``"sklearn"``, an IDX folder or file, an ``.npz``; see
            :func:`~visrep.data.video.moving_digits.load_digit_pool`).
        num_frames: frames per clip ``T``.
        image_size: canvas ``(H, W)``.
        digit_size: the box the digit is drawn in, pixels.
        gestures: the vocabulary: one list of part names per gesture, in order (parts from
            ``right``, ``down-right``, ``down``, ``down-left``, ``left``, ``up-left``, ``up``,
            ``up-right``).
        speed: ``(low, high)`` pixels per frame during a gesture, drawn uniformly per clip.
        part_frames: ``(low, high)`` frames per part, drawn uniformly per part and clip.
        jitter: sub-pixel jitter of the position at every frame, uniform in ``[-jitter,
            jitter]`` pixels per axis (0: the digit rests still); below half the lowest speed
            so that rest and motion stay apart.
        train_clips, val_clips, test_clips: split sizes (test clips use held-out digits).
        seed: the data set's seed (sample ``i`` of a split is a function of seed, split, ``i``).
        cache_dir: write each split once as an 8-bit ``.npy`` and memory-map it.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        source: str = "sklearn",
        num_frames: int = 32,
        image_size: tuple[int, int] = (32, 32),
        digit_size: int = 14,
        gestures: list[list[str]] | None = None,
        speed: tuple[float, float] = (1.5, 2.5),
        part_frames: tuple[int, int] = (4, 7),
        jitter: float = 0.25,
        train_clips: int = 3000,
        val_clips: int = 500,
        test_clips: int = 1000,
        seed: int = 0,
        cache_dir: str | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=32), split)
        image_size = tuple(int(v) for v in image_size)
        if len(image_size) != 2 or not 1 <= digit_size < min(image_size):
            raise ConfigError(
                f"data.digit_size must be in [1, min(data.image_size) - 1], got {digit_size} "
                f"for image_size {list(image_size)}"
            )
        self.gestures = _check_gestures(gestures if gestures is not None else DEFAULT_GESTURES)
        if len(speed) != 2 or not 0 < speed[0] <= speed[1]:
            raise ConfigError(f"data.speed must be (low, high) with 0 < low <= high, got {speed}")
        if len(part_frames) != 2 or not 1 <= part_frames[0] <= part_frames[1]:
            raise ConfigError(
                f"data.part_frames must be (low, high) with 1 <= low <= high, got {part_frames}"
            )
        if not 0 <= jitter < speed[0] / 2:
            raise ConfigError(
                f"data.jitter must be in [0, {speed[0] / 2:g}) (half the lowest data.speed), "
                f"got {jitter}"
            )
        longest = max(len(g) for g in self.gestures) * int(part_frames[1])
        if num_frames < longest + 2:
            raise ConfigError(
                f"data.num_frames must be >= {longest + 2} (the longest gesture, "
                f"{longest} frames, plus a rest frame before and after), got {num_frames}"
            )
        for name, n, least in (
            ("train_clips", train_clips, 1),
            ("val_clips", val_clips, 0),
            ("test_clips", test_clips, 1),
        ):
            if n < least:
                raise ConfigError(f"data.{name} must be >= {least}, got {n}")
        self.source, self.num_frames, self.image_size = source, num_frames, image_size
        self.digit_size = digit_size
        self.speed = (float(speed[0]), float(speed[1]))
        self.part_frames = (int(part_frames[0]), int(part_frames[1]))
        self.jitter = float(jitter)
        self.sizes = {"train": train_clips, "val": val_clips, "test": test_clips}
        self.seed, self.cache_dir = seed, cache_dir
        self.mean: list[float] = []
        self.std: list[float] = []

    @property
    def gesture_names(self) -> tuple[str, ...]:
        """The gesture names, ``right>down`` ... (clip classes ``0..G-1``)."""
        return tuple(gesture_name(g) for g in self.gestures)

    def _dataset(self, split: str) -> GestureClipDataset:
        pool = load_digit_pool(self.source, "test" if split == "test" else "train", self.digit_size)
        key = _key(
            "gesture",
            self.source,
            self.num_frames,
            self.image_size,
            self.digit_size,
            self.gestures,
            self.speed,
            self.part_frames,
            self.jitter,
            self.seed,
            self.sizes[split],
        )
        return GestureClipDataset(
            pool,
            self.gestures,
            split,
            self.sizes[split],
            self.seed,
            self.num_frames,
            self.image_size,
            self.speed,
            self.part_frames,
            self.jitter,
            self.cache_dir,
            key,
        )

    def _splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if self.sizes[s]]

    def prepare_data(self) -> None:
        """Write the missing ``cache_dir`` files on one process (see
        :meth:`~visrep.data.MovingDigitsDataModule.prepare_data`); nothing without ``cache_dir``."""
        if self.cache_dir is not None:
            for split in self._splits():
                self._dataset(split)

    def load(self) -> Splits:
        sets = {split: self._dataset(split) for split in self._splits()}
        train = sets["train"]
        return Splits(
            train, train.targets, list(self.gesture_names), test=sets["test"], val=sets.get("val")
        )

    def on_splits_ready(self) -> None:
        base, kept = self.train_set.dataset, self.train_set.indices[:256]
        x = base.batch_frames(kept).double()
        self.mean, self.std = [float(x.mean())], [float(x.std())]

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="video",
            keys=(VIDEO, LABEL, FRAME_LABELS),
            in_chans=1,
            image_size=self.image_size,
            num_frames=self.num_frames,
            num_classes=len(self.gestures),
            class_names=self.gesture_names,
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
