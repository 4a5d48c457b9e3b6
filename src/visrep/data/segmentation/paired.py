"""Paired image / label-map folders: the CamVid (SegNet) layout.

``root/train/X.png`` with ``root/trainannot/X.png``, likewise ``val/`` + ``valannot/`` and
``test/`` + ``testannot/`` (both optional), paired by file stem. Label maps are one-channel PNGs
whose pixel values are class ids (CamVid: 0..10, 11 = void).
"""

from __future__ import annotations

from pathlib import Path

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import IMAGE_EXTENSIONS, probe_image
from visrep.data.segmentation.base import (
    Color,
    SegAugment,
    SegmentationDataModule,
    SegmentationDataset,
    list_files,
    pair_by_stem,
    resolve_classes,
)
from visrep.data.segmentation.classes import class_set
from visrep.errors import DataError

LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".pgm")


class PairedFolderDataModule(SegmentationDataModule):
    """Semantic segmentation from paired image / label-map folders (CamVid layout).

    Splits: ``train/`` (+ ``trainannot/``) always; ``val/`` and ``test/`` when present,
    otherwise held out of ``train`` with ``split.val_fraction`` / ``split.test_fraction``
    (seeded, unstratified).

    Args:
        root: the folder holding ``train/``, ``trainannot/`` ...
        class_names: one name per class, or the name of a shipped class set (``camvid``, which
            brings SegNet's colours; see :mod:`visrep.data.segmentation.classes`); default
            ``class_0..`` for ``num_classes`` classes.
        num_classes: the number of classes (default: from ``class_names``).
        class_colors: one ``(R, G, B)`` per class (default: the class set's, else VOC's map).
        ignore_index: the label value of pixels that count nowhere (CamVid: 11).
        crop_size: training crop ``(H, W)`` or int (None: whole images).
        augment: per-sample training augmentation (:class:`SegAugment`).
        cache: decode every pair once into memory (uint8).
        loader, split: batches and splits.

    A CamVid config::

        data:
          class_path: visrep.data.segmentation.PairedFolderDataModule
          init_args: {root: data/camvid, class_names: camvid, ignore_index: 11, crop_size: 160}
    """

    def __init__(
        self,
        root: str,
        class_names: list[str] | str | None = None,
        num_classes: int | None = None,
        class_colors: list[Color] | None = None,
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = None,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        shipped = class_set(class_names) if isinstance(class_names, str) else None
        classes = resolve_classes(
            None if shipped else class_names, num_classes, class_colors, shipped
        )
        super().__init__(classes, ignore_index, crop_size, augment, cache, loader, split)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        self.channels = 3

    def _split(self, name: str) -> SegmentationDataset:
        image_dir, label_dir = self.root / name, self.root / f"{name}annot"
        if not label_dir.is_dir():
            raise DataError(f"{str(image_dir)!r} has no label folder {str(label_dir)!r}")
        images, labels = pair_by_stem(
            list_files(image_dir, IMAGE_EXTENSIONS),
            list_files(label_dir, LABEL_EXTENSIONS),
            image_dir,
            label_dir,
        )
        return self.pairs(images, labels, self.channels)

    def load(self) -> Splits:
        if not (self.root / "train").is_dir():
            raise DataError(f"{str(self.root)!r} has no train/ folder (CamVid layout expected)")
        first = list_files(self.root / "train", IMAGE_EXTENSIONS)
        self.channels = probe_image(next(iter(first.values())))[0]
        splits = Splits(self._split("train"), None, list(self.classes.names))
        for name in ("val", "test"):
            if (self.root / name).is_dir():
                setattr(splits, name, self._split(name))
        return splits
