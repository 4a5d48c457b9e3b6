"""Class-per-folder image trees: ``root/<class>/*.png|jpg`` or ``root/{train,val,test}/<class>/*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import (
    IMAGE_EXTENSIONS,
    ArrayImageDataset,
    ImageFileDataset,
    probe_image,
)
from visrep.data.samples import IMAGE, collate
from visrep.errors import DataError


def scan_class_folders(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Image files below ``root/<class>/`` (sorted), their class indices, and the class names."""
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths: list[str] = []
    targets: list[int] = []
    for i, c in enumerate(classes):
        files = sorted(
            str(f)
            for f in (root / c).rglob("*")
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
        )
        paths += files
        targets += [i] * len(files)
    if not paths:
        raise DataError(
            f"image folder {str(root)!r} has no images in class sub-folders; expected "
            f"{root}/<class>/*.png|jpg"
        )
    return paths, targets, classes


def _decode_all(ds: ImageFileDataset, workers: int) -> np.ndarray:
    """Decode every image once into one uint8 ``(N, C, H, W)`` array (parallel over workers)."""
    loader = DataLoader(ds, batch_size=512, num_workers=workers, collate_fn=collate)
    out = [(b[IMAGE] * 255).round_().to(torch.uint8).numpy() for b in loader]
    return np.concatenate(out)


class ImageFolderDataModule(ImageDataModule):
    """Images sorted into one folder per class.

    If ``root`` has ``train/`` (and optionally ``val/``, ``test/``) sub-folders they are the
    splits; otherwise ``root`` holds the class folders and val/test are held out with ``split.seed``.

    Args:
        root: the tree's top folder.
        channels: 1 (grey) or 3 (RGB); default: 1 if the first image is grey, else 3.
        image_size: resize every image to this (int or (H, W)); default: the first image's size.
        cache: decode all images once into memory (fast for small images such as CIFAR's);
            otherwise they stream from disk every epoch.
        loader, split, augment: batches, splits and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).
    """

    def __init__(
        self,
        root: str,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        super().__init__(loader, split, augment)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        if channels not in (None, 1, 3):
            raise DataError(f"data.channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.size = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.cache = cache

    def _dataset(
        self, paths: list[str], targets: list[int]
    ) -> ImageFileDataset | ArrayImageDataset:
        ds = ImageFileDataset(paths, targets, self.channels or 3, self.size)
        if self.cache:
            return ArrayImageDataset(_decode_all(ds, self.loader.num_workers), np.asarray(targets))
        return ds

    def load(self) -> Splits:
        has_splits = (self.root / "train").is_dir()
        train_root = self.root / "train" if has_splits else self.root
        paths, targets, classes = scan_class_folders(train_root)
        if self.channels is None or self.size is None:
            channels, size = probe_image(paths[0])
            self.channels = self.channels or channels
            self.size = self.size or size
        splits = Splits(self._dataset(paths, targets), np.asarray(targets), classes)
        for name in ("val", "test"):
            if has_splits and (self.root / name).is_dir():
                p, t, c = scan_class_folders(self.root / name)
                unknown = sorted(set(c) - set(classes))
                if unknown:
                    raise DataError(
                        f"{self.root / name}: classes {unknown} are not in the train split"
                    )
                remap = [classes.index(x) for x in c]
                setattr(splits, name, self._dataset(p, [remap[i] for i in t]))
        return splits
