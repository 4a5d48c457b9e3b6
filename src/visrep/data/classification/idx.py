"""IDX files: the MNIST layout (``train-images-idx3-ubyte[.gz]`` ...), used by the whole MNIST family."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import ArrayImageDataset, class_names, image_split
from visrep.errors import DataError

# Third byte of the magic number -> big-endian element type (LeCun's IDX specification).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_NDIM = 16  # the header allows 255; numpy arrays have at most 64 and real files 1 to 4


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array.

    Uncompressed files are memory-mapped, so a data set larger than memory is read lazily.
    Raises :class:`DataError` on a bad magic number or a payload shorter or longer than the
    header's dimensions say.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"IDX file {str(p)!r} does not exist")
    gz = p.suffix == ".gz"
    try:
        if gz:
            with gzip.open(p, "rb") as f:
                raw = f.read()
            head = raw[:4]
        else:
            with open(p, "rb") as f:
                head = f.read(4)
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupt deflate stream
        raise DataError(f"IDX file {str(p)!r}: cannot decompress/read ({e})") from e
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or head[3] == 0:
        raise DataError(
            f"IDX file {str(p)!r}: bad magic number {head.hex() or '(empty)'}; expected 0x0000TTNN "
            "(TT a type code in 08,09,0B,0C,0D,0E and NN the number of dimensions)"
        )
    ndim = head[3]
    if ndim > _MAX_NDIM:
        raise DataError(
            f"IDX file {str(p)!r}: header announces {ndim} dimensions; expected at most {_MAX_NDIM}"
        )
    dtype = np.dtype(_IDX_TYPES[head[2]])
    header = 4 + 4 * ndim
    if gz:
        dims_raw = raw[4:header]
        size = len(raw)
    else:
        with open(p, "rb") as f:
            f.seek(4)
            dims_raw = f.read(4 * ndim)
        size = p.stat().st_size
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"IDX file {str(p)!r}: truncated header ({ndim} dimensions announced)")
    dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no int64 overflow
    if size - header != expected:
        raise DataError(
            f"IDX file {str(p)!r}: payload is {size - header} bytes, expected {expected} for "
            f"shape {dims} of {dtype.name}{' (truncated)' if size - header < expected else ''}"
        )
    if gz:
        return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    if expected == 0:  # nothing to map (mmap refuses empty ranges)
        return np.zeros(dims, dtype=dtype)
    return np.memmap(p, dtype=dtype, mode="r", offset=header, shape=dims)


def find_idx(root: Path, split: str, kind: str) -> Path:
    """Locate ``<split>-<kind>-idx?-ubyte[.gz]`` under ``root`` (``t10k`` or ``test`` for the test split)."""
    names = ("train",) if split == "train" else ("t10k", "test")
    ndim = "idx3" if kind == "images" else "idx1"
    hits = sorted(
        q
        for n in names
        for q in root.glob(f"*{n}-{kind}*{ndim}-ubyte*")
        if q.suffix in ("", ".gz") or q.name.endswith("ubyte")
    )
    if not hits:
        raise DataError(
            f"data.root {str(root)!r} has no {split} {kind} IDX file; expected e.g. "
            f"'{names[0]}-{kind}-{ndim}-ubyte' or the same with '.gz'"
        )
    return hits[0]


class IDXDataModule(ImageDataModule):
    """The four standard IDX files of an MNIST-family set (MNIST, Fashion-MNIST, KMNIST ...).

    Args:
        root: folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).
        class_names: names of the classes (default: their indices).
        loader, split, augment: batches, splits and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).
    """

    def __init__(
        self,
        root: str,
        class_names: list[str] | None = None,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        super().__init__(loader, split, augment)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        self.names = class_names

    def _pair(self, split: str) -> ArrayImageDataset:
        ip, lp = find_idx(self.root, split, "images"), find_idx(self.root, split, "labels")
        images, labels = read_idx(ip), read_idx(lp)
        if images.ndim not in (3, 4):
            raise DataError(f"{ip}: expected (N, H, W) or (N, C, H, W) images, got {images.shape}")
        nchw = images[:, None] if images.ndim == 3 else images
        if 0 in nchw.shape[2:]:
            raise DataError(f"{ip}: images have shape {images.shape}; expected H, W > 0")
        return image_split(nchw, labels, str(ip), str(lp))

    def load(self) -> Splits:
        train, test = self._pair("train"), self._pair("test")
        names = class_names([train, test], self.names, str(self.root))
        return Splits(train, train.targets, names, test=test)
