"""What every object-detection source shares: the (image, boxes, labels[, masks]) dataset,
per-sample joint augmentation, the batch collate and the data module base.

A sample is ``{"image": Image float (C, H, W) in [0, 1], "boxes": BoundingBoxes float (N, 4)
XYXY pixels with canvas_size (H, W), "labels": int64 (N,), "difficult": bool (N,)}``; ``N`` may
be 0 (an image without objects has ``(0, 4)`` boxes). Pixel coordinates are continuous: the
pixel with 0-based index ``i`` covers ``[i, i + 1)``, so a box covering pixels ``x0..x1``
(inclusive, 0-based) is ``(x0, ., x1 + 1, .)`` and the full image is ``(0, 0, W, H)``.

``difficult`` marks objects that evaluation neither rewards nor penalises: VOC's difficult
objects and COCO's crowd regions (``iscrowd: 1``) alike, which the detection metric hands to
COCO's evaluation as crowds.

Sources with instance masks (Mask R-CNN's targets, He et al. 2017, eq. 17) add ``"masks":
Mask uint8 (N, H, W)``, 1 inside object ``n``. An :class:`Annotation` stores them compactly, as
the regions of each object (polygons, rectangles, circles or COCO run lengths, see
:mod:`visrep.data.segmentation.polygons`), and the dataset draws them when a sample is read, so
memory holds no dense masks. As ``tv_tensors`` the masks move with the image and the boxes under
``transforms.v2`` (nearest-neighbour resizing).

A batch stacks images when their sizes agree (otherwise a list) and keeps boxes, labels,
difficult flags and masks as lists, one entry per image (:func:`detection_collate`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule
from visrep.data.detection.proposals import ProposalConfig, with_proposals
from visrep.data.samples import BOXES, DIFFICULT, IMAGE, LABELS, MASKS, PROPOSALS, collate
from visrep.data.segmentation.base import SegAugment, read_rgb_or_grey, train_transform
from visrep.data.segmentation.polygons import Region, draw_label_map, rle_decode
from visrep.errors import DataError

#: How far (pixels) a box may pass its image before :func:`check_boxes` counts it as clipped: a
#: box written to the image border comes back a few float32 ulps past it from normalised
#: (YOLO) coordinates, which is round-off, not an annotation mistake.
CLIP_TOLERANCE = 1e-3

#: One object's mask: the union of its regions (COCO: the polygons of one annotation).
ObjectMask = tuple[Region, ...]


def detection_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch detection samples: images stacked when their sizes agree (else a list), boxes,
    labels, difficult flags and instance masks as lists with one entry per image.

    >>> from torchvision import tv_tensors
    >>> s = {"image": torch.zeros(3, 4, 4), "labels": torch.tensor([1]),
    ...      "boxes": tv_tensors.BoundingBoxes([[0, 0, 2, 2]], format="XYXY", canvas_size=(4, 4)),
    ...      "difficult": torch.tensor([False])}
    >>> b = detection_collate([s, s])
    >>> b["image"].shape, len(b["boxes"]), b["labels"][1].tolist()
    (torch.Size([2, 3, 4, 4]), 2, [1])
    """
    return collate(samples, {DIFFICULT: list})


@dataclass(frozen=True)
class DetAugment(SegAugment):
    """Per-sample training augmentation of an (image, boxes) sample (``--data.augment.hflip true``).

    Applied in order: random rescale (image and boxes by one factor), horizontal flip (a box
    ``(x1, y1, x2, y2)`` becomes ``(W - x2, y1, W - x1, y2)``), colour jitter (image only).
    Instance masks (``tv_tensors.Mask``) are rescaled (nearest) and flipped with the image. No
    step drops boxes, so ``labels``, ``difficult`` and ``masks`` stay aligned. torchvision's v2 transforms
    draw from torch's global generator (seeded by ``seed_everything``; per worker from the
    loader's seeded generator), so runs repeat.

    Attributes:
        scale: ``(low, high)`` range of the random rescale factor; ``(1, 1)`` is off.
        hflip: flip left-right with probability 1/2.
        brightness, contrast, saturation: colour-jitter strengths (0 is off), as
            ``torchvision.transforms.v2.ColorJitter`` takes them.
    """

    def transform(self) -> v2.Compose | None:
        """The v2 transform of a sample dict, or None when it does nothing."""
        return train_transform(self, None, 0)  # no crop: nothing is padded with a fill


