"""labelme annotations (Wada, labelme: image polygonal annotation, github.com/wkentaro/labelme)
as object detection and instance segmentation data.

Files are parsed by :func:`~visrep.data.segmentation.labelme.read_labelme` (the segmentation
reader: same checks, embedded images, layouts ``root/*.json`` or ``root/{train,val,test}/``).

* Objects: every shape with an area (``polygon``, ``rectangle``, ``circle``) is an object, except
  that shapes sharing a label and a ``group_id`` are one object (labelme's instance rule, as its
  ``labelme2coco.py`` merges them: a person hidden behind a pole, drawn as two polygons). Shapes
  labelled ``__ignore__`` or a background name are not objects (``labelme2coco`` leaves them
  out too). ``line`` / ``linestrip`` / ``point`` shapes are refused, or skipped with
  ``other_shapes: skip``.
* Boxes: the extent of the object's shapes, with labelme's point coordinates read as continuous
  pixel coordinates (as COCO reads polygons): a polygon's ``(min x, min y, max x, max y)`` over
  its points, a rectangle's two corners, a circle's centre +- its radius (the distance from the
  centre to its second point). Boxes past the image are clipped with one warning; a shape whose
  extent is empty (``x2 <= x1``) is an error naming the file and the shape.
* Masks (``masks: true``): the union of the object's shapes, drawn as labelme draws them (PIL's
  fill + outline, :mod:`visrep.data.segmentation.polygons`), so a mask may reach one pixel past
  the right / bottom edge of its box.
* Classes: ``class_names`` (a list or a file such as labelme's ``labels.txt``; ``__ignore__`` and
  background names are dropped), else the sorted shape labels of every file: the segmentation
  reader's rule without its background class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataModule,
    DetectionDataset,
    check_boxes,
    warn_clipped,
)
from visrep.data.detection.proposals import ProposalConfig
from visrep.data.segmentation.coco import BACKGROUND_NAMES
from visrep.data.segmentation.labelme import (
    IGNORE_LABEL,
    LabelmeFile,
    has_area,
    labelme_class_names,
    read_labelme,
)
from visrep.data.segmentation.polygons import Region
from visrep.errors import ConfigError, DataError

#: Labels that are no object: labelme's ignore label and the background names.
NOT_OBJECTS = frozenset({IGNORE_LABEL, *BACKGROUND_NAMES})


def shape_extent(kind: str, points: np.ndarray) -> np.ndarray:
    """The ``(x1, y1, x2, y2)`` extent of a labelme shape with an area.

    >>> shape_extent("circle", np.array([[5.0, 5.0], [8.0, 9.0]])).tolist()  # radius 5
    [0.0, 0.0, 10.0, 10.0]
    >>> shape_extent("rectangle", np.array([[6.0, 1.0], [2.0, 4.0]])).tolist()
    [2.0, 1.0, 6.0, 4.0]
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if kind == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        return np.concatenate([pts[0] - r, pts[0] + r])
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def read_group_ids(path: str | Path) -> tuple[int | str | None, ...]:
    """The ``group_id`` of each shape of a labelme file, in file order (None: ungrouped).

    :func:`~visrep.data.segmentation.labelme.read_labelme` keeps no group ids (label maps do not
    need them), so the file's shapes are read again here.
    """
    try:
        shapes = json.loads(Path(path).read_text())["shapes"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"labelme file {str(path)!r} is not valid JSON with 'shapes': {e}") from e
    out = []
    for i, s in enumerate(shapes):
        g = s.get("group_id") if isinstance(s, dict) else None
        if g is not None and (not isinstance(g, int | str) or isinstance(g, bool)):
            raise DataError(
                f"labelme file {str(path)!r}: shape {i} has group_id {g!r}; expected an int or null"
            )
        out.append(g)
    return tuple(out)


def labelme_detection_classes(
    class_names: list[str] | str | None, files: list[LabelmeFile], root: Path
) -> tuple[list[str], dict[str, int]]:
    """The object classes and ``label -> class id``: the segmentation reader's names
    (:func:`~visrep.data.segmentation.labelme.labelme_class_names`) without background."""
    names, _ = labelme_class_names(class_names, files, root)
    names = [n for n in names if n.lower() not in BACKGROUND_NAMES and n != IGNORE_LABEL]
    if not names:
        raise ConfigError(f"labelme files under {str(root)!r}: no object class is named")
    return names, {n: i for i, n in enumerate(names)}


