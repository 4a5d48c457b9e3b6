"""Map-style image datasets returning sample dicts ``{"image": Image, "label": int}`` with images as
float ``(C, H, W)`` in [0, 1] (see :mod:`visrep.data.samples`); array-backed ones also gather a
whole batch at once (:class:`SampleBatch`, :func:`collate_samples`)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.samples import IMAGE, LABEL, collate, image_sample
from visrep.errors import DataError

MAX_CLASSES = 1_000_000  # labels past this are corrupt, not a real class count


def to_nchw(images: np.ndarray, source: str) -> np.ndarray:
    """View an image array as ``(N, C, H, W)``: accepts (N, H, W), (N, H, W, C) and (N, C, H, W)."""
    out = None
    if images.ndim == 3:
        out = images[:, None]
    elif images.ndim == 4:
        if images.shape[1] in (1, 3, 4):
            out = images
        elif images.shape[3] in (1, 3, 4):
            out = images.transpose(0, 3, 1, 2)
    if out is None or 0 in out.shape[2:]:
        raise DataError(
            f"{source}: image array has shape {images.shape}; expected (N, H, W), (N, H, W, C) "
            "or (N, C, H, W) with C in {1, 3, 4} and H, W > 0"
        )
    return out


def check_image_values(images: np.ndarray, source: str) -> None:
    """Refuse images that are neither uint8 nor finite floats in [0, 1] (one pass: min, max)."""
    if images.dtype == np.uint8:
        return
    if np.issubdtype(images.dtype, np.floating):
        if images.size == 0:
            return
        lo, hi = images.min(), images.max()
        if lo >= 0 and hi <= 1:  # False for NaN: min and max propagate it
            return
        seen = f"values in [{lo}, {hi}]"
    else:
        seen = f"dtype {images.dtype}"
    raise DataError(
        f"{source}: images must be uint8 (0-255) or float in [0, 1] (finite), got {seen}"
    )


def check_labels(labels: np.ndarray, source: str) -> np.ndarray:
    """Class labels as int64 ``(N,)``: refuse non-integer, negative or absurdly large ones."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{source}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise DataError(
            f"{source}: labels must be class indices in [0, {MAX_CLASSES}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    return np.asarray(labels, dtype=np.int64)


def image_split(
    images: np.ndarray, labels: np.ndarray, images_source: str, labels_source: str
) -> ArrayImageDataset:
    """One split from ``(N, C, H, W)`` images and ``(N,)`` labels, checked, naming the files."""
    targets = check_labels(labels, labels_source)
    if len(images) == 0:
        raise DataError(f"{images_source}: holds no images; expected at least one per split")
    if len(images) != len(targets):
        n, m = len(images), len(targets)
        raise DataError(
            f"{images_source}: {n} images but {m} labels"
            if images_source == labels_source
            else f"{images_source} has {n} images but {labels_source} has {m} labels"
        )
    check_image_values(images, images_source)
    return ArrayImageDataset(images, targets)


def class_names(
    splits: Sequence[ArrayImageDataset], given: list[str] | None, source: str
) -> list[str]:
    """The class names: ``given``, or the label indices up to the largest label of any split."""
    n = max(int(d.targets.max()) for d in splits) + 1
    if given is None:
        return [str(i) for i in range(n)]
    if len(given) < n:
        raise DataError(
            f"{source}: labels go up to {n - 1} but data.class_names lists {len(given)} classes"
        )
    return list(given)


