"""Binary mask sources: image / mask folders (the ISBI 2012 EM layout) and DAVIS annotations.

Masks are binarised as ``value > threshold`` -> 1, else 0.

* ISBI 2012 (``root/train/image/N.png`` with ``root/train/label/N.png``): the labels hold 0 on
  membranes and 255 inside cells (about 78 % of the pixels), so class 1 ("foreground") is the
  cell interior and class 0 the membrane; ``class_names: isbi`` names them so.
* DAVIS (``root/JPEGImages/480p/<seq>/NNNNN.jpg`` with ``root/Annotations/480p/<seq>/NNNNN.png``,
  0/255): 1 is the annotated object, 0 the background.
"""

from __future__ import annotations

from pathlib import Path

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import IMAGE_EXTENSIONS, probe_image
from visrep.data.segmentation.base import (
    ClassSet,
    Color,
    SegAugment,
    SegmentationDataModule,
    list_files,
    pair_by_stem,
    resolve_classes,
)
from visrep.data.segmentation.classes import BINARY_CLASSES, class_set
from visrep.errors import ConfigError, DataError


def _binary_classes(
    class_names: list[str] | str | None, class_colors: list[Color] | None
) -> ClassSet:
    shipped = class_set(class_names) if isinstance(class_names, str) else BINARY_CLASSES
    names = None if isinstance(class_names, str) else class_names
    classes = resolve_classes(names, None, class_colors, shipped)
    if len(classes.names) != 2:
        raise ConfigError(f"binary masks have 2 classes, data.class_names lists {classes.names}")
    return classes


def _check_threshold(threshold: int) -> int:
    if not 0 <= threshold < 255:
        raise ConfigError(f"data.threshold must be in [0, 255), got {threshold}")
    return int(threshold)


class MaskFolderDataModule(SegmentationDataModule):
    """Binary segmentation from image / mask folders (ISBI 2012 layout).

    ``root/train/{image,label}/`` (or ``root/{image,label}/``) are paired by file stem; a
    ``root/test/{image,label}/`` with labels is the test split, otherwise ``split.test_fraction``
    of the pairs is held out, and ``split.val_fraction`` for validation (seeded, plain).

    Args:
        root: the data set's folder.
        image_dir, label_dir: the names of the image and mask sub-folders.
        threshold: mask values above it are class 1.
        class_names: two names, or a shipped class set (``isbi``: membrane / cell; default
            ``binary``: background / foreground).
        class_colors: one ``(R, G, B)`` per class.
        ignore_index: never produced by binarising; kept for the loss and crop padding.
        crop_size, augment, cache, loader, split: as in
            :class:`~visrep.data.segmentation.base.SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str,
        image_dir: str = "image",
        label_dir: str = "label",
        threshold: int = 127,
        class_names: list[str] | str | None = None,
        class_colors: list[Color] | None = None,
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = None,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        classes = _binary_classes(class_names, class_colors)
        super().__init__(classes, ignore_index, crop_size, augment, cache, loader, split)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        self.image_dir, self.label_dir = image_dir, label_dir
        self.threshold = _check_threshold(threshold)

    def _pairs(self, top: Path) -> tuple[list[str], list[str]]:
        image_dir, label_dir = top / self.image_dir, top / self.label_dir
        return pair_by_stem(
            list_files(image_dir, IMAGE_EXTENSIONS),
            list_files(label_dir, IMAGE_EXTENSIONS),
            image_dir,
            label_dir,
        )

    def load(self) -> Splits:
        top = self.root / "train" if (self.root / "train").is_dir() else self.root
        images, labels = self._pairs(top)
        channels = probe_image(images[0])[0]
        splits = Splits(self.pairs(images, labels, channels, self.threshold), None,
                        list(self.classes.names))  # fmt: skip
        test = self.root / "test"
        if top != self.root and (test / self.label_dir).is_dir():
            splits.test = self.pairs(*self._pairs(test), channels, self.threshold)
        return splits


class DavisDataModule(SegmentationDataModule):
    """Foreground / background segmentation of DAVIS frames (each frame one sample).

    Args:
        root: the folder holding ``JPEGImages/`` and ``Annotations/``.
        resolution: the sub-folder of both (``480p``).
        sequences: the training sequences (default: all not named in ``val_sequences`` or
            ``test_sequences``).
        val_sequences, test_sequences: whole sequences held out; when empty, frames are held
            out at random with ``split.val_fraction`` / ``split.test_fraction`` (frames of one
            sequence then appear in several splits).
        threshold: annotation values above it are foreground (1).
        class_names, class_colors, ignore_index, crop_size, augment, cache, loader, split: as
            in :class:`MaskFolderDataModule`.
    """

    def __init__(
        self,
        root: str,
        resolution: str = "480p",
        sequences: list[str] | None = None,
        val_sequences: tuple[str, ...] = (),
        test_sequences: tuple[str, ...] = (),
        threshold: int = 127,
        class_names: list[str] | str | None = None,
        class_colors: list[Color] | None = None,
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = None,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        classes = _binary_classes(class_names, class_colors)
        super().__init__(classes, ignore_index, crop_size, augment, cache, loader, split)
        self.root = Path(root)
        self.frames = self.root / "JPEGImages" / resolution
        self.annotations = self.root / "Annotations" / resolution
        for d in (self.frames, self.annotations):
            if not d.is_dir():
                raise DataError(f"DAVIS folder {str(d)!r} does not exist (data.root {root!r})")
        self.sequences = list(sequences) if sequences is not None else None
        self.val_sequences, self.test_sequences = list(val_sequences), list(test_sequences)
        both = sorted(set(self.val_sequences) & set(self.test_sequences))
        if both:
            raise ConfigError(f"sequences {both} are in both data.val_sequences and test_sequences")
        self.threshold = _check_threshold(threshold)

    def _frames(self, seqs: list[str]) -> tuple[list[str], list[str]]:
        images: list[str] = []
        labels: list[str] = []
        for s in seqs:
            i, lab = pair_by_stem(
                list_files(self.frames / s, IMAGE_EXTENSIONS),
                list_files(self.annotations / s, (".png",)),
                self.frames / s,
                self.annotations / s,
            )
            images += i
            labels += lab
        return images, labels

    def load(self) -> Splits:
        every = sorted(d.name for d in self.frames.iterdir() if d.is_dir())
        if not every:
            raise DataError(f"DAVIS folder {str(self.frames)!r} holds no sequence folders")
        named = self.val_sequences + self.test_sequences + (self.sequences or [])
        unknown = sorted(set(named) - set(every))
        if unknown:
            raise DataError(f"DAVIS sequences {unknown} are not in {str(self.frames)!r}")
        held = set(self.val_sequences) | set(self.test_sequences)
        train = (
            self.sequences if self.sequences is not None else [s for s in every if s not in held]
        )
        if set(train) & held:
            raise ConfigError(f"sequences {sorted(set(train) & held)} are in train and held out")
        if not train:
            raise ConfigError("no DAVIS sequences left for training")
        images, labels = self._frames(train)
        channels = probe_image(images[0])[0]
        splits = Splits(self.pairs(images, labels, channels, self.threshold), None,
                        list(self.classes.names))  # fmt: skip
        if self.val_sequences:
            splits.val = self.pairs(*self._frames(self.val_sequences), channels, self.threshold)
        if self.test_sequences:
            splits.test = self.pairs(*self._frames(self.test_sequences), channels, self.threshold)
        return splits
