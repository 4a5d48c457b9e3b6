"""Detection annotations written as a PASCAL VOC tree, COCO JSON or the YOLO txt layout: the
inverse of the readers in :mod:`.voc`, :mod:`.coco` and :mod:`.yolo`, so that a tree written here
reads back into the same boxes, classes and splits.

Every writer takes ``{split: [Annotation, ...]}`` (``train`` / ``val`` / ``test``, as a data
module's :meth:`load` gives them) and the class names, and writes the annotations and the images
(copied, or symbolically linked with ``images="symlink"``; an image embedded in a labelme file is
written as PNG). Image file names keep their stem, which must be unique over all splits (VOC
keeps every image in one folder). Layouts:

* VOC (Everingham et al. 2010): ``Annotations/<stem>.xml``, ``JPEGImages/<stem><ext>``,
  ``ImageSets/Main/<split>.txt``. Coordinates are VOC's 1-based inclusive pixel indices, the
  inverse of :func:`~visrep.data.detection.voc.read_voc_xml`: ``xmin = x1 + 1, ymin = y1 + 1,
  xmax = x2, ymax = y2``, written with up to 4 decimals (integers stay integers). Difficult
  objects (and COCO crowds) get ``<difficult>1</difficult>``.
* COCO (Lin et al. 2014): ``annotations/instances_<split>.json`` with the images in ``<split>/``;
  categories ``1..K`` in class order, ``bbox = [x1, y1, x2 - x1, y2 - y1]`` (6 decimals), difficult
  objects as ``iscrowd: 1`` (the role both play in evaluation), ``area`` the mask's pixel count or
  the box area, and, where the annotations carry masks, ``segmentation`` as the object's polygons
  (when all its regions are polygons) or the uncompressed run lengths of its drawn mask.
* YOLO (Redmon et al. 2016): ``images/<split>/``, ``labels/<split>/<stem>.txt`` (one line ``class
  cx cy w h`` per object, normalised, 8 decimals: 1e-4 px up to 20,000-px images; an image without
  objects gets an empty file) and ``data.yaml`` (``names``, and each split's image folder). YOLO
  has no difficult flag: difficult objects become ordinary ones (``convert`` warns).

The writers write into a folder that should be new (``convert`` in :mod:`.convert` writes into a
temporary folder and renames it, so a failed conversion leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from PIL import Image

from visrep.data.datasets import IMAGE_EXTENSIONS
from visrep.data.detection.base import Annotation, draw_object_masks
from visrep.data.detection.voc import _IMAGE_EXTS as VOC_IMAGE_EXTS
from visrep.data.detection.yolo import _IMAGE_EXTS as YOLO_IMAGE_EXTS
from visrep.data.segmentation.polygons import rle_encode
from visrep.errors import DataError

Images = Literal["copy", "symlink"]
SplitAnnotations = Mapping[str, Sequence[Annotation]]


def _number(v: float, decimals: int) -> str:
    """``v`` with at most ``decimals`` decimals and no trailing zeros (``12.5``, ``3``)."""
    text = f"{float(v):.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def image_names(splits: SplitAnnotations, exts: Sequence[str]) -> dict[int, str]:
    """``id(annotation) -> file name`` of every image: its stem and extension, or ``.png`` for
    an embedded image or an extension (lower case) not in ``exts`` (the reader's).

    Raises:
        DataError: two images with one stem.
    """
    names: dict[int, str] = {}
    seen: dict[str, str] = {}
    for anns in splits.values():
        for a in anns:
            if isinstance(a.image, str):
                stem, ext = Path(a.image).stem, Path(a.image).suffix
            else:  # an embedded image: named after its annotation file
                stem, ext = Path(a.source).stem, ".png"
            source = str(a.image)
            if stem in seen and seen[stem] != source:
                raise DataError(
                    f"images {seen[stem]!r} and {source!r} share the name {stem!r}; expected "
                    "unique file stems (the target keeps images in one folder)"
                )
            seen[stem] = source
            names[id(a)] = stem + (ext if ext.lower() in exts else ".png")
    return names


def write_image(a: Annotation, path: Path, images: Images) -> None:
    """The image of an annotation at ``path``: copied, linked, or (embedded, or in a format the
    target does not read) saved as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(a.image, str) or Path(a.image).suffix != path.suffix:
        with a.image() if callable(a.image) else Image.open(a.image) as im:
            im.save(path, format="PNG")
    elif images == "symlink":
        os.symlink(Path(a.image).resolve(), path)
    else:
        shutil.copyfile(a.image, path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- VOC -------------------------------------------------------------------------------------------
def voc_xml(a: Annotation, filename: str, class_names: Sequence[str]) -> str:
    """A VOC annotation file of one image (see the module docstring for the coordinates).

    >>> a = Annotation("x.jpg", (10, 20), np.array([[0, 2, 5.5, 7]], np.float32),
    ...                np.array([1]), np.array([True]), "x.xml")
    >>> "<xmin>1</xmin><ymin>3</ymin><xmax>5.5</xmax><ymax>7</ymax>" in voc_xml(a, "x.jpg", ["a", "b"])
    True
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    h, w = a.size
    ET.SubElement(size, "width").text = str(w)
    ET.SubElement(size, "height").text = str(h)
    ET.SubElement(size, "depth").text = "3"
    corners = np.asarray(a.boxes, np.float64).reshape(-1, 4) + np.array([1, 1, 0, 0])
    for box, label, difficult in zip(corners, a.labels, a.difficult, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[int(label)]
        ET.SubElement(obj, "difficult").text = "1" if difficult else "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = _number(v, 4)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(
    root: str | Path, splits: SplitAnnotations, class_names: Sequence[str], images: Images = "copy"
) -> None:
    """A PASCAL VOC tree (module docstring)."""
    root = Path(root)
    names = image_names(splits, VOC_IMAGE_EXTS)
    for split, anns in splits.items():
        stems = []
        for a in anns:
            name = names[id(a)]
            stems.append(Path(name).stem)
            _write_text(
                root / "Annotations" / f"{Path(name).stem}.xml", voc_xml(a, name, class_names)
            )
            write_image(a, root / "JPEGImages" / name, images)
        _write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in stems))


# -- COCO ------------------------------------------------------------------------------------------
def coco_segmentation(a: Annotation, k: int) -> tuple[list[list[float]] | dict[str, Any], int]:
    """Object ``k``'s COCO ``segmentation`` and its pixel count."""
    regions = a.masks[k]
    mask = draw_object_masks(a.size, [regions])[0]
    area = int(mask.sum())
    if regions and all(r.kind == "polygon" for r in regions):
        polygons = [[round(float(v), 6) for v in r.points.ravel()] for r in regions]
        return polygons, area
    return {"counts": rle_encode(mask).tolist(), "size": [int(a.size[0]), int(a.size[1])]}, area


def coco_json(
    annotations: Sequence[Annotation], file_names: Sequence[str], class_names: Sequence[str]
) -> dict[str, Any]:
    """The COCO instances file of one split (module docstring)."""
    images, anns = [], []
    for image_id, (a, name) in enumerate(zip(annotations, file_names, strict=True), start=1):
        h, w = a.size
        images.append({"id": image_id, "file_name": name, "height": int(h), "width": int(w)})
        for k, (box, label, crowd) in enumerate(zip(a.boxes, a.labels, a.difficult, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            bw, bh = x2 - x1, y2 - y1
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": int(label) + 1,
                "bbox": [round(x1, 6), round(y1, 6), round(bw, 6), round(bh, 6)],
                "area": round(bw * bh, 6),
                "iscrowd": int(bool(crowd)),
            }
            if a.masks is not None:
                ann["segmentation"], ann["area"] = coco_segmentation(a, k)
            anns.append(ann)
    categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(class_names)]
    return {"images": images, "annotations": anns, "categories": categories}


def write_coco(
    root: str | Path, splits: SplitAnnotations, class_names: Sequence[str], images: Images = "copy"
) -> None:
    """COCO instance files and image folders (module docstring)."""
    root = Path(root)
    names = image_names(splits, tuple(IMAGE_EXTENSIONS))
    for split, anns in splits.items():
        files = [names[id(a)] for a in anns]
        for a, name in zip(anns, files, strict=True):
            write_image(a, root / split / name, images)
        data = coco_json(anns, files, class_names)
        _write_text(root / "annotations" / f"instances_{split}.json", json.dumps(data))


# -- YOLO ------------------------------------------------------------------------------------------
def yolo_lines(a: Annotation) -> str:
    """The YOLO label file of one image: ``class cx cy w h`` per object, normalised.

    >>> a = Annotation("x.jpg", (10, 20), np.array([[5, 0, 15, 10]], np.float32),
    ...                np.array([2]), np.array([False]), "x.txt")
    >>> yolo_lines(a)
    '2 0.50000000 0.50000000 0.50000000 1.00000000\\n'
    """
    h, w = a.size
    b = np.asarray(a.boxes, np.float64).reshape(-1, 4) / [w, h, w, h]
    c = np.clip(np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1), 0, 1)
    return "".join(
        f"{int(k)} " + " ".join(f"{v:.8f}" for v in row) + "\n"
        for k, row in zip(a.labels, c, strict=True)
    )


def write_yolo(
    root: str | Path, splits: SplitAnnotations, class_names: Sequence[str], images: Images = "copy"
) -> None:
    """A YOLO txt tree and its ``data.yaml`` (module docstring)."""
    root = Path(root)
    names = image_names(splits, YOLO_IMAGE_EXTS)
    for split, anns in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for a in anns:
            name = names[id(a)]
            write_image(a, root / "images" / split / name, images)
            _write_text(root / "labels" / split / f"{Path(name).stem}.txt", yolo_lines(a))
    data = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(class_names)}
    data["names"] = list(class_names)
    _write_text(root / "data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


Writer = Callable[[str | Path, SplitAnnotations, Sequence[str], Images], None]
#: The target formats of ``visrep data convert``.
WRITERS: dict[str, Writer] = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo}
