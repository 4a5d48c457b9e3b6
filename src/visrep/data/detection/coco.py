"""COCO object detection and instance segmentation: boxes, optional instance masks, crowds.

An annotation file (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", the
``instances_*.json`` format; read with :func:`~visrep.data.segmentation.coco.load_coco_json`)
lists ``images`` (``id``, ``file_name``, ``height``, ``width``), ``categories`` (``id``,
``name``) and ``annotations`` (``image_id``, ``category_id``, ``bbox``, ``iscrowd``,
``segmentation``).

* Boxes: ``bbox = [x, y, w, h]`` in COCO's continuous pixel coordinates (the pixel with 0-based
  index ``i`` covers ``[i, i + 1)``, the convention of
  :mod:`visrep.data.detection.base`), so the XYXY box is ``(x, y, x + w, y + h)``; ``w <= 0`` or
  ``h <= 0`` is an error, boxes past the image are clipped with one warning.
* Classes: the categories sorted by id take the class ids 0, 1, ... (no background class); a
  category named ``background`` / ``_background_`` / ``__background__`` (labelme's
  ``labelme2coco`` writes one, id 0) is not a class, and an annotation of it is an error.
* Crowds (``iscrowd: 1``): kept, with the sample's ``difficult`` flag set, which the detection
  metric hands to COCO's evaluation as ``iscrowd`` (a detection on a crowd region is neither a
  hit nor a false positive); ``keep_crowd: false`` drops them.
* Masks (``masks: true``): each annotation's ``segmentation`` (polygons, an uncompressed RLE or
  a compressed RLE string) is kept as regions and drawn when a sample is read
  (:mod:`visrep.data.segmentation.polygons` gives the pixel rule); an RLE whose ``size`` is not
  its image's ``[height, width]`` is an error.
* Images without annotations are samples without objects.

Splits: ``train``, and ``val`` / ``test`` when given (their categories must be the training
file's); otherwise held out of ``train`` with ``split.val_fraction`` / ``split.test_fraction``.
COCO 2017::

    data:
      class_path: visrep.data.detection.coco.CocoDetectionDataModule
      init_args:
        root: data/coco
        masks: true
        train: {annotations: annotations/instances_train2017.json, images: train2017}
        val: {annotations: annotations/instances_val2017.json, images: val2017}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataModule,
    DetectionDataset,
    ObjectMask,
    check_boxes,
    warn_clipped,
)
from visrep.data.detection.proposals import ProposalConfig
from visrep.data.segmentation.coco import (
    BACKGROUND_NAMES,
    CocoFiles,
    coco_image_records,
    coco_regions,
    load_coco_json,
)
from visrep.errors import DataError


def coco_detection_classes(
    categories: list[Any], path: Path
) -> tuple[list[str], dict[int | str, int]]:
    """Class names and ``category_id -> class id`` of a COCO file's categories: sorted by id,
    numbered from 0, background-named categories left out."""
    named: dict[Any, str] = {}
    for c in categories:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise DataError(f"{str(path)!r}: category {str(c)[:80]} needs an int 'id' and a 'name'")
        if c["id"] in named:
            raise DataError(f"{str(path)!r}: category id {c['id']} appears twice")
        named[c["id"]] = str(c["name"])
    names = [named[i] for i in sorted(named) if named[i].lower() not in BACKGROUND_NAMES]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(
            f"{str(path)!r}: categories with different ids share the name {twice[0]!r}; "
            "expected one category per name"
        )
    if not names:
        raise DataError(f"{str(path)!r} lists no object categories")
    ids = {i: names.index(named[i]) for i in named if named[i].lower() not in BACKGROUND_NAMES}
    return names, ids


def _bbox(ann: dict[str, Any], where: str) -> list[float]:
    b = ann.get("bbox")
    ok = isinstance(b, list | tuple) and len(b) == 4
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
    if not ok:
        raise DataError(f"{where}: bbox {str(b)[:60]} is not [x, y, w, h] (4 numbers)")
    x, y, w, h = (float(v) for v in b)
    if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
        raise DataError(
            f"{where}: bbox [x, y, w, h] = {list(b)}; expected finite values, w > 0, h > 0"
        )
    return [x, y, x + w, y + h]


def read_coco_detection(
    path: Path,
    image_dir: Path,
    category_ids: dict[int | str, int],
    masks: bool,
    keep_crowd: bool = True,
    data: dict[str, Any] | None = None,
) -> tuple[list[Annotation], list[tuple[str, int]]]:
    """The annotations of a COCO file, one per image in the order of its ``images``.

    Args:
        path: the annotation JSON.
        image_dir: the folder the ``file_name`` are relative to.
        category_ids: ``category_id -> class id`` (:func:`coco_detection_classes`).
        masks: keep each annotation's ``segmentation`` as its instance mask.
        keep_crowd: keep ``iscrowd`` annotations (flagged ``difficult``).
        data: the file's parsed content, when already read.

    Returns:
        The annotations and ``(source, clipped boxes)`` per image (for :func:`warn_clipped`).

    Raises:
        DataError: a missing image, an annotation of an unknown image or category (or of a
            background category), a bad bbox, polygon or RLE (named by file and annotation id).
    """
    data = load_coco_json(path) if data is None else data
    images = coco_image_records(data, path, image_dir)
    objects: dict[Any, list[tuple[list[float], int, bool, ObjectMask, str]]] = {
        i: [] for i in images
    }
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise DataError(f"{str(path)!r}: annotation {str(ann)[:60]} is not an object")
        where = f"{str(path)!r} annotation {ann.get('id')!r}"
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in its images")
        if ann.get("category_id") not in category_ids:
            raise DataError(
                f"{where}: category_id {ann.get('category_id')!r} is not one of the object "
                f"categories {sorted(category_ids, key=str)}"
            )
        crowd = bool(ann.get("iscrowd", 0))
        if crowd and not keep_crowd:
            continue
        box = _bbox(ann, where)
        hw = images[ann["image_id"]][1]
        regions = tuple(coco_regions(ann, 1, hw, where)) if masks else ()
        label = category_ids[ann["category_id"]]
        objects[ann["image_id"]].append(
            (box, label, crowd, regions, f"annotation {ann.get('id')!r}")
        )
    out, clipped = [], []
    for i, (file, hw) in images.items():
        objs = objects[i]
        source = f"{path} (image {i}: {Path(file).name})"
        boxes, n = check_boxes(
            np.asarray([o[0] for o in objs], np.float32), hw, source, [o[4] for o in objs]
        )
        out.append(
            Annotation(
                file,
                hw,
                boxes,
                np.asarray([o[1] for o in objs], np.int64),
                np.asarray([o[2] for o in objs], bool),
                source,
                tuple(o[3] for o in objs) if masks else None,
            )
        )
        clipped.append((source, n))
    return out, clipped


class CocoDetectionDataModule(DetectionDataModule):
    """Object detection (and instance masks) from COCO annotation files (module docstring).

    Args:
        root: the folder the split files are relative to.
        train, val, test: each split's annotation JSON and image folder
            (:class:`~visrep.data.segmentation.coco.CocoFiles`).
        masks: yield each object's instance mask (``masks`` key) for Mask R-CNN; every
            annotation then needs a ``segmentation``.
        keep_crowd: keep ``iscrowd`` objects, flagged ``difficult`` (ignored by the metric);
            False drops them.
        augment, loader, split: as in
            :class:`~visrep.data.detection.base.DetectionDataModule`.
    """

    def __init__(
        self,
        root: str,
        train: CocoFiles = CocoFiles(),
        val: CocoFiles | None = None,
        test: CocoFiles | None = None,
        masks: bool = False,
        keep_crowd: bool = True,
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(augment, loader, split, proposals)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        self.files: dict[str, CocoFiles | None] = {"train": train, "val": val, "test": test}
        self.masks, self.keep_crowd = masks, keep_crowd
        self._json = {"train": load_coco_json(self.root / train.annotations)}
        self.classes, self.category_ids = coco_detection_classes(
            self._json["train"]["categories"], self.root / train.annotations
        )

    def _split(
        self, name: str, files: CocoFiles, clipped: list[tuple[str, int]]
    ) -> DetectionDataset:
        path = self.root / files.annotations
        data = self._json.pop(name, None) or load_coco_json(path)
        if name != "train":
            names, ids = coco_detection_classes(data["categories"], path)
            if ids != self.category_ids or names != self.classes:
                raise DataError(
                    f"{str(path)!r}: categories {names} differ from the training file's "
                    f"{self.classes}"
                )
        annotations, n = read_coco_detection(
            path, self.root / files.images, self.category_ids, self.masks, self.keep_crowd, data
        )
        if not annotations:
            raise DataError(f"COCO annotation file {str(path)!r} lists no images")
        clipped += n
        return DetectionDataset(annotations)

    def load(self) -> Splits:
        clipped: list[tuple[str, int]] = []
        ds = {k: self._split(k, f, clipped) for k, f in self.files.items() if f is not None}
        warn_clipped(clipped, str(self.root))
        return Splits(ds["train"], None, list(self.classes), ds.get("test"), ds.get("val"))