@dataclass(frozen=True)
class Annotation:
    """The objects of one image as read from its annotation file.

    Attributes:
        image: the image file (or a callable opening it, e.g. an image embedded in a labelme
            file).
        size: ``(H, W)`` the annotation gives for the image.
        boxes: float32 ``(N, 4)`` XYXY pixels (see the module docstring), inside the image.
        labels: int64 ``(N,)`` class ids.
        difficult: bool ``(N,)`` (VOC difficult, COCO crowd).
        source: the annotation file (named in errors).
        masks: None (boxes only), or one :data:`ObjectMask` per object, drawn on an
            ``(H, W)`` canvas when a sample is read.
    """

    image: str | Callable[[], Image.Image]
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    source: str
    masks: tuple[ObjectMask, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.labels) != n or len(self.difficult) != n:
            raise DataError(
                f"{self.source!r}: {n} boxes, {len(self.labels)} labels and "
                f"{len(self.difficult)} difficult flags; expected one of each per object"
            )
        if self.masks is not None and len(self.masks) != n:
            raise DataError(f"{self.source!r}: {len(self.masks)} masks for {n} objects")

    def select(self, keep: np.ndarray) -> Annotation:
        """The annotation of the objects where ``keep`` (bool ``(N,)``) is True."""
        keep = np.asarray(keep, dtype=bool)
        masks = None
        if self.masks is not None:
            masks = tuple(m for m, k in zip(self.masks, keep.tolist(), strict=True) if k)
        return replace(
            self,
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            difficult=self.difficult[keep],
            masks=masks,
        )


def draw_object_masks(size: tuple[int, int], masks: Sequence[ObjectMask]) -> np.ndarray:
    """The objects' masks as uint8 ``(N, H, W)``: 1 where a region of object ``n`` covers the
    pixel (regions drawn by :func:`~visrep.data.segmentation.polygons.draw_label_map`'s rule; a
    lone run-length region is decoded directly).

    >>> square = Region(1, "polygon", np.array([[1, 1], [2, 1], [2, 2], [1, 2]]))
    >>> draw_object_masks((4, 4), [(square,)])[0].tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    h, w = size
    out = np.zeros((len(masks), h, w), dtype=np.uint8)
    for k, regions in enumerate(masks):  # one object at a time: objects may overlap
        if len(regions) == 1 and regions[0].kind == "rle":
            out[k] = rle_decode(regions[0].counts, (h, w))
        elif regions:
            out[k] = draw_label_map(h, w, [replace(r, value=1) for r in regions]) != 0
    return out


def check_boxes(
    boxes: np.ndarray,
    size: tuple[int, int],
    source: str,
    objects: Sequence[str] | None = None,
) -> tuple[np.ndarray, int]:
    """Refuse empty or inverted boxes (``x2 <= x1`` or ``y2 <= y1``) and clip the rest to the
    image ``(0, 0, W, H)``; returns the clipped boxes and how many were clipped by more than
    :data:`CLIP_TOLERANCE`.

    Args:
        boxes: ``(N, 4)`` XYXY pixels.
        size: the image's ``(H, W)``.
        source: the annotation file, named in errors.
        objects: how errors name each object (default ``object <i>``), e.g. the annotation id.

    >>> boxes, n = check_boxes(np.array([[-2.0, 0, 5, 5], [1, 1, 2, 2]]), (4, 4), "a.xml")
    >>> boxes.tolist(), n
    ([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0]], 1)
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    def name(i: int) -> str:
        return objects[i] if objects is not None else f"object {i}"

    bad = ~np.isfinite(boxes).all(axis=1)
    bad |= (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source!r}: {name(i)} has box {boxes[i].tolist()} (x1, y1, x2, y2); expected "
            "finite values with x2 > x1 and y2 > y1"
        )
    h, w = size
    hi = np.array([w, h, w, h], dtype=np.float32)
    clipped = np.clip(boxes, 0, hi)
    moved = (np.abs(clipped - boxes) > CLIP_TOLERANCE).any(axis=1)
    gone = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if gone.any():
        i = int(np.flatnonzero(gone)[0])
        raise DataError(
            f"{source!r}: {name(i)} has box {boxes[i].tolist()} entirely outside the "
            f"{w}x{h} (WxH) image"
        )
    return clipped, int(moved.sum())


def warn_clipped(clipped: Sequence[tuple[str, int]], what: str) -> None:
    """One warning line counting the boxes clipped to their images (``(file, count)`` pairs)."""
    total = sum(c for _, c in clipped)
    if total:
        first = next(f for f, c in clipped if c)
        files = sum(1 for _, c in clipped if c)
        warnings.warn(
            f"{what}: {total} boxes in {files} files extend past their image and were clipped "
            f"(first: {first!r})",
            stacklevel=3,
        )


