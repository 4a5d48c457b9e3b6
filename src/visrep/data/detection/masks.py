"""Objects (boxes + instance masks) from mask images: DAVIS annotations, class-index PNGs,
instance-id PNGs. The data of a Mask R-CNN (He et al. 2017) trained without polygon files.

Images and masks are paired by file stem, either in one folder each (``root/<images>/*.jpg``
with ``root/<masks>/*.png``) or per sequence (``root/<images>/<seq>/*.jpg`` with
``root/<masks>/<seq>/*.png``, the DAVIS layout: ``JPEGImages/480p/<seq>/NNNNN.jpg`` with
``Annotations/480p/<seq>/NNNNN.png``, the defaults). A mask must have its image's size.

What a mask holds (``mode``):

Mask images hold values, not colours: grey levels or palette indices (as
:func:`~visrep.data.segmentation.base.read_label` reads them).

* ``binary`` (DAVIS 2016): ``value > threshold`` is the object, one instance per image; its
  class is ``class_names[0]`` (default ``object``) or, with ``sequence_classes``, its sequence's.
* ``semantic`` (labelme's ``SegmentationClassPNG``, VOC's ``SegmentationClass``): values are
  indices into ``class_names`` (default: ``root/class_names.txt``, as labelme2voc writes it);
  0 is the background whatever ``class_names[0]`` says, and background-named classes are no
  objects either; each class present is one instance.
* ``instance`` (DAVIS 2017, VOC's ``SegmentationObject``): each value ``1, 2, ...`` is one
  instance, 0 background; classes as in ``binary``.

``ignore_value`` (default 255, VOC's border) is never an object. With ``components: true``
every 8-connected component of an instance is an instance of its own (DAVIS objects that an
occluder cuts in two become two); ``min_area`` drops instances of fewer pixels. A box is the
extent of its mask's pixels: the pixel with 0-based index ``i`` covers ``[i, i + 1)``, so a mask
covering columns ``x0..x1`` has ``x1' = x1 + 1``. Masks are read once when the module is built
(to find the boxes) and kept as COCO run lengths; images without an object are allowed.

Splits in the sequence layout are by sequence, so no frame of a sequence is in two splits
(neighbouring frames are near copies: a frame split would test on the training data):
``val_sequences`` / ``test_sequences`` name them, otherwise ``ceil(split.test_fraction * S)``
test and ``ceil(split.val_fraction * (S - tests))`` validation sequences of the ``S`` are drawn
with ``split.seed``. The flat layout splits frames at random (``split``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import IMAGE_EXTENSIONS, probe_image
from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataModule,
    DetectionDataset,
)
from visrep.data.detection.proposals import ProposalConfig
from visrep.data.segmentation.base import list_files, pair_by_stem, read_label
from visrep.data.segmentation.coco import BACKGROUND_NAMES
from visrep.data.segmentation.polygons import Region, rle_encode
from visrep.errors import ConfigError, DataError

MaskMode = Literal["binary", "semantic", "instance"]
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def mask_instances(
    values: np.ndarray,
    mode: MaskMode,
    threshold: int = 127,
    ignore_value: int | None = 255,
    components: bool = False,
    min_area: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Instances of a mask image: an int32 ``(H, W)`` map (0: none, ``k``: instance ``k``) and
    the mask value of each instance ``(K,)`` (1 in ``binary`` mode), in value order (then
    component order: row-major first pixel).

    >>> m = np.array([[0, 2, 0, 2], [0, 2, 0, 2]])
    >>> inst, value = mask_instances(m, "semantic", components=True)
    >>> inst.tolist(), value.tolist()
    ([[0, 1, 0, 2], [0, 1, 0, 2]], [2, 2])
    """
    v = np.asarray(values)
    if mode == "binary":
        v = (v > threshold).view(np.uint8)
    elif v.dtype.kind == "i" and v.size and v.min() < 0:
        v = np.maximum(v, 0)  # negative values (32-bit masks) are no object
    if v.dtype in (np.uint8, np.uint16, np.bool_):  # small values: one bincount, no sort
        present = np.flatnonzero(np.bincount(v.ravel()))
    else:
        present = np.unique(v)
    drop = [0] if mode == "binary" or ignore_value is None else [0, ignore_value]
    present = present[~np.isin(present, drop)]
    owner: list[int] = []
    if not components:  # value -> instance id in one lookup
        lut = np.zeros(int(v.max(initial=0)) + 1, dtype=np.int32)
        lut[present] = np.arange(1, len(present) + 1)
        inst = lut[v]
        owner = present.tolist()
    else:
        inst = np.zeros(v.shape, dtype=np.int32)
        for value in present.tolist():  # one pass per instance value, never per pixel
            region = v == value
            lab, n = ndimage.label(region, structure=_EIGHT)
            inst[region] = lab[region] + len(owner)
            owner += [value] * n
    value_of = np.asarray(owner, dtype=np.int64)
    if min_area > 1 and len(owner):
        area = np.bincount(inst.ravel(), minlength=len(owner) + 1)[1:]
        keep = area >= min_area
        renumber = np.concatenate([[0], np.cumsum(keep) * keep]).astype(np.int32)
        inst, value_of = renumber[inst], value_of[keep]
    return inst, value_of


