"""Moving-digits data modules: motion-labelled clips (classification) and Moving-MNIST sequences
(forecasting), generated from a seed by :mod:`visrep.data.video.moving_digits`.

Every sample is a pure function of ``(seed, split, index)``: generated when asked for, or, with
``cache_dir``, generated once per split and written as an 8-bit ``.npy`` that is memory-mapped
when read back (the two give the same frames: generated frames are rounded to 8 bits too).
Validation clips draw from the training digits, test clips from the held-out digits.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import FLOW, FUTURE, LABEL, META, VIDEO
from visrep.data.video.flow import FlowMethod
from visrep.data.video.moving_digits import (
    ClipParams,
    DigitPool,
    GeneratedClips,
    MotionClass,
    load_digit_pool,
    motion_classes,
    sample_seed,
)
from visrep.errors import ConfigError

__all__ = [
    "MotionClipDataset",
    "MovingDigitsDataModule",
    "MovingDigitsForecastDataModule",
    "MovingSequenceDataset",
]


class MotionClipDataset(GeneratedClips):
    """Motion-labelled clips: ``{"video": Video (T, 1, H, W), "label": int, "meta": dict}``
    (and ``"flow"`` ``(T - 1, 2, H, W)`` with ``flow=True``).

    Clip ``i`` has class ``i mod K``; its digit(s), start phase, start orientation and the
    factors outside the class are drawn from the clip's own generator.
    """

    def __init__(
        self,
        pool: DigitPool,
        classes: list[MotionClass],
        split: str,
        length: int,
        seed: int,
        num_frames: int,
        size: tuple[int, int],
        num_digits: int,
        directions: int,
        speeds: tuple[float, ...],
        rotations: tuple[float, ...],
        boundaries: tuple[str, ...],
        with_flow: bool = False,
        flow_method: FlowMethod = "farneback",
        cache_dir: str | None = None,
        cache_key: str = "",
    ) -> None:
        self.classes, self.num_digits, self.directions = classes, num_digits, directions
        self.speeds, self.rotations, self.boundaries = speeds, rotations, boundaries
        self.with_flow, self.flow_method = with_flow, flow_method
        super().__init__(pool, split, length, seed, num_frames, size, cache_dir, cache_key)

    @property
    def targets(self) -> np.ndarray:
        return np.arange(self.length) % len(self.classes)

    def params(self, index: int) -> ClipParams:
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.split, index))
        label = index % len(self.classes)
        c = self.classes[label]
        d = self.num_digits

        def pick(values: tuple) -> Any:
            return values[int(torch.randint(len(values), (1,), generator=g))]

        digits = torch.randint(len(self.pool), (d,), generator=g)
        if c.direction is None:
            a = (
                2
                * math.pi
                * int(torch.randint(self.directions, (1,), generator=g))
                / self.directions
            )
            direction = (math.cos(a), math.sin(a))
        else:
            direction = c.direction
        speed = pick(self.speeds) if c.speed is None else c.speed
        rotation = pick(self.rotations) if c.rotation is None else c.rotation
        boundary = pick(self.boundaries) if c.boundary is None else c.boundary
        bounce = boundary == "bounce"
        s = self.pool.images.shape[-1]
        extent = torch.tensor([self.size[1] - s, self.size[0] - s], dtype=torch.float64)
        # The stationary start (see trajectories): uniform position at every frame, any class.
        start = torch.rand(d, 2, generator=g, dtype=torch.float64) * extent * (2 if bounce else 1)
        turns = any(r != 0 for r in self.rotations)
        angle0 = torch.rand(d, generator=g, dtype=torch.float64) * 2 * math.pi
        velocity = torch.tensor(direction, dtype=torch.float64).expand(d, 2) * speed
        return ClipParams(
            label=label,
            digits=digits,
            start=start,
            velocity=velocity.clone(),
            angle0=angle0 if turns else torch.zeros(d, dtype=torch.float64),
            omega=torch.full((d,), math.radians(rotation), dtype=torch.float64),
            bounce=bounce,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.params(index)  # once: the label and digits, and the frames when rendered
        clip = self.frames(index, p)
        sample: dict[str, Any] = {
            VIDEO: tv_tensors.Video(clip),
            LABEL: p.label,
            META: {
                "index": index,
                "split": self.split,
                "start": 0,
                "class": self.classes[p.label].name,
                "digits": self.pool.labels[p.digits].tolist(),
            },
        }
        if self.with_flow:
            sample[FLOW] = self.flow(index, self.flow_method, clip)
        return sample


class MovingSequenceDataset(GeneratedClips):
    """Moving-MNIST sequences split into ``{"video": (T_in, 1, H, W), "future": (T_out, 1, H, W),
    "meta": dict}``: digits start uniformly in the free range, move in a direction uniform on
    the circle at a speed uniform in ``speed``, and bounce off the edges (Srivastava et al.
    2015, Sec. 3).
    """

    def __init__(
        self,
        pool: DigitPool,
        split: str,
        length: int,
        seed: int,
        input_frames: int,
        future_frames: int,
        size: tuple[int, int],
        num_digits: int,
        speed: tuple[float, float],
        subpixel: bool,
        cache_dir: str | None = None,
        cache_key: str = "",
    ) -> None:
        self.input_frames, self.num_digits, self.speed = input_frames, num_digits, speed
        self.subpixel = subpixel
        super().__init__(
            pool, split, length, seed, input_frames + future_frames, size, cache_dir, cache_key
        )

    def params(self, index: int) -> ClipParams:
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.split, index))
        d = self.num_digits
        s = self.pool.images.shape[-1]
        extent = torch.tensor([self.size[1] - s, self.size[0] - s], dtype=torch.float64)
        digits = torch.randint(len(self.pool), (d,), generator=g)
        start = torch.rand(d, 2, generator=g, dtype=torch.float64) * extent
        theta = torch.rand(d, generator=g, dtype=torch.float64) * 2 * math.pi
        lo, hi = self.speed
        speed = lo + (hi - lo) * torch.rand(d, generator=g, dtype=torch.float64)
        velocity = torch.stack((theta.cos(), theta.sin()), dim=-1) * speed[:, None]
        zeros = torch.zeros(d, dtype=torch.float64)
        return ClipParams(0, digits, start, velocity, zeros, zeros, True, not self.subpixel)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = self.params(index)
        clip = self.frames(index, p)
        meta = {"index": index, "split": self.split, "digits": self.pool.labels[p.digits].tolist()}
        t = self.input_frames
        return {
            VIDEO: tv_tensors.Video(clip[:t]),
            FUTURE: tv_tensors.Video(clip[t:]),
            META: meta,
        }


def _check_size(image_size: tuple[int, int], digit_size: int, num_frames: int) -> None:
    if len(image_size) != 2 or min(image_size) < 1:
        raise ConfigError(f"data.image_size must be (H, W) >= 1, got {list(image_size)}")
    if not 1 <= digit_size < min(image_size):
        raise ConfigError(
            f"data.digit_size must be in [1, {min(image_size) - 1}] (smaller than "
            f"data.image_size {list(image_size)}), got {digit_size}"
        )
    if num_frames < 2:
        raise ConfigError(f"a clip needs at least 2 frames, got {num_frames}")


def _key(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


class MovingDigitsDataModule(SplitDataModule):
    """Moving digits labelled by their MOTION (family ``video``): a single frame tells nothing.

    The class is the combination of the chosen ``factors`` (direction, speed, rotation sense,
    bounce vs wrap; :func:`~visrep.data.video.moving_digits.motion_classes`). Why a frame
    carries no class information: the digit image, its start and the factors outside the class
    are drawn independently of the class, and the start is the motion's stationary
    distribution (position uniform on the free range, uniform on ``[0, 2L)`` of the unfolded
    bounce coordinate; orientation uniform on the circle when anything rotates), so at EVERY
    frame the position and orientation are uniform whatever the velocity or the turn rate:
    the distribution of any one frame is the same for all classes. Only how frames change
    reveals the class (the seed's case for temporal models over single-frame ones). Wrapping
    digits jump to the opposite side without being cut, so no frame shows the boundary.

    Args:
        source: digit images (``"sklearn"``, an IDX folder or file, an ``.npz``; see
            :func:`~visrep.data.video.moving_digits.load_digit_pool`).
        num_frames: frames per clip ``T``.
        image_size: canvas ``(H, W)``.
        digit_size: the box a digit is drawn in, pixels.
        num_digits: digits per clip (all move alike; they may overlap, combined by max).
        factors: what defines the class: ``direction``, ``speed``, ``rotation``, ``boundary``.
        directions: number of directions (4: right, down, left, up; 8 adds the diagonals).
        speeds: pixels per frame.
        rotations: degrees per frame (> 0 counter-clockwise); ``[0]`` keeps digits upright.
        boundaries: ``wrap`` and / or ``bounce``.
        train_clips, val_clips, test_clips: sizes of the splits (test clips use held-out digits;
            ``val_clips=0`` carves ``split.val_fraction`` of the training clips instead).
        seed: the data set's seed (sample ``i`` of a split is a function of seed, split, ``i``).
        flow: add Farneback flow ``(T - 1, 2, H, W)`` per clip (two-stream models).
        flow_method: ``farneback`` or ``tvl1``.
        cache_dir: write each split once as an 8-bit ``.npy`` here and memory-map it (with
            ``flow``, its flow too, float16), in :meth:`prepare_data`; None renders clips (and
            computes flow) when they are asked for.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule` (``split.train_samples``
            takes a class-balanced subset; the fractions are unused: the splits are generated).
    """

    def __init__(
        self,
        source: str = "sklearn",
        num_frames: int = 16,
        image_size: tuple[int, int] = (32, 32),
        digit_size: int = 14,
        num_digits: int = 1,
        factors: tuple[str, ...] = ("direction", "speed"),
        directions: int = 4,
        speeds: tuple[float, ...] = (1.0, 2.5),
        rotations: tuple[float, ...] = (0.0,),
        boundaries: tuple[str, ...] = ("wrap",),
        train_clips: int = 4000,
        val_clips: int = 500,
        test_clips: int = 1000,
        seed: int = 0,
        flow: bool = False,
        flow_method: FlowMethod = "farneback",
        cache_dir: str | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=64), split)
        image_size = tuple(int(v) for v in image_size)
        _check_size(image_size, digit_size, num_frames)
        if num_digits < 1:
            raise ConfigError(f"data.num_digits must be >= 1, got {num_digits}")
        for name, n, least in (
            ("train_clips", train_clips, 1),
            ("val_clips", val_clips, 0),
            ("test_clips", test_clips, 1),
        ):
            if n < least:
                raise ConfigError(f"data.{name} must be >= {least}, got {n}")
        if flow_method not in ("farneback", "tvl1"):
            raise ConfigError(
                f"data.flow_method must be 'farneback' or 'tvl1', got {flow_method!r}"
            )
        self.classes = motion_classes(factors, directions, speeds, rotations, boundaries)
        self.source, self.num_frames, self.image_size = source, num_frames, image_size
        self.digit_size, self.num_digits, self.directions = digit_size, num_digits, directions
        self.speeds, self.rotations = tuple(speeds), tuple(rotations)
        self.boundaries, self.factors = tuple(boundaries), tuple(factors)
        self.sizes = {"train": train_clips, "val": val_clips, "test": test_clips}
        self.seed, self.flow, self.flow_method, self.cache_dir = seed, flow, flow_method, cache_dir
        if "boundary" in factors:
            self._check_events()
        self.mean: list[float] = []
        self.std: list[float] = []

    def _check_events(self) -> None:
        """Bounce vs wrap is only visible if every clip crosses its free range at least once."""
        free = [s - self.digit_size for s in self.image_size[::-1]]  # (Lx, Ly)
        dirs = {c.direction for c in self.classes if c.direction is not None}
        if not dirs:
            dirs = {
                (
                    math.cos(2 * math.pi * k / self.directions),
                    math.sin(2 * math.pi * k / self.directions),
                )
                for k in range(self.directions)
            }
        speeds = {c.speed for c in self.classes if c.speed is not None} or set(self.speeds)
        for d in dirs:
            for s in speeds:
                travel = max(
                    abs(v) * s * (self.num_frames - 1) / L for v, L in zip(d, free, strict=True)
                )
                if travel < 1 - 1e-9:
                    raise ConfigError(
                        f"factor 'boundary': a clip moving {s:g} px/frame along {d} travels "
                        f"{travel:.2f} of the free range ({free} px) in {self.num_frames} frames, "
                        "so some clips show no bounce or wrap; raise data.speeds or "
                        "data.num_frames, or shrink data.image_size"
                    )

    def _dataset(self, split: str) -> MotionClipDataset:
        pool = load_digit_pool(self.source, "test" if split == "test" else "train", self.digit_size)
        key = _key(
            "motion",
            self.source,
            self.num_frames,
            self.image_size,
            self.digit_size,
            self.num_digits,
            self.factors,
            self.directions,
            self.speeds,
            self.rotations,
            self.boundaries,
            self.seed,
            self.sizes[split],
        )
        return MotionClipDataset(
            pool,
            self.classes,
            split,
            self.sizes[split],
            self.seed,
            self.num_frames,
            self.image_size,
            self.num_digits,
            self.directions,
            self.speeds,
            self.rotations,
            self.boundaries,
            self.flow,
            self.flow_method,
            self.cache_dir,
            key,
        )

    def _splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if self.sizes[s]]

    def prepare_data(self) -> None:
        """Write the ``cache_dir`` files (each split's frames, and its flow with ``flow``) that
        are missing. Lightning calls this on one process (per node) before :meth:`setup`, so
        the processes of a distributed run only read the files; a lone process that skipped it
        writes them in :meth:`setup`. Nothing to do without ``cache_dir``."""
        if self.cache_dir is None:
            return
        for split in self._splits():
            ds = self._dataset(split)  # writes the frames
            if self.flow:
                ds.flow_array(self.flow_method)

    def load(self) -> Splits:
        sets = {split: self._dataset(split) for split in self._splits()}
        if self.flow and self.cache_dir is not None:
            for ds in sets.values():  # open the flow caches here, not in loader workers
                ds.flow_array(self.flow_method)
        train = sets["train"]
        return Splits(
            train,
            train.targets,
            [c.name for c in self.classes],
            test=sets["test"],
            val=sets.get("val"),
        )

    def on_splits_ready(self) -> None:
        # the first (up to) 256 training clips in one call (no flow needed here)
        base, kept = self.train_set.dataset, self.train_set.indices[:256]
        x = base.batch_frames(kept).double()
        self.mean, self.std = [float(x.mean())], [float(x.std())]

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        keys = (VIDEO, LABEL) + ((FLOW,) if self.flow else ())
        return DataSpec(
            family="video",
            keys=keys,
            in_chans=1,
            image_size=self.image_size,
            num_frames=self.num_frames,
            num_classes=len(self.classes),
            class_names=tuple(c.name for c in self.classes),
            mean=tuple(self.mean),
            std=tuple(self.std),
            flow_frames=self.num_frames - 1 if self.flow else None,
        )


class MovingDigitsForecastDataModule(SplitDataModule):
    """Moving-MNIST-style sequences for frame prediction (family ``forecast``).

    The standard (Srivastava et al. 2015, Sec. 3; Shi et al. 2015, Sec. 4.1): 64 x 64 frames, two
    28 x 28 digits bouncing off the edges, 10 frames in and 10 to predict. The default speed is
    the authors' data handler's: a step of 0.1 of the free range per frame (0.1 x 36 = 3.6 px),
    positions truncated to whole pixels (``subpixel=False``); their handler clamps a digit at a
    wall and flips its velocity, the closed form here reflects it elastically (the two differ
    by less than one step at a bounce). With ``source="sklearn"`` the digits are scikit-learn's
    8x8 digits upsampled, blurrier than MNIST's; pass an MNIST-family IDX folder for MNIST-like
    strokes.

    Args:
        source: digit images (see :func:`~visrep.data.video.moving_digits.load_digit_pool`).
        input_frames: frames seen, ``T_in``.
        future_frames: frames to predict, ``T_out``.
        image_size: canvas ``(H, W)``.
        digit_size: the box a digit is drawn in.
        num_digits: digits per sequence.
        speed: ``(low, high)`` pixels per frame, drawn uniformly per digit.
        subpixel: keep fractional positions (bilinear) instead of whole pixels.
        train_sequences, val_sequences, test_sequences: split sizes.
        seed: the data set's seed.
        cache_dir: write each split once as an 8-bit ``.npy`` and memory-map it.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        source: str = "sklearn",
        input_frames: int = 10,
        future_frames: int = 10,
        image_size: tuple[int, int] = (64, 64),
        digit_size: int = 28,
        num_digits: int = 2,
        speed: tuple[float, float] = (3.6, 3.6),
        subpixel: bool = False,
        train_sequences: int = 10000,
        val_sequences: int = 1000,
        test_sequences: int = 2000,
        seed: int = 0,
        cache_dir: str | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=16), split)
        image_size = tuple(int(v) for v in image_size)
        if input_frames < 1 or future_frames < 1:
            raise ConfigError(
                f"data.input_frames and data.future_frames must be >= 1, got {input_frames}, "
                f"{future_frames}"
            )
        _check_size(image_size, digit_size, input_frames + future_frames)
        if num_digits < 1:
            raise ConfigError(f"data.num_digits must be >= 1, got {num_digits}")
        if len(speed) != 2 or not 0 <= speed[0] <= speed[1]:
            raise ConfigError(
                f"data.speed must be (low, high) with 0 <= low <= high, got {list(speed)}"
            )
        sizes = {"train": train_sequences, "val": val_sequences, "test": test_sequences}
        for name, n in sizes.items():
            if n < 1:
                raise ConfigError(f"data.{name}_sequences must be >= 1, got {n}")
        self.source, self.input_frames, self.future_frames = source, input_frames, future_frames
        self.image_size, self.digit_size, self.num_digits = image_size, digit_size, num_digits
        self.speed, self.subpixel, self.sizes = (float(speed[0]), float(speed[1])), subpixel, sizes
        self.seed, self.cache_dir = seed, cache_dir

    def _dataset(self, split: str) -> MovingSequenceDataset:
        pool = load_digit_pool(self.source, "test" if split == "test" else "train", self.digit_size)
        key = _key(
            "forecast",
            self.source,
            self.input_frames,
            self.future_frames,
            self.image_size,
            self.digit_size,
            self.num_digits,
            self.speed,
            self.subpixel,
            self.seed,
            self.sizes[split],
        )
        return MovingSequenceDataset(
            pool,
            split,
            self.sizes[split],
            self.seed,
            self.input_frames,
            self.future_frames,
            self.image_size,
            self.num_digits,
            self.speed,
            self.subpixel,
            self.cache_dir,
            key,
        )

    def prepare_data(self) -> None:
        """Write the missing ``cache_dir`` files of the three splits, on one process (see
        :meth:`MovingDigitsDataModule.prepare_data`); nothing to do without ``cache_dir``."""
        if self.cache_dir is not None:
            for split in ("train", "val", "test"):
                self._dataset(split)

    def load(self) -> Splits:
        return Splits(
            self._dataset("train"), None, [], test=self._dataset("test"), val=self._dataset("val")
        )

    def spec(self) -> DataSpec:
        """What the model needs to know about the data."""
        return DataSpec(
            family="forecast",
            keys=(VIDEO, FUTURE),
            in_chans=1,
            image_size=self.image_size,
            num_frames=self.input_frames,
            future_frames=self.future_frames,
        )