class DetectionDataset(Dataset):
    """Annotated images as ``{"image", "boxes", "labels", "difficult"}`` samples, with
    ``"masks"`` when the annotations carry instance masks (all of them, or none).

    Args:
        annotations: one per image (boxes already checked and clipped).
        channels: 1 (grey) or 3 (RGB); images are converted.
        transform: a v2 transform of the sample dict (None: the sample as stored).
    """

    def __init__(
        self,
        annotations: Sequence[Annotation],
        channels: int = 3,
        transform: v2.Transform | None = None,
    ) -> None:
        self.annotations = list(annotations)
        self.channels = channels
        self.transform = transform
        with_masks = [a.masks is not None for a in self.annotations]
        self.has_masks = bool(with_masks) and all(with_masks)
        if any(with_masks) and not self.has_masks:
            a = self.annotations[with_masks.index(not with_masks[0])]
            raise DataError(
                f"{a.source!r}: some annotations carry instance masks and others do not "
                "(expected all or none)"
            )

    def __len__(self) -> int:
        return len(self.annotations)

    def raw(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 ``(H, W, C)``, checked against the size its annotation gives."""
        a = self.annotations[i]
        image = read_rgb_or_grey(a.image, self.channels)
        if image.shape[:2] != a.size:
            raise DataError(
                f"image {a.image!r} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"{a.source!r} gives {a.size[1]}x{a.size[0]}"
            )
        return image

    def with_transform(self, transform: v2.Transform | None) -> DetectionDataset:
        """The same images with another transform."""
        return DetectionDataset(self.annotations, self.channels, transform)

    def __getitem__(self, i: int) -> dict[str, Any]:
        a = self.annotations[i]
        image = self.raw(i)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
        sample = {
            IMAGE: tv_tensors.Image(x),
            BOXES: tv_tensors.BoundingBoxes(
                torch.from_numpy(a.boxes.copy()).reshape(-1, 4),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=a.size,
            ),
            LABELS: torch.from_numpy(a.labels.astype(np.int64)),
            DIFFICULT: torch.from_numpy(a.difficult.astype(bool)),
        }
        if a.masks is not None:
            sample[MASKS] = tv_tensors.Mask(torch.from_numpy(draw_object_masks(a.size, a.masks)))
        return self.transform(sample) if self.transform is not None else sample


def object_counts(ds: Dataset, num_classes: int) -> np.ndarray:
    """Objects per class in a :class:`DetectionDataset` or a ``Subset`` of one (no image reads)."""
    base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))
    labels = [base.annotations[i].labels for i in idx]
    flat = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=num_classes)


class DetectionDataModule(SplitDataModule):
    """Seeded splits of an object-detection source (see
    :class:`~visrep.data.base.SplitDataModule`; no stratification: images hold many classes).

    Subclasses implement :meth:`load`, returning :class:`DetectionDataset` splits without a
    transform; training samples then get ``augment``, val/test ones none. Once the splits exist
    one pass over the training images gives the channel mean/std. Images may vary in size:
    batches then hold lists (:func:`detection_collate`). ``spec().keys`` lists ``masks`` when
    the training annotations carry instance masks.

    Args:
        augment: per-sample training augmentation.
        loader, split: batches and splits.
        proposals: add class-independent region proposals to every sample (``proposals``,
            selective search, cached on disk; see :mod:`.proposals`), what R-CNN and Fast
            R-CNN read (``--data.proposals.strategy fast``).
    """

    collate_fn = staticmethod(detection_collate)

    def __init__(
        self,
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        self.proposals = proposals
        self.augment = augment or DetAugment()
        self.mean: list[float] = []
        self.std: list[float] = []
        self.image_shape: tuple[int, int, int] = (0, 0, 0)
        self.has_masks = False

    def on_splits_ready(self) -> None:
        if self.proposals is not None:  # region proposals ride along, moved by the transforms
            self.train_set, self.val_set, self.test_set = (
                with_proposals(d, self.proposals)
                for d in (self.train_set, self.val_set, self.test_set)
            )
        base, indices = self.train_set.dataset, list(self.train_set.indices)
        s = s2 = None
        n = 0
        for i in indices:
            flat = base.raw(i).reshape(-1, base.channels).astype(np.float64) / 255
            s = flat.sum(0) if s is None else s + flat.sum(0)
            s2 = (flat**2).sum(0) if s2 is None else s2 + (flat**2).sum(0)
            n += flat.shape[0]
        mean = s / n
        self.mean = mean.tolist()
        self.std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12)).tolist()
        self.image_shape = (base.channels, *base.annotations[indices[0]].size)
        self.has_masks = base.has_masks
        self.train_set = Subset(base.with_transform(self.augment.transform()), indices)

    def plain_train_dataloader(self) -> DataLoader:
        """The training images in order, without augmentation (R-CNN fits its SVMs on them)."""
        ds = self.train_set
        return self._loader(Subset(ds.dataset.with_transform(None), ds.indices), train=False)

    def sample_names(self) -> list[str]:
        """One name per prediction sample (the test split, in loader order): the image file,
        or the annotation file for an image embedded in it."""
        ds = self.test_set
        base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))
        return [
            a.image if isinstance(a.image, str) else a.source
            for a in (base.annotations[i] for i in idx)
        ]

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`); ``image_size`` is
        the first training image's."""
        return DataSpec(
            family="detection",
            keys=(
                IMAGE,
                BOXES,
                LABELS,
                DIFFICULT,
                *((MASKS,) if self.has_masks else ()),
                *((PROPOSALS,) if self.proposals is not None else ()),
            ),
            in_chans=self.image_shape[0],
            image_size=tuple(self.image_shape[1:]),
            num_classes=len(self.class_names),
            class_names=tuple(self.class_names),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