def labelme_annotation(
    file: LabelmeFile,
    group_ids: tuple[int | str | None, ...],
    class_ids: dict[str, int],
    masks: bool,
    other_shapes: str,
) -> tuple[Annotation, int]:
    """The objects of a parsed labelme file (module docstring) and the number of clipped boxes.

    Args:
        file: the parsed file.
        group_ids: each shape's ``group_id`` (:func:`read_group_ids`).
        class_ids: ``label -> class id``.
        masks: keep each object's shapes as its instance mask.
        other_shapes: ``"error"`` or ``"skip"`` for shapes without an area.

    Raises:
        DataError: a label not in ``class_ids``, an unknown shape type, a line shape with
            ``other_shapes="error"``, or a shape with an empty extent (named by file and shape).
    """
    groups: dict[tuple[str, object], list[int]] = {}
    extents, regions = [], []
    for i, (label, kind, pts) in enumerate(file.shapes):
        where = f"labelme file {file.path!r}: shape {i} ({label!r})"
        if not has_area(kind, other_shapes, where):
            continue
        if label in NOT_OBJECTS or label.lower() in BACKGROUND_NAMES:
            continue
        if label not in class_ids:
            raise DataError(f"{where}: label {label!r} is not one of the classes {list(class_ids)}")
        extent = shape_extent(kind, pts)
        if not (extent[2] > extent[0] and extent[3] > extent[1]):
            raise DataError(
                f"{where}: its extent {extent.tolist()} (x1, y1, x2, y2) is empty; expected "
                "x2 > x1 and y2 > y1"
            )
        group = group_ids[i]
        key = (label, ("shape", i) if group is None else ("group", group))
        groups.setdefault(key, []).append(len(extents))
        extents.append(extent)
        regions.append(Region(1, kind, pts))
    ext = np.asarray(extents, dtype=np.float64).reshape(-1, 4)
    members = list(groups.values())
    boxes = np.asarray(
        [[*ext[m, :2].min(axis=0), *ext[m, 2:].max(axis=0)] for m in members], np.float64
    ).reshape(-1, 4)
    names = [f"shape {m[0]} ({label!r})" for (label, _), m in groups.items()]
    boxes, clipped = check_boxes(boxes, (file.height, file.width), file.path, names)
    labels = np.asarray([class_ids[label] for label, _ in groups], dtype=np.int64)
    object_masks = tuple(tuple(regions[k] for k in m) for m in members) if masks else None
    annotation = Annotation(
        file.image,
        (file.height, file.width),
        boxes,
        labels,
        np.zeros(len(labels), dtype=bool),
        file.path,
        object_masks,
    )
    return annotation, clipped


class LabelmeDetectionDataModule(DetectionDataModule):
    """Object detection (and instance masks) from a folder of labelme JSON files.

    Layout: ``root/*.json``, the training pool (val/test held out with ``split.val_fraction`` /
    ``split.test_fraction``), or ``root/train/*.json`` with ``root/val/`` and ``root/test/``
    when present. Every file is parsed when the module is built.

    Args:
        root: the folder of labelme files (or of ``train/`` ...).
        class_names: the object classes in id order, or a text file of them, one a line
            (relative to ``root``; labelme's ``labels.txt`` works as it is: ``__ignore__`` and
            ``_background_`` are dropped); default: the sorted shape labels.
        masks: yield each object's instance mask (``masks`` key) for Mask R-CNN.
        other_shapes: ``error`` refuses ``line`` / ``linestrip`` / ``point`` shapes, ``skip``
            leaves them out.
        augment, loader, split: as in
            :class:`~visrep.data.detection.base.DetectionDataModule`.
    """

    def __init__(
        self,
        root: str,
        class_names: list[str] | str | None = None,
        masks: bool = False,
        other_shapes: Literal["error", "skip"] = "error",
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(augment, loader, split, proposals)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        if other_shapes not in ("error", "skip"):
            raise ConfigError(f"data.other_shapes must be 'error' or 'skip', got {other_shapes!r}")
        self.other_shapes, self.masks = other_shapes, masks
        folders = {"train": self.root}
        if (self.root / "train").is_dir():
            folders = {k: self.root / k for k in ("train", "val", "test")}
            folders = {k: d for k, d in folders.items() if d.is_dir()}
        self.parsed: dict[str, list[tuple[LabelmeFile, tuple[int | str | None, ...]]]] = {}
        for name, folder in folders.items():
            jsons = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
            if not jsons:
                raise DataError(f"folder {str(folder)!r} holds no labelme .json files")
            self.parsed[name] = [(read_labelme(p), read_group_ids(p)) for p in jsons]
        every = [f for files in self.parsed.values() for f, _ in files]
        self.classes, self.class_ids = labelme_detection_classes(class_names, every, self.root)

    def load(self) -> Splits:
        ds, clipped = {}, []
        for name, files in self.parsed.items():
            out = []
            for f, groups in files:
                a, n = labelme_annotation(f, groups, self.class_ids, self.masks, self.other_shapes)
                out.append(a)
                clipped.append((f.path, n))
            ds[name] = DetectionDataset(out)
        warn_clipped(clipped, str(self.root))
        return Splits(ds["train"], None, list(self.classes), ds.get("test"), ds.get("val"))
