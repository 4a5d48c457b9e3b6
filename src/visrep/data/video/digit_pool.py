"""Digit images for generated data (moving digits, gestures, digit strings): scikit-learn's
8x8 digits (embedded), MNIST-family IDX sets and ``.npz`` archives, resized to one box size and
split into training and held-out test digits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.data.classification.idx import find_idx, read_idx
from visrep.errors import ConfigError, DataError

__all__ = ["DigitPool", "load_digit_pool"]

_POOL_SPLIT_SEED = 0  # the fixed partition of single-set sources into train / test digits
_POOL_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DigitPool:
    """The digit images a split draws from.

    Attributes:
        images: ``(N, S, S)`` float32 in [0, 1], already at the drawn size ``S``.
        labels: ``(N,)`` int64 digit classes (-1 where the source has none).
        source: where they came from (for messages and ``meta``).
    """

    images: Tensor
    labels: Tensor
    source: str

    def __len__(self) -> int:
        return len(self.images)


def _resize(images: np.ndarray, size: int, source: str) -> Tensor:
    if images.ndim != 3 or 0 in images.shape:
        raise DataError(f"digit source {source!r}: expected (N, H, W) images, got {images.shape}")
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    if np.issubdtype(images.dtype, np.integer):
        x = x / 255.0
    x = x[:, None]
    down = size < max(x.shape[-2:])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=down)
    return x[:, 0].clamp(0, 1).contiguous()


def _partition(n: int, split: str) -> np.ndarray:
    """A fixed 80 / 20 train / test partition of a source with one set of images."""
    order = np.random.default_rng(_POOL_SPLIT_SEED).permutation(n)
    n_test = max(1, round(_POOL_TEST_FRACTION * n))
    return np.sort(order[n_test:] if split == "train" else order[:n_test])


def _npz_images(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, EOFError, ValueError (object arrays) ...
        raise DataError(f"digit source {str(path)!r}: cannot read ({type(e).__name__})") from None
    images = [v for v in arrays.values() if v.ndim == 3]
    if not images:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise DataError(f"digit source {str(path)!r}: no (N, H, W) image array in {shapes}")
    labels = [v for v in arrays.values() if v.ndim == 1 and len(v) == len(images[0])]
    return images[0], (labels[0] if labels else None)


def _labels_file(path: str, count: int) -> np.ndarray:
    """The ``(N,)`` labels of a separate file (an ``.npz`` with one 1-D array, e.g. KMNIST's
    ``kmnist-test-labels.npz``, or an IDX labels file), checked against the image count."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data.labels_path {path!r} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = [z[k] for k in z.files]
        except Exception as e:  # BadZipFile, EOFError, ValueError (object arrays) ...
            raise DataError(
                f"data.labels_path {path!r}: cannot read ({type(e).__name__})"
            ) from None
        found = [a for a in arrays if a.ndim == 1]
        if not found:
            raise DataError(f"data.labels_path {path!r}: no 1-D label array")
        labels = found[0]
    else:
        labels = read_idx(p)
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(
            f"data.labels_path {path!r}: {len(labels)} labels of shape {labels.shape} for "
            f"{count} images; expected one label per image"
        )
    return np.asarray(labels)


def load_digit_pool(
    source: str = "sklearn",
    split: str = "train",
    digit_size: int = 14,
    labels_path: str | None = None,
) -> DigitPool:
    """The digit images of one split, resized to ``digit_size`` pixels (a square box).

    Args:
        source: ``"sklearn"`` (scikit-learn's 1,797 8x8 digits, embedded; padded by one pixel so
            the ink fills ~80% of the box, as MNIST's 20 of 28 pixels); a folder of MNIST-family
            IDX files (``train-images-idx3-ubyte[.gz]`` and ``t10k-...``: their own split); a
            single IDX images file; or an ``.npz`` archive holding an ``(N, H, W)`` array (e.g.
            KMNIST's ``kmnist-test-imgs.npz``). Sources with one set are split 80 / 20 into
            train / test digits by a fixed permutation.
        split: ``"train"`` or ``"test"`` (validation clips draw from the training digits).
        digit_size: the box each digit is drawn in, pixels.
        labels_path: the labels of a single-file source, in their own file (an ``.npz`` such
            as KMNIST's ``kmnist-test-labels.npz``, or an IDX labels file), one per image.

    Returns:
        The :class:`DigitPool`.

    Raises:
        DataError: a missing or unreadable source.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"digit pool split must be 'train' or 'test', got {split!r}")
    if digit_size < 2:
        raise ConfigError(f"data.digit_size must be >= 2, got {digit_size}")
    labels: np.ndarray | None
    if labels_path is not None and (source == "sklearn" or Path(source).is_dir()):
        raise ConfigError(
            f"data.labels_path is for a single-file source (.npz or IDX images file); "
            f"{source!r} has its own labels"
        )
    if source == "sklearn":
        from sklearn.datasets import load_digits

        d = load_digits()
        keep = _partition(len(d.images), split)
        images = np.pad(d.images[keep] / 16.0, ((0, 0), (1, 1), (1, 1)))
        labels = d.target[keep]
    else:
        path = Path(source)
        if path.is_dir():
            images = read_idx(find_idx(path, split, "images"))
            try:
                labels = read_idx(find_idx(path, split, "labels"))
            except DataError:
                labels = None
        elif path.is_file():
            if path.suffix == ".npz":
                images, labels = _npz_images(path)
            else:
                images, labels = read_idx(path), None
            if labels_path is not None:
                labels = _labels_file(labels_path, len(images))
            keep = _partition(len(images), split)
            images, labels = images[keep], (None if labels is None else labels[keep])
        else:
            raise DataError(
                f"data.source {source!r}: not 'sklearn', an IDX folder, an IDX file or an .npz file"
            )
    x = _resize(np.asarray(images), digit_size, source)
    if len(x) == 0:
        raise DataError(f"digit source {source!r}: no {split} images")
    y = torch.full((len(x),), -1, dtype=torch.int64)
    if labels is not None and len(labels) == len(x):
        y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return DigitPool(x, y, source)
