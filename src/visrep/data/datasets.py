"""Map-style image datasets returning ``(image, target)`` with images as float ``(C, H, W)`` in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from visrep.errors import DataError


def to_nchw(images: np.ndarray, source: str) -> np.ndarray:
    """View an image array as ``(N, C, H, W)``: accepts (N, H, W), (N, H, W, C) and (N, C, H, W)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        if images.shape[1] in (1, 3, 4):
            return images
        if images.shape[3] in (1, 3, 4):
            return images.transpose(0, 3, 1, 2)
    raise DataError(
        f"{source}: image array has shape {images.shape}; expected (N, H, W), (N, H, W, C) "
        "or (N, C, H, W) with C in {1, 3, 4}"
    )


class ArrayImageDataset(Dataset):
    """Images held in (or memory-mapped from) one array.

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

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = torch.from_numpy(np.array(self.images[i], dtype=np.float32, copy=True))
        return x.mul_(self.scale), int(self.targets[i])

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


def load_image(path: str | Path, channels: int, size: tuple[int, int] | None = None) -> Tensor:
    """Read one image file as float ``(channels, H, W)`` in [0, 1], resized to ``size`` if given."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {str(path)!r}: {e}") from e
    x = torch.from_numpy(arr.copy())
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    return x.float().div_(255)


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

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return load_image(self.paths[i], self.channels, self.size), int(self.targets[i])
