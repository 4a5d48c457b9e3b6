"""PASCAL VOC detection: ``root/Annotations/X.xml`` (one ``<object>`` per box with ``name``,
``difficult`` and ``bndbox``), ``root/JPEGImages/X.jpg`` and, when present, the split lists
``root/ImageSets/Main/{train,val,test}.txt`` (Everingham et al., "The PASCAL Visual Object
Classes (VOC) Challenge", IJCV 2010). BCCD (``/work/shared/data/bccd/BCCD``) has this layout.

The XML is read with the standard library's ``xml.etree.ElementTree``: VOC files are small,
trusted, namespace-free and need no schema, so no extra dependency (lxml, xmltodict) is worth
adding.

Coordinates: VOC's ``xmin..xmax`` are 1-based, inclusive pixel indices, so a box becomes
``(xmin - 1, ymin - 1, xmax, ymax)`` in continuous XYXY pixels (the whole 1-based image
``1..W`` is ``(0, 0, W, H)``; a one-pixel box ``xmin == xmax`` has width 1). ``xmax < xmin`` or
``ymax < ymin`` is an error; boxes past the image are clipped with one warning.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

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
from visrep.errors import DataError

_CORNERS = ("xmin", "ymin", "xmax", "ymax")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def _text(node: ET.Element, path: str, source: str, what: str) -> str:
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{source!r}: {what} has no <{path}>")
    return child.text.strip()


def _number(node: ET.Element, path: str, source: str, what: str) -> float:
    text = _text(node, path, source, what)
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{source!r}: {what} <{path}> is {text!r}; expected a number") from None


def read_voc_xml(path: str | Path) -> tuple[tuple[int, int], list[str], np.ndarray, np.ndarray]:
    """One VOC annotation file: ``(H, W)``, the object names, boxes float32 ``(N, 4)`` in
    continuous XYXY pixels (``xmin - 1, ymin - 1, xmax, ymax``; not yet clipped) and the
    difficult flags ``(N,)``.

    Raises:
        DataError: the file does not parse, or lacks ``size`` / an object's ``name`` or
            ``bndbox`` (the message names the file and the object).
    """
    source = str(path)
    try:
        root = ET.parse(source).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"cannot read VOC annotation {source!r}: {e}") from None
    size = root.find("size")
    if size is None:
        raise DataError(f"{source!r}: the annotation has no <size>")
    w = _number(size, "width", source, "<size>")
    h = _number(size, "height", source, "<size>")
    if w < 1 or h < 1 or w != int(w) or h != int(h):
        raise DataError(f"{source!r}: <size> is {w}x{h} (WxH); expected positive integers")
    names, boxes, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        what = f"object {i}"
        names.append(_text(obj, "name", source, what))
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{source!r}: {what} ({names[-1]}) has no <bndbox>")
        boxes.append([_number(box, k, source, f"{what} ({names[-1]})") for k in _CORNERS])
        flag = obj.find("difficult")
        difficult.append(flag is not None and (flag.text or "0").strip() not in ("0", ""))
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    arr[:, :2] -= 1  # 1-based inclusive indices -> continuous pixel coordinates
    return (int(h), int(w)), names, arr, np.asarray(difficult, dtype=bool)


def voc_class_names(files: list[Path]) -> list[str]:
    """The sorted set of object names in VOC annotation files."""
    names: set[str] = set()
    for f in files:
        names.update(read_voc_xml(f)[1])
    return sorted(names)


class VOCDetectionDataModule(DetectionDataModule):
    """PASCAL VOC-layout object detection (VOC 2007/2012, BCCD ...).

    Splits: ``ImageSets/Main/train.txt`` (else ``trainval.txt``, else every annotation file) is
    the training data; ``val.txt`` / ``test.txt`` are used when present, otherwise held out with
    ``split.val_fraction`` / ``split.test_fraction``. Images are ``JPEGImages/<id>.jpg``
    (``.jpeg`` / ``.png`` also found).

    Args:
        root: the folder holding ``Annotations/`` and ``JPEGImages/``.
        classes: the class names, in id order; objects with other names are an error. None
            collects the names found in all annotation files, sorted.
        keep_difficult: keep objects marked ``difficult`` (flagged in the sample's
            ``difficult``); False drops them.
        augment, loader, split: as in
            :class:`~visrep.data.detection.base.DetectionDataModule`.
    """

    def __init__(
        self,
        root: str,
        classes: list[str] | None = None,
        keep_difficult: bool = True,
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(augment, loader, split, proposals)
        self.root = Path(root)
        for d in ("Annotations", "JPEGImages"):
            if not (self.root / d).is_dir():
                raise DataError(f"VOC folder {str(self.root / d)!r} does not exist")
        self.classes = list(classes) if classes is not None else None
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise DataError(f"data.classes lists a name twice: {self.classes}")
        self.keep_difficult = keep_difficult

    def _ids(self, name: str) -> list[str] | None:
        listing = self.root / "ImageSets" / "Main" / f"{name}.txt"
        if not listing.is_file():
            return None
        ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"VOC split list {str(listing)!r} is empty")
        return ids

    def _image(self, i: str) -> str:
        for ext in _IMAGE_EXTS:
            p = self.root / "JPEGImages" / f"{i}{ext}"
            if p.is_file():
                return str(p)
        missing = self.root / "JPEGImages" / f"{i}.jpg"
        raise DataError(f"VOC image {str(missing)!r} of {i!r} is missing")

    def _dataset(
        self, ids: list[str], classes: dict[str, int], clipped: list[tuple[str, int]]
    ) -> DetectionDataset:
        out = []
        for i in ids:
            xml = self.root / "Annotations" / f"{i}.xml"
            if not xml.is_file():
                raise DataError(f"VOC annotation {str(xml)!r} of {i!r} is missing")
            size, names, boxes, difficult = read_voc_xml(xml)
            unknown = [n for n in names if n not in classes]
            if unknown:
                raise DataError(
                    f"{str(xml)!r}: object {names.index(unknown[0])} is {unknown[0]!r}, not one "
                    f"of data.classes {list(classes)}"
                )
            labels = np.asarray([classes[n] for n in names], dtype=np.int64)
            if not self.keep_difficult:
                boxes, labels, difficult = (
                    boxes[~difficult],
                    labels[~difficult],
                    difficult[~difficult],
                )
            boxes, n_clipped = check_boxes(boxes, size, str(xml))
            out.append(Annotation(self._image(i), size, boxes, labels, difficult, str(xml)))
            clipped.append((str(xml), n_clipped))
        return DetectionDataset(out)

    def load(self) -> Splits:
        split_ids = {name: self._ids(name) for name in ("train", "trainval", "val", "test")}
        train = split_ids["train"] or split_ids["trainval"]
        if train is None:
            train = sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
            if not train:
                raise DataError(f"VOC folder {str(self.root / 'Annotations')!r} holds no .xml")
        names = self.classes
        if names is None:
            every = [*train, *(split_ids["val"] or []), *(split_ids["test"] or [])]
            names = voc_class_names([self.root / "Annotations" / f"{i}.xml" for i in every])
        index = {n: k for k, n in enumerate(names)}
        clipped: list[tuple[str, int]] = []
        ds = {"train": self._dataset(train, index, clipped)}
        for name in ("val", "test"):
            if split_ids[name] is not None:
                ds[name] = self._dataset(split_ids[name], index, clipped)
        warn_clipped(clipped, str(self.root))
        return Splits(ds["train"], None, list(names), ds.get("test"), ds.get("val"))
