"""What every keypoint source shares: records, the (image, keypoints) dataset, augmentation that
moves the points with the image, photo-grouped splits and the data module.

A sample is ``{"image": Image float (C, H, W) in [0, 1], "keypoints": (K, 3) float32, "meta":
{"file", "size", "to_source"}}``: x, y in pixel-index coordinates of the (cropped, resized)
image (the centre of the pixel in row i, column j is (j, i), as OpenCV and COCO give them) and
the visibility v (COCO's: 0 unlabelled, 1 labelled but hidden, 2 visible). A point that an
augmentation moves off the image gets ``v = 0``. ``meta["size"]`` is the source image's
``(H, W)``; ``meta["to_source"] = (sx, sy, x0, y0)`` maps a sample point back to the file's
pixels: ``x_file = (x + 0.5) sx - 0.5 + x0`` (:func:`to_source`; not through augmentation).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.base import (
    DataSpec,
    LoaderConfig,
    SplitConfig,
    SplitDataModule,
    Splits,
    channel_stats,
)
from visrep.data.datasets import load_image
from visrep.data.samples import IMAGE, KEYPOINTS, META
from visrep.errors import ConfigError, DataError


@dataclass(frozen=True)
class KeypointRecord:
    """One annotated instance: an image file, its keypoints ``(K, 3)`` (x, y, v in the file's
    pixels), an optional crop box ``(x, y, w, h)`` and the group that splits keep whole (the
    photo, or the scene a stereo pair shows)."""

    file: str
    keypoints: np.ndarray
    box: tuple[float, float, float, float] | None = None
    group: str = ""


@dataclass(frozen=True)
class KeypointAugment:
    """Per-sample training augmentation (``--data.augment.degrees 10``); keypoints move with the
    image (torchvision's ``v2.RandomAffine`` on ``tv_tensors.KeyPoints``). No flips: a
    left-right flip would swap the identities of mirrored keypoints.

    Attributes:
        degrees: rotation drawn from ``[-degrees, degrees]``.
        translate: shift drawn up to this fraction of the width / height.
        scale: ``(low, high)`` range of the zoom factor.
        brightness, contrast: colour-jitter strengths (0 is off).
    """

    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(
                f"data.augment.scale must be (low, high) with 0 < low <= high, got {self.scale}"
            )
        if not 0 <= self.translate <= 1:
            raise ConfigError(f"data.augment.translate must be in [0, 1], got {self.translate}")
        for name in ("degrees", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.augment.{name} must be >= 0, got {getattr(self, name)}")

    def transform(self) -> v2.Transform | None:
        """The v2 transform of an ``{"image", "points"}`` dict (points as KeyPoints), or None."""
        steps: list[v2.Transform] = []
        if self.degrees or self.translate or tuple(self.scale) != (1.0, 1.0):
            t = (self.translate, self.translate) if self.translate else None
            steps.append(
                v2.RandomAffine(
                    self.degrees,
                    translate=t,
                    scale=tuple(self.scale),
                    # nearest neighbours would shift edges by up to half a pixel
                    interpolation=v2.InterpolationMode.BILINEAR,
                )
            )
        if self.brightness or self.contrast:
            steps.append(v2.ColorJitter(self.brightness, self.contrast))
        return v2.Compose(steps) if steps else None


def resize_keypoints(keypoints: Tensor, scale: tuple[float, float]) -> Tensor:
    """Keypoints ``(K, 3)`` of an image resized by ``(sx, sy)``: pixel centres stay centres,
    ``x' = (x + 0.5) sx - 0.5`` (visibility kept)."""
    s = keypoints.new_tensor(scale)
    return torch.cat(((keypoints[:, :2] + 0.5) * s - 0.5, keypoints[:, 2:]), 1)


def to_source(xy: Tensor, params: Tensor | Sequence[float]) -> Tensor:
    """Sample coordinates ``(..., 2)`` in the pixels of the source file: ``params`` is
    ``meta["to_source"]`` ``(sx, sy, x0, y0)``, or a tensor ``(..., 4)`` that broadcasts with
    ``xy`` (one row per sample of a batch: ``(B, 1, 4)`` for ``(B, K, 2)`` points)."""
    p = torch.as_tensor(params, dtype=xy.dtype, device=xy.device)
    return (xy + 0.5) * p[..., :2] - 0.5 + p[..., 2:]


def hide_outside(keypoints: Tensor, size: tuple[int, int]) -> Tensor:
    """Set ``v = 0`` for points off an ``(H, W)`` image or with non-finite coordinates."""
    h, w = size
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    out = keypoints.clone()
    out[:, 2] = torch.where(inside & torch.isfinite(x) & torch.isfinite(y), out[:, 2], 0.0)
    return out


class KeypointDataset(Dataset):
    """Keypoint records as samples: read, crop to the record's box (if any), resize to
    ``image_size`` (if given), then the optional training transform.

    Args:
        records: the instances.
        channels: image channels (1 grey, 3 RGB).
        image_size: ``(H, W)`` of every sample; None keeps each image's (crop's) size.
        transform: an augmentation (:meth:`KeypointAugment.transform`), or None.
        cache: keep each decoded, cropped and resized sample in memory.
    """

    def __init__(
        self,
        records: list[KeypointRecord],
        channels: int,
        image_size: tuple[int, int] | None,
        transform: v2.Transform | None = None,
        cache: bool = False,
    ) -> None:
        self.records, self.channels, self.image_size = records, channels, image_size
        self.transform, self.cache = transform, cache
        self._cache: dict[int, tuple[Tensor, Tensor, dict[str, Any]]] = {}

    def with_transform(self, transform: v2.Transform | None) -> KeypointDataset:
        """The same records (and cache) with another transform."""
        ds = KeypointDataset(self.records, self.channels, self.image_size, transform, self.cache)
        ds._cache = self._cache
        return ds

    def __len__(self) -> int:
        return len(self.records)

    def fixed(self, i: int) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Image ``(C, H, W)``, keypoints ``(K, 3)`` and ``meta`` of record ``i`` before
        augmentation."""
        if i in self._cache:
            return self._cache[i]
        r = self.records[i]
        image = load_image(r.file, self.channels)
        size = tuple(image.shape[-2:])
        kp = torch.as_tensor(r.keypoints, dtype=torch.float32)
        x0 = y0 = 0
        if r.box is not None:
            x0, y0, bw, bh = (round(v) for v in r.box)
            image = v2.functional.crop(image, y0, x0, max(bh, 1), max(bw, 1))
            kp = torch.cat((kp[:, :2] - kp.new_tensor([x0, y0]), kp[:, 2:]), 1)
        h, w = image.shape[-2:]
        if self.image_size is not None:
            image = v2.functional.resize(image, list(self.image_size), antialias=True)
            kp = resize_keypoints(kp, (self.image_size[1] / w, self.image_size[0] / h))
        kp = hide_outside(kp, tuple(image.shape[-2:]))
        scale = (w / image.shape[-1], h / image.shape[-2])
        meta = {"file": r.file, "size": size, "to_source": (*scale, float(x0), float(y0))}
        if self.cache:
            self._cache[i] = (image, kp, meta)
        return image, kp, meta

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, kp, meta = self.fixed(i)
        if self.transform is not None:
            # KeyPoints follow the continuous convention (pixel j spans [j, j + 1)): shift by 0.5
            points = tv_tensors.KeyPoints(kp[:, :2] + 0.5, canvas_size=tuple(image.shape[-2:]))
            out = self.transform({"image": tv_tensors.Image(image), "points": points})
            image = out["image"].as_subclass(Tensor)
            xy = out["points"].as_subclass(Tensor) - 0.5
            kp = hide_outside(torch.cat((xy, kp[:, 2:]), 1), tuple(image.shape[-2:]))
        return {IMAGE: tv_tensors.Image(image.clamp(0, 1)), KEYPOINTS: kp, META: meta}


def select_files(records: list[KeypointRecord], patterns: list[str]) -> np.ndarray:
    """Whether each record's file (its path, or its name) matches one of the glob ``patterns``."""
    return np.array(
        [
            any(
                fnmatch.fnmatch(r.file, p) or fnmatch.fnmatch(PurePath(r.file).name, p)
                for p in patterns
            )
            for r in records
        ],
        dtype=bool,
    )


class KeypointDataModule(SplitDataModule):
    """Keypoint samples from a CSV (``file, x1, y1, v1, ...``; :mod:`.csvfile`) or a
    COCO-keypoints JSON (:mod:`.coco`), chosen by the file's suffix.

    Splits: the test split is ``test_annotations`` (a second file) or the records whose file
    matches a ``test_files`` glob (``"left1[234].jpg"``), else ``split.test_fraction``; the
    validation split is ``split.val_fraction`` of the rest. Held-out splits keep a record's
    group whole (the photo; the scene of a stereo pair for the chessboards), so a photo never
    lands on both sides. Normalisation statistics come from the training split.

    Args:
        annotations: the CSV or COCO JSON file.
        image_root: folder the annotation's file names are relative to (default: the
            annotation file's folder; COCO: that folder too).
        keypoint_names: the declared keypoints (the CSV's row length must fit them).
        num_keypoints: their number when no names are given (names ``kp0 ..``).
        image_size: ``(H, W)`` of the samples (None: the images' own; they must then share one).
        channels: 1 (grey) or 3 (RGB).
        test_annotations: a file of test records in the same format.
        test_files: glob patterns of the files that make the test split.
        crop_boxes: COCO: one sample per annotated person, cropped to its box enlarged by
            ``box_margin`` on each side; off: one sample per image (its instance with the
            most labelled keypoints).
        box_margin: the box enlargement, a fraction of its width / height.
        augment: per-sample training augmentation.
        cache: keep decoded, resized samples in memory.
        loader, split: batches and splits.
    """

    def __init__(
        self,
        annotations: str,
        image_root: str | None = None,
        keypoint_names: list[str] | None = None,
        num_keypoints: int | None = None,
        image_size: tuple[int, int] | None = None,
        channels: int = 3,
        test_annotations: str | None = None,
        test_files: list[str] | None = None,
        crop_boxes: bool = False,
        box_margin: float = 0.25,
        augment: KeypointAugment | None = None,
        cache: bool = True,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise ConfigError(f"data.image_size must be (H, W) of positive ints, got {image_size}")
        if test_annotations is not None and test_files:
            raise ConfigError("give data.test_annotations or data.test_files, not both")
        self.annotations, self.image_root = annotations, image_root
        self.keypoint_names, self.num_keypoints = keypoint_names, num_keypoints
        self.image_size = tuple(image_size) if image_size is not None else None
        self.channels, self.test_annotations, self.test_files = (
            channels,
            test_annotations,
            test_files,
        )
        self.crop_boxes, self.box_margin = crop_boxes, box_margin
        self.augment = augment or KeypointAugment()
        self.cache = cache
        self.names: tuple[str, ...] = ()
        self.limbs: tuple[tuple[int, int], ...] = ()
        self.mean: list[float] = []
        self.std: list[float] = []
        self.image_shape: tuple[int, int, int] = (0, 0, 0)

    # -- sources ----------------------------------------------------------------------------------
    def read(self, path: str) -> tuple[list[KeypointRecord], tuple[str, ...]]:
        """The records and keypoint names of an annotation file (by suffix)."""
        from visrep.data.keypoints.coco import read_coco_keypoints
        from visrep.data.keypoints.csvfile import read_keypoint_csv

        p = Path(path)
        root = self.image_root or str(p.parent)
        if p.suffix.lower() == ".csv":
            return read_keypoint_csv(path, root, self.keypoint_names, self.num_keypoints)
        if p.suffix.lower() == ".json":
            records, names, limbs = read_coco_keypoints(
                path, root, self.crop_boxes, self.box_margin
            )
            self.limbs = limbs
            if self.keypoint_names is not None and tuple(self.keypoint_names) != names:
                raise DataError(
                    f"{path}: its keypoints are {list(names)}, but data.keypoint_names lists {self.keypoint_names}"
                )
            return records, names
        raise ConfigError(
            f"data.annotations {path!r}: expected a .csv or a COCO-keypoints .json file"
        )

    def dataset(self, records: list[KeypointRecord]) -> KeypointDataset:
        return KeypointDataset(records, self.channels, self.image_size, None, self.cache)

    def load(self) -> Splits:
        records, self.names = self.read(self.annotations)
        test = None
        if self.test_annotations is not None:
            test_records, names = self.read(self.test_annotations)
            if names != self.names:
                raise DataError(
                    f"{self.test_annotations}: {len(names)} keypoints {list(names)[:4]}..., but "
                    f"{self.annotations} has {len(self.names)}"
                )
            test = self.dataset(test_records)
        elif self.test_files:
            held = select_files(records, list(self.test_files))
            if not held.any() or held.all():
                raise ConfigError(
                    f"data.test_files {list(self.test_files)} match {int(held.sum())} of the "
                    f"{len(records)} files of {self.annotations}: expected some, not all"
                )
            test = self.dataset([r for r, h in zip(records, held, strict=True) if h])
            records = [r for r, h in zip(records, held, strict=True) if not h]
        self._groups = np.array([r.group or r.file for r in records])
        return Splits(self.dataset(records), None, list(self.names), test=test)

    def split_indices(
        self,
        idx: np.ndarray,
        targets: np.ndarray,
        held_out: float | int,
        seed: int,
        option: str = "data.split",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seeded held-out groups (photos / scenes) of at least ``held_out`` samples in all."""
        if held_out <= 0:
            return idx, idx[:0]
        groups = self._groups[idx]
        order = np.random.default_rng(seed).permutation(np.unique(groups))
        n_held = held_out if isinstance(held_out, int) else math.ceil(held_out * len(idx))
        sizes = np.array([(groups == g).sum() for g in order])
        taken = order[: int(np.searchsorted(np.cumsum(sizes), n_held) + 1)]
        held = np.isin(groups, taken)
        if held.all():
            raise ConfigError(
                f"{option} {held_out} holds out all {len(idx)} samples: use a smaller value or more data"
            )
        return idx[~held], idx[held]

    def on_splits_ready(self) -> None:
        base: KeypointDataset = self.train_set.dataset
        indices = list(self.train_set.indices)
        self.mean, self.std = channel_stats(self.train_set, seed=self.split.seed)
        sizes = {tuple(base.fixed(i)[0].shape) for i in indices[:64]}
        if len(sizes) > 1:
            raise ConfigError(
                f"{self.annotations}: the images have different sizes {sorted(sizes)[:3]}: set "
                "data.image_size so batches stack"
            )
        self.image_shape = next(iter(sizes))
        self.train_set = Subset(base.with_transform(self.augment.transform()), indices)

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="keypoints",
            keys=(IMAGE, KEYPOINTS),
            in_chans=self.image_shape[0],
            image_size=tuple(self.image_shape[1:]),
            num_classes=len(self.names),
            class_names=tuple(self.names),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )

    def sample_names(self) -> list[str]:
        """The test (= predict) split's file names, in loader order."""
        ds = self.test_set
        base, idx = (
            (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, range(len(ds)))
        )
        return [base.records[i].file for i in idx]
