"""Forecasting windows from real footage: ``T_in`` frames seen, the next ``T_out`` to predict.

Sequences are frame folders (DAVIS ``JPEGImages/480p/<seq>/``) or video files, read through
:func:`~visrep.data.video.io.read_frames` / :func:`~visrep.data.video.io.iter_frames`;
frames are centre-cropped to the target aspect, resized (antialiased) and optionally turned to
grey (ITU-R BT.601 luma). Train, validation and test windows come from disjoint sequences, so no
test window shares footage with a training one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from visrep.data.augment import rgb_to_luma
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import FUTURE, META, VIDEO
from visrep.data.video.io import (
    FRAME_SUFFIXES,
    VIDEO_SUFFIXES,
    count_frames,
    iter_frames,
    read_frames,
)
from visrep.errors import ConfigError, DataError

__all__ = [
    "FrameSequence",
    "FrameWindowDataset",
    "FramesForecastDataModule",
    "find_sequences",
    "prepare_frames",
]

_READ_CHUNK = 32  # frames decoded at a time when a sequence is read whole


@dataclass(frozen=True)
class FrameSequence:
    """One source of consecutive frames.

    Attributes:
        name: its path relative to the data root (the unit of the train / test split).
        path: the frame folder or video file.
        num_frames: frames it holds.
        is_video: a video file (else a frame folder).
    """

    name: str
    path: Path
    num_frames: int
    is_video: bool

    def read(self, indices: list[int]) -> Tensor:
        """``(T, H, W, 3)`` uint8 frames at ``indices``."""
        return read_frames(self.path, indices)


def find_sequences(root: str | Path) -> list[FrameSequence]:
    """Every frame folder (a folder holding images) and video file under ``root``, sorted by name.

    Raises:
        DataError: ``root`` is missing or holds no sequence.
    """
    base = Path(root)
    if base.is_file() and base.suffix.lower() in VIDEO_SUFFIXES:
        return [FrameSequence(base.stem, base, count_frames(base), True)]
    if not base.is_dir():
        raise DataError(f"data.root {str(root)!r} is not a folder or a video file")
    out: list[FrameSequence] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        here = Path(dirpath)
        if any(Path(f).suffix.lower() in FRAME_SUFFIXES for f in filenames):
            dirnames.clear()  # a frame folder: its images are one sequence
            name = here.relative_to(base).as_posix()
            out.append(
                FrameSequence(name if name != "." else here.name, here, count_frames(here), False)
            )
            continue
        for f in sorted(filenames):
            if Path(f).suffix.lower() in VIDEO_SUFFIXES:
                p = here / f
                out.append(FrameSequence(p.relative_to(base).as_posix(), p, count_frames(p), True))
    if not out:
        raise DataError(
            f"data.root {str(root)!r} holds no frame folder ({', '.join(FRAME_SUFFIXES)}) and no "
            f"video file ({', '.join(VIDEO_SUFFIXES)})"
        )
    return sorted(out, key=lambda s: s.name)


def prepare_frames(frames: Tensor, size: tuple[int, int], grey: bool) -> Tensor:
    """RGB frames -> centre-cropped to the aspect of ``size``, resized (antialiased), grey or RGB.

    Args:
        frames: ``(T, H, W, 3)`` uint8.
        size: ``(h, w)``.
        grey: BT.601 luma, one channel.

    Returns:
        ``(T, C, h, w)`` uint8, ``C`` 1 or 3.

    >>> prepare_frames(torch.full((2, 48, 64, 3), 200, dtype=torch.uint8), (16, 16), True).shape
    torch.Size([2, 1, 16, 16])
    """
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    th, tw = size
    if h * tw > w * th:  # too tall for the target aspect: crop rows
        ch = round(w * th / tw)
        top = (h - ch) // 2
        x = x[..., top : top + ch, :]
    elif h * tw < w * th:
        cw = round(h * tw / th)
        left = (w - cw) // 2
        x = x[..., left : left + cw]
    if tuple(x.shape[-2:]) != (th, tw):
        down = x.shape[-2] > th or x.shape[-1] > tw
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=down)
    if grey:
        x = rgb_to_luma(x, 1)
    return x.round().clamp(0, 255).to(torch.uint8)


class FrameWindowDataset(Dataset):
    """Windows of consecutive frames of some sequences: ``{"video": (T_in, C, h, w), "future":
    (T_out, C, h, w), "meta": {"file", "sequence", "start", "frames"}}``, float32 in [0, 1].

    Args:
        sequences: the sequences this split uses.
        input_frames, future_frames: ``T_in``, ``T_out``.
        frame_step: take every ``frame_step``-th frame (temporal subsampling).
        stride: frames between the starts of consecutive windows.
        size, grey: see :func:`prepare_frames`.
        preload: read every sequence once (resized, 8-bit) and keep it in memory; else read
            each window's frames when it is asked for.
    """

    def __init__(
        self,
        sequences: list[FrameSequence],
        input_frames: int,
        future_frames: int,
        frame_step: int,
        stride: int,
        size: tuple[int, int],
        grey: bool,
        preload: bool,
    ) -> None:
        self.sequences, self.input_frames = sequences, input_frames
        self.length = input_frames + future_frames
        self.frame_step, self.size, self.grey = frame_step, size, grey
        span = (self.length - 1) * frame_step + 1
        self.windows = [
            (k, s)
            for k, seq in enumerate(sequences)
            for s in range(0, seq.num_frames - span + 1, stride)
        ]
        self.frames: list[Tensor] | None = None
        if preload:
            self.frames = [self._read_all(s) for s in sequences]

    def _read_all(self, seq: FrameSequence) -> Tensor:
        """Every frame of ``seq``, prepared, decoded a chunk at a time (one frame size)."""
        chunks = [
            prepare_frames(c, self.size, self.grey) for c in iter_frames(seq.path, _READ_CHUNK)
        ]
        return torch.cat(chunks)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, start = self.windows[i]
        seq = self.sequences[k]
        idx = list(range(start, start + self.length * self.frame_step, self.frame_step))
        if self.frames is not None:
            clip = self.frames[k][idx]
        else:
            clip = prepare_frames(seq.read(idx), self.size, self.grey)
        x = clip.float().div_(255.0)
        t = self.input_frames
        return {
            VIDEO: tv_tensors.Video(x[:t]),
            FUTURE: tv_tensors.Video(x[t:]),
            META: {"file": str(seq.path), "sequence": seq.name, "start": start, "frames": idx},
        }


def _pick(names: list[str], given: list[str] | None, option: str) -> list[str]:
    if given is None:
        return []
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"data.{option}: no sequence named {unknown}; the root holds {names}")
    return list(given)


class FramesForecastDataModule(SplitDataModule):
    """Frame prediction on real footage (family ``forecast``): windows of ``T_in + T_out``
    consecutive frames, split by sequence.

    Without explicit ``test_sequences`` / ``val_sequences`` the sequences are split at random
    with ``split.seed``: ``ceil(split.test_fraction x n)`` for test, ``ceil(split.val_fraction x
    n)`` for validation (none when the fraction is 0), the rest for training.

    Args:
        root: a folder of frame folders and / or video files (searched recursively; e.g.
            ``../shared/data/davis2016-subset/DAVIS/JPEGImages/480p``), or one video file.
        sequences: use only these (names relative to ``root``); None uses all.
        input_frames, future_frames: ``T_in`` seen, ``T_out`` to predict.
        image_size: ``(h, w)`` after a centre crop to that aspect and an antialiased resize.
        grey: one BT.601 luma channel (else RGB).
        frame_step: take every ``frame_step``-th frame.
        train_stride: frames between consecutive training window starts.
        eval_stride: the same for validation and test windows.
        test_sequences, val_sequences: explicit held-out sequences (names).
        preload: decode each sequence once at setup (small, 8-bit, in memory); False reads each
            window from disk when asked.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        root: str = "../shared/data/davis2016-subset/DAVIS/JPEGImages/480p",
        sequences: list[str] | None = None,
        input_frames: int = 10,
        future_frames: int = 10,
        image_size: tuple[int, int] = (64, 64),
        grey: bool = True,
        frame_step: int = 1,
        train_stride: int = 1,
        eval_stride: int = 5,
        test_sequences: list[str] | None = None,
        val_sequences: list[str] | None = None,
        preload: bool = True,
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
        if len(image_size) != 2 or min(image_size) < 1:
            raise ConfigError(f"data.image_size must be (h, w) >= 1, got {list(image_size)}")
        for name, v in (
            ("frame_step", frame_step),
            ("train_stride", train_stride),
            ("eval_stride", eval_stride),
        ):
            if v < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {v}")
        self.root, self.names = root, sequences
        self.input_frames, self.future_frames = input_frames, future_frames
        self.image_size, self.grey, self.frame_step = image_size, grey, frame_step
        self.train_stride, self.eval_stride = train_stride, eval_stride
        self.test_names, self.val_names, self.preload = test_sequences, val_sequences, preload
        self.split_names: dict[str, list[str]] = {}

    def _assign(self, names: list[str]) -> dict[str, list[str]]:
        test = _pick(names, self.test_names, "test_sequences")
        val = _pick(names, self.val_names, "val_sequences")
        if set(test) & set(val):
            raise ConfigError(
                f"data.test_sequences and data.val_sequences share {sorted(set(test) & set(val))}"
            )
        rest = [n for n in names if n not in test and n not in val]
        order = [rest[i] for i in np.random.default_rng(self.split.seed).permutation(len(rest))]
        if self.test_names is None:
            n_test = math.ceil(self.split.test_fraction * len(names))
            if n_test == 0:
                raise ConfigError(
                    "data.split.test_fraction must be > 0 when data.test_sequences is not given"
                )
            test, order = sorted(order[:n_test]), order[n_test:]
        if self.val_names is None:
            n_val = math.ceil(self.split.val_fraction * len(names))
            val, order = sorted(order[:n_val]), order[n_val:]
        if not val and self.split.val_fraction > 0:
            raise ConfigError(
                "data.val_sequences is empty: set data.split.val_fraction 0 for no validation "
                "(validation windows are never carved from training sequences)"
            )
        if not order:
            raise ConfigError(
                f"{len(names)} sequences leave none for training after {len(test)} test and "
                f"{len(val)} validation sequences: lower data.split.test_fraction / val_fraction"
            )
        return {"train": sorted(order), "val": val, "test": test}

    def load(self) -> Splits:
        found = find_sequences(self.root)
        by_name = {s.name: s for s in found}
        names = _pick(list(by_name), self.names, "sequences") or list(by_name)
        self.split_names = self._assign(names)
        sets: dict[str, FrameWindowDataset] = {}
        for part, chosen in self.split_names.items():
            if not chosen:
                continue
            stride = self.train_stride if part == "train" else self.eval_stride
            ds = FrameWindowDataset(
                [by_name[n] for n in chosen],
                self.input_frames,
                self.future_frames,
                self.frame_step,
                stride,
                self.image_size,
                self.grey,
                self.preload,
            )
            if len(ds) == 0:
                span = (self.input_frames + self.future_frames - 1) * self.frame_step + 1
                counts = {by_name[n].name: by_name[n].num_frames for n in chosen}
                raise ConfigError(
                    f"no {part} window: a window spans {span} frames but the {part} sequences "
                    f"have {counts}; use fewer frames or a smaller data.frame_step"
                )
            sets[part] = ds
        return Splits(sets["train"], None, [], test=sets["test"], val=sets.get("val"))

    def spec(self) -> DataSpec:
        """What the model needs to know about the data."""
        return DataSpec(
            family="forecast",
            keys=(VIDEO, FUTURE),
            in_chans=1 if self.grey else 3,
            image_size=self.image_size,
            num_frames=self.input_frames,
            future_frames=self.future_frames,
        )
