"""PASCAL VOC segmentation: ``root/JPEGImages/X.jpg``, palette label maps
``root/SegmentationClass/X.png`` (PIL "P" mode; the palette indices are the class ids, 255 is
the object border / "difficult" region and is ignored) and the split lists
``root/ImageSets/Segmentation/{train,val,test}.txt``.

VOC's images vary in size (at most 500x500): training crops make batches stack; evaluate with
``--data.loader.eval_batch_size 1``.
"""

from __future__ import annotations

from pathlib import Path

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.segmentation.base import (
    SegAugment,
    SegmentationDataModule,
    SegmentationDataset,
    resolve_classes,
)
from visrep.data.segmentation.classes import VOC_CLASSES
from visrep.errors import DataError


class VOCSegmentationDataModule(SegmentationDataModule):
    """PASCAL VOC 2012 semantic segmentation (21 classes with background, 255 = ignore).

    ``train.txt`` is the training split, ``val.txt`` validation when present (else held out
    with ``split.val_fraction``); ``test.txt`` is used only when its label maps exist,
    otherwise ``split.test_fraction`` of the training list is held out.

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages/`` ...).
        crop_size: training crop ``(H, W)`` or int; needed to batch VOC's varying sizes.
        augment, cache, loader, split: as in
            :class:`~visrep.data.segmentation.base.SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str,
        crop_size: int | tuple[int, int] | None = 320,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        classes = resolve_classes(None, None, None, VOC_CLASSES)
        super().__init__(classes, 255, crop_size, augment, cache, loader, split)
        self.root = Path(root)
        for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            if not (self.root / d).is_dir():
                raise DataError(f"VOC folder {str(self.root / d)!r} does not exist")

    def _list(self, name: str) -> tuple[list[str], list[str]] | None:
        listing = self.root / "ImageSets" / "Segmentation" / f"{name}.txt"
        if not listing.is_file():
            return None
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"VOC split list {str(listing)!r} is empty")
        images = [self.root / "JPEGImages" / f"{i}.jpg" for i in ids]
        labels = [self.root / "SegmentationClass" / f"{i}.png" for i in ids]
        for i, im, lab in zip(ids, images, labels, strict=True):
            if not im.is_file():
                raise DataError(f"VOC image {str(im)!r} of {i!r} (in {listing.name}) is missing")
            if not lab.is_file():
                if name == "test":
                    return None
                raise DataError(
                    f"VOC label map {str(lab)!r} of {i!r} (in {listing.name}) is missing"
                )
        return [str(p) for p in images], [str(p) for p in labels]

    def load(self) -> Splits:
        train = self._list("train")
        if train is None:
            raise DataError(f"{str(self.root)!r} has no ImageSets/Segmentation/train.txt")
        ds: dict[str, SegmentationDataset] = {}
        for name, pairs in (
            ("train", train),
            ("val", self._list("val")),
            ("test", self._list("test")),
        ):
            if pairs is not None:
                ds[name] = self.pairs(*pairs, channels=3)
        return Splits(ds["train"], None, list(self.classes.names), ds.get("test"), ds.get("val"))