def instance_boxes(inst: np.ndarray, count: int) -> np.ndarray:
    """float32 ``(K, 4)`` XYXY extents of the instances ``1..count`` of an instance map.

    >>> inst = np.zeros((4, 5), np.int32); inst[1:3, 2:5] = 1
    >>> instance_boxes(inst, 1).tolist()
    [[2.0, 1.0, 5.0, 3.0]]
    """
    slices = ndimage.find_objects(inst, max_label=count)
    boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class MaskDetectionDataModule(DetectionDataModule):
    """Boxes and instance masks from (image, mask image) pairs (module docstring).

    Args:
        root: the data set's folder.
        images, masks: the image and mask folders, relative to ``root`` (DAVIS:
            ``JPEGImages/480p`` and ``Annotations/480p``).
        mode: ``binary``, ``semantic`` or ``instance`` (module docstring).
        threshold: ``binary`` mode: mask values above it are the object.
        class_names: ``semantic``: one name per mask value (a list, or a file of names one a
            line, relative to ``root``; default ``class_names.txt``). ``binary`` /
            ``instance``: the one class name (default ``object``), or, with
            ``sequence_classes``, the class order (default: sorted).
        sequence_classes: ``binary`` / ``instance``: the class of each sequence's objects, e.g.
            ``{blackswan: bird, dog: dog}``; every sequence must be named.
        ignore_value: the mask value that is never an object (None: none).
        components: split every instance into its 8-connected components.
        min_area: drop instances of fewer pixels.
        sequences: the training sequences (default: all not held out).
        val_sequences, test_sequences: whole sequences held out (default: drawn, see the module
            docstring).
        augment, loader, split: as in
            :class:`~visrep.data.detection.base.DetectionDataModule`.
    """

    def __init__(
        self,
        root: str,
        images: str = "JPEGImages/480p",
        masks: str = "Annotations/480p",
        mode: MaskMode = "binary",
        threshold: int = 127,
        class_names: list[str] | str | None = None,
        sequence_classes: dict[str, str] | None = None,
        ignore_value: int | None = 255,
        components: bool = False,
        min_area: int = 1,
        sequences: list[str] | None = None,
        val_sequences: tuple[str, ...] = (),
        test_sequences: tuple[str, ...] = (),
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(augment, loader, split, proposals)
        self.root = Path(root)
        self.image_dir, self.mask_dir = self.root / images, self.root / masks
        for d in (self.image_dir, self.mask_dir):
            if not d.is_dir():
                raise DataError(f"folder {str(d)!r} does not exist (data.root {root!r})")
        if mode not in ("binary", "semantic", "instance"):
            raise ConfigError(f"data.mode must be binary, semantic or instance, got {mode!r}")
        if not 0 <= threshold < 255:
            raise ConfigError(f"data.threshold must be in [0, 255), got {threshold}")
        if min_area < 1:
            raise ConfigError(f"data.min_area must be >= 1, got {min_area}")
        self.mode, self.threshold, self.ignore_value = mode, int(threshold), ignore_value
        self.components, self.min_area = components, int(min_area)
        self.sequences = list(sequences) if sequences is not None else None
        self.val_sequences, self.test_sequences = list(val_sequences), list(test_sequences)
        both = sorted(set(self.val_sequences) & set(self.test_sequences))
        if both:
            raise ConfigError(f"sequences {both} are in both data.val_sequences and test_sequences")
        self.all_sequences = sorted(d.name for d in self.image_dir.iterdir() if d.is_dir())
        self.sequence_classes = dict(sequence_classes) if sequence_classes is not None else None
        self.classes, self.value_class = self._classes(class_names)
        self.split_sequences: dict[str, list[str]] = {}  # filled by load() (sequence layout)

    # -- classes ---------------------------------------------------------------------------------
    def _classes(self, class_names: list[str] | str | None) -> tuple[list[str], dict]:
        """The object classes and ``mask value -> class id`` (semantic), ``sequence -> class
        id`` (with ``sequence_classes``) or ``{None: 0}``."""
        if self.mode == "semantic":
            if self.sequence_classes is not None:
                raise ConfigError("data.sequence_classes is for binary / instance masks")
            names = self._name_list(class_names if class_names is not None else "class_names.txt")
            self.num_values = len(names)
            objects = [
                (v, n) for v, n in enumerate(names) if v > 0 and n.lower() not in BACKGROUND_NAMES
            ]
            if not objects:
                raise ConfigError(f"data.class_names {names} names no object class")
            return [n for _, n in objects], {v: k for k, (v, _) in enumerate(objects)}
        if self.sequence_classes is None:
            names = self._name_list(class_names) if class_names is not None else ["object"]
            if len(names) != 1:
                raise ConfigError(
                    f"{self.mode} masks without data.sequence_classes have one class; "
                    f"data.class_names lists {names}"
                )
            return names, {None: 0}
        if not self.all_sequences:
            raise ConfigError(
                f"data.sequence_classes: {str(self.image_dir)!r} holds no sequence folders"
            )
        missing = sorted(set(self.all_sequences) - set(self.sequence_classes))
        if missing:
            raise ConfigError(f"data.sequence_classes names no class for the sequences {missing}")
        used = sorted(set(self.sequence_classes.values()))
        names = self._name_list(class_names) if class_names is not None else used
        unknown = sorted(set(used) - set(names))
        if unknown:
            raise ConfigError(f"data.sequence_classes uses {unknown}, not in data.class_names")
        return names, {s: names.index(c) for s, c in self.sequence_classes.items()}

    def _name_list(self, class_names: list[str] | str) -> list[str]:
        if isinstance(class_names, str):
            listing = (
                Path(class_names) if Path(class_names).is_absolute() else self.root / class_names
            )
            if not listing.is_file():
                raise ConfigError(f"data.class_names file {str(listing)!r} does not exist")
            class_names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
        if len(set(class_names)) != len(class_names) or not class_names:
            raise ConfigError(f"data.class_names must list distinct names, got {class_names}")
        return list(class_names)

    # -- reading ---------------------------------------------------------------------------------
    def annotation(self, image: str, mask: str, sequence: str | None) -> Annotation:
        """The objects of one (image, mask image) pair."""
        binary = self.mode == "binary"
        values = read_label(mask, self.threshold if binary else None)  # binary: 0 / 1
        size = probe_image(image)[1]
        if values.shape != size:
            raise DataError(
                f"mask {mask!r} is {values.shape[1]}x{values.shape[0]} (WxH) but its image "
                f"{image!r} is {size[1]}x{size[0]}; expected the same size"
            )
        inst, value_of = mask_instances(
            values, self.mode, 0, self.ignore_value, self.components, self.min_area
        )
        if self.mode == "semantic":
            extra = value_of[value_of >= self.num_values]
            if extra.size:
                raise DataError(
                    f"mask {mask!r} holds value {int(extra[0])}; expected indices into "
                    f"data.class_names (0..{self.num_values - 1}) or the ignore value "
                    f"{self.ignore_value}"
                )
            keep = np.isin(value_of, list(self.value_class))  # background values drop out
            labels = np.asarray([self.value_class.get(v, -1) for v in value_of.tolist()])
        else:
            keep = np.ones(len(value_of), dtype=bool)
            labels = np.full(
                len(value_of), self.value_class[sequence if self.sequence_classes else None]
            )
        regions = tuple(
            (Region(1, "rle", counts=rle_encode(inst == k + 1)),) for k in range(len(value_of))
        )
        a = Annotation(
            image,
            size,
            instance_boxes(inst, len(value_of)),
            labels.astype(np.int64),
            np.zeros(len(value_of), dtype=bool),
            mask,
            regions,
        )
        return a.select(keep)

    def _pairs(self, sequence: str | None) -> list[Annotation]:
        image_dir = self.image_dir / sequence if sequence else self.image_dir
        mask_dir = self.mask_dir / sequence if sequence else self.mask_dir
        images, masks = pair_by_stem(
            list_files(image_dir, IMAGE_EXTENSIONS),
            list_files(mask_dir, (".png", ".bmp", ".tif", ".tiff")),
            image_dir,
            mask_dir,
        )
        return [self.annotation(i, m, sequence) for i, m in zip(images, masks, strict=True)]

    def _held_out(self) -> tuple[list[str], list[str], list[str]]:
        """Train, val and test sequences (named, or drawn with ``split.seed``)."""
        every = self.all_sequences
        named = self.val_sequences + self.test_sequences + (self.sequences or [])
        unknown = sorted(set(named) - set(every))
        if unknown:
            raise DataError(f"sequences {unknown} are not in {str(self.image_dir)!r}")
        pool = [s for s in every if s not in named]
        pool = [pool[i] for i in np.random.default_rng(self.split.seed).permutation(len(pool))]
        test = self.test_sequences
        if not test:
            n = math.ceil(self.split.test_fraction * len(every))
            test, pool = pool[:n], pool[n:]
        val = self.val_sequences
        if not val:
            n = math.ceil(self.split.val_fraction * (len(every) - len(test)))
            val, pool = pool[:n], pool[n:]
        for name, seqs in (("test", test), ("val", val)):
            if not seqs and getattr(self.split, f"{name}_fraction") > 0:  # frames would leak
                raise ConfigError(
                    f"no sequence of {str(self.image_dir)!r} is left for {name}: name "
                    f"data.{name}_sequences or set data.split.{name}_fraction 0"
                )
        train = self.sequences if self.sequences is not None else sorted(pool)
        held = set(val) | set(test)
        if set(train) & held:
            raise ConfigError(f"sequences {sorted(set(train) & held)} are in train and held out")
        if not train:
            raise ConfigError(
                f"no sequence of the {len(every)} in {str(self.image_dir)!r} is left for "
                "training: hold out fewer (data.split fractions or data.*_sequences)"
            )
        return train, sorted(val), sorted(test)

    def load(self) -> Splits:
        if not self.all_sequences:  # flat layout: frames split at random by SplitDataModule
            if self.sequences or self.val_sequences or self.test_sequences:
                raise ConfigError(f"{str(self.image_dir)!r} holds no sequence folders to name")
            if self.sequence_classes is not None:
                raise ConfigError(
                    f"data.sequence_classes: {str(self.image_dir)!r} has no sequences"
                )
            return Splits(DetectionDataset(self._pairs(None)), None, list(self.classes))
        train, val, test = self._held_out()

        def split_of(seqs: list[str]) -> DetectionDataset | None:
            return DetectionDataset([a for s in seqs for a in self._pairs(s)]) if seqs else None

        self.split_sequences = {"train": train, "val": val, "test": test}
        return Splits(split_of(train), None, list(self.classes), split_of(test), split_of(val))