class SampleBatch(Sequence):
    """The samples of one batch, gathered at once: :attr:`batch` holds them collated (what
    :func:`~visrep.data.samples.collate` makes of their sample dicts), and as a sequence it gives
    each sample dict, built on access, so any collate function still gets sample dicts.

    A dataset's ``__getitems__`` (which torch's DataLoader calls with a batch's indices) returns
    one; :func:`collate_samples` (the collate function of visrep's data modules) passes its batch
    through, so no per-sample dict or ``tv_tensors`` wrapper is made.

    Args:
        batch: the collated batch (tensors with the samples along dimension 0).
        sample: the sample dict of row ``i`` of ``batch``.
    """

    def __init__(self, batch: dict[str, Any], sample: Callable[[int], dict[str, Any]]) -> None:
        self.batch = batch
        self._sample = sample
        self._n = len(next(iter(batch.values()))) if batch else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int | slice) -> Any:
        rows = range(self._n)[i]  # IndexError past the end, negative indices, slices
        return [self._sample(j) for j in rows] if isinstance(i, slice) else self._sample(rows)


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`~visrep.data.samples.collate`, except that a :class:`SampleBatch` gives its batch
    as it is (the samples were gathered at once)."""
    return samples.batch if isinstance(samples, SampleBatch) else collate(samples)


class ArrayImageDataset(Dataset):
    """Images held in (or memory-mapped from) one array.

    ``__getitems__`` (a batch's indices, from torch's DataLoader) reads the batch with one index
    operation and returns a :class:`SampleBatch`: the same values as the samples one by one,
    collated, without per-sample Python work.

    Args:
        images: ``(N, C, H, W)`` array, uint8 in [0, 255] or float in [0, 1] (a view is fine;
            memory-mapped arrays are read lazily, item by item).
        targets: ``(N,)`` integer class labels.
        scale: multiplier turning stored values into [0, 1] (1/255 for uint8).
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, scale: float | None = None) -> None:
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.scale = scale if scale is not None else (1 / 255 if images.dtype == np.uint8 else 1.0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = torch.from_numpy(np.array(self.images[i], dtype=np.float32, copy=True))
        return image_sample(x.mul_(self.scale), int(self.targets[i]))

    def __getitems__(self, indices: Sequence[int]) -> SampleBatch:
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx], dtype=np.float32))
        images, labels = x.mul_(self.scale), torch.from_numpy(self.targets[idx])
        return SampleBatch({IMAGE: images, LABEL: labels},
                           lambda j: image_sample(images[j].clone(), int(labels[j])))  # fmt: skip

    def channel_stats(self, indices: np.ndarray) -> tuple[list[float], list[float]]:
        """Per-channel mean and std over ``indices`` (vectorised, in chunks)."""
        s = np.zeros(self.images.shape[1])
        s2 = np.zeros(self.images.shape[1])
        n = 0
        for start in range(0, len(indices), 4096):
            chunk = np.asarray(
                self.images[np.sort(indices[start : start + 4096])], dtype=np.float64
            )
            chunk *= self.scale
            s += chunk.sum((0, 2, 3))
            s2 += (chunk**2).sum((0, 2, 3))
            n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
        return mean.tolist(), std.tolist()


IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".webp",
)


def _image_error(path: str | Path, e: Exception) -> DataError:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return DataError(f"cannot read image {str(path)!r}: {reason}")


# What PIL's decoders raise on a corrupt or truncated file, besides OSError (which covers
# UnidentifiedImageError): broken PNG chunks, bad JPEG markers, short struct reads, bad zlib
# streams, decompression bombs.
_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


def probe_image(path: str | Path) -> tuple[int, tuple[int, int]]:
    """Channels (1 for grey modes, else 3) and ``(H, W)`` of an image file, from its header."""
    try:
        with Image.open(path) as im:
            return (1 if im.mode in ("L", "1", "I;16", "I") else 3), (im.height, im.width)
    except _PIL_ERRORS as e:
        raise _image_error(path, e) from e


def load_image(path: str | Path, channels: int, size: tuple[int, int] | None = None) -> Tensor:
    """Read one image file as float ``(channels, H, W)`` in [0, 1], resized to ``size`` if given."""
    try:
        with Image.open(path) as im:
            if im.mode in _WIDE_GREY:
                return _load_wide_grey(im, channels, size)
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except _PIL_ERRORS as e:
        raise _image_error(path, e) from e
    x = torch.from_numpy(arr.copy())
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    return x.float().div_(255)


# 16-bit grey modes: 16-bit PNG, and PGM with maxval > 255 (Pillow scales its samples to
# 0..65535). PIL's convert("L") clips them at 255 instead of scaling.
_WIDE_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _load_wide_grey(im: Image.Image, channels: int, size: tuple[int, int] | None) -> Tensor:
    """A 16-bit grey image as float ``(channels, H, W)`` in [0, 1] (full 16-bit scale)."""
    arr = np.asarray(im, dtype=np.float32)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):  # a 32-bit integer image (TIFF)
        raise ValueError("32-bit integer pixels; expected 8- or 16-bit")
    f = Image.fromarray(arr / np.float32(65535.0))  # mode "F"
    if size is not None and (f.height, f.width) != tuple(size):
        f = f.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(f, dtype=np.float32).clip(0, 1).copy())[None]
    return x.expand(channels, -1, -1).contiguous()


class ImageFileDataset(Dataset):
    """Images read from files on each access (streams from disk; nothing is held in memory).

    Args:
        paths: image files.
        targets: class index per file (or -1 where unknown, for prediction).
        channels: 1 (grey) or 3 (RGB); files are converted.
        size: ``(H, W)`` to resize to; ``None`` keeps each file's size (then all must agree to batch).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        targets: Sequence[int],
        channels: int,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = int(self.targets[i])
        return image_sample(
            load_image(self.paths[i], self.channels, self.size), label if label >= 0 else None
        )
