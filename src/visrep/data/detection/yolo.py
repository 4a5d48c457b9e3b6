"""YOLO txt detection layout (as Ultralytics / darknet write it): ``root/images/<split>/X.jpg``
with ``root/labels/<split>/X.txt``, one object per line ``class cx cy w h``, the centre and size
normalised by the image width and height to [0, 1] (Redmon et al., "You Only Look Once", CVPR
2016, Sec. 2). An image without a label file, or with an empty one, has no objects.

Class names come from the ``classes`` option, else ``root/data.yaml`` (``names:`` as a list or
an ``{id: name}`` map), else ``root/classes.txt`` (one name a line).

A line becomes the continuous XYXY pixel box ``((cx - w/2) W, (cy - h/2) H, (cx + w/2) W,
(cy + h/2) H)``; parts past the image are clipped with one warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import probe_image
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

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "val", "test")


def read_yolo_labels(path: str | Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One YOLO label file: class ids int64 ``(N,)`` and normalised ``(cx, cy, w, h)`` float32
    ``(N, 4)``.

    Raises:
        DataError: a line without 5 columns, a value that is not a number, a class id that is
            not an integer in ``[0, num_classes)``, or a coordinate outside [0, 1] (the message
            names the file and the line).
    """
    source = str(path)
    lines = [(k + 1, line.split()) for k, line in enumerate(Path(path).read_text().splitlines())]
    lines = [(k, cols) for k, cols in lines if cols]
    for k, cols in lines:
        if len(cols) != 5:
            raise DataError(
                f"{source!r} line {k}: {len(cols)} columns; expected 5 (class cx cy w h)"
            )
    if not lines:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    try:
        values = np.array([cols for _, cols in lines], dtype=np.float64)
    except ValueError:
        k = next(k for k, cols in lines if not all(_is_number(c) for c in cols))
        raise DataError(f"{source!r} line {k}: a value is not a number") from None
    line_no = np.array([k for k, _ in lines])
    cls = values[:, 0]
    bad = (cls != np.round(cls)) | (cls < 0) | (cls >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source!r} line {line_no[i]}: class {cls[i]:g}; expected an integer in "
            f"[0, {num_classes})"
        )
    coords = values[:, 1:]
    bad = ((coords < 0) | (coords > 1) | ~np.isfinite(coords)).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source!r} line {line_no[i]}: cx cy w h = {coords[i].tolist()}; expected "
            "values in [0, 1] (normalised by the image size)"
        )
    return cls.astype(np.int64), coords.astype(np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def yolo_to_xyxy(cxcywh: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised ``(cx, cy, w, h)`` to XYXY pixels of an ``(H, W)`` image.

    >>> yolo_to_xyxy(np.array([[0.5, 0.5, 0.5, 1.0]]), (10, 20)).tolist()
    [[5.0, 0.0, 15.0, 10.0]]
    """
    h, w = size
    c = np.asarray(cxcywh, dtype=np.float32).reshape(-1, 4)
    half = c[:, 2:] / 2
    scale = np.array([w, h, w, h], dtype=np.float32)
    return np.concatenate([c[:, :2] - half, c[:, :2] + half], axis=1) * scale


def yolo_class_names(root: Path) -> list[str]:
    """Class names from ``root/data.yaml`` (``names``) or ``root/classes.txt``."""
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        try:
            names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as e:
            raise DataError(f"cannot read {str(data_yaml)!r}: {str(e).splitlines()[0]}") from None
        if isinstance(names, dict):
            keys = sorted(names)
            if keys != list(range(len(keys))):
                raise DataError(
                    f"{str(data_yaml)!r}: names ids {keys}; expected 0..{len(keys) - 1}"
                )
            names = [names[k] for k in keys]
        if not isinstance(names, list) or not names:
            raise DataError(f"{str(data_yaml)!r}: expected 'names:' as a non-empty list or map")
        return [str(n) for n in names]
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        names = [line.strip() for line in classes_txt.read_text().splitlines() if line.strip()]
        if not names:
            raise DataError(f"{str(classes_txt)!r} lists no class names")
        return names
    raise DataError(
        f"{str(root)!r} has no data.yaml or classes.txt: give the class names with data.classes"
    )


class YOLODataModule(DetectionDataModule):
    """Object detection from the YOLO txt layout (see the module docstring).

    ``images/train`` is the training data; ``images/val`` / ``images/test`` are used when present,
    otherwise held out with ``split.val_fraction`` / ``split.test_fraction``.

    Args:
        root: the folder holding ``images/`` and ``labels/``.
        classes: the class names in id order; None reads ``data.yaml`` or ``classes.txt``.
        augment, loader, split: as in
            :class:`~visrep.data.detection.base.DetectionDataModule`.
    """

    def __init__(
        self,
        root: str,
        classes: list[str] | None = None,
        augment: DetAugment | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        proposals: ProposalConfig | None = None,
    ) -> None:
        super().__init__(augment, loader, split, proposals)
        self.root = Path(root)
        for d in ("images", "labels"):
            if not (self.root / d).is_dir():
                raise DataError(f"YOLO folder {str(self.root / d)!r} does not exist")
        self.classes = list(classes) if classes is not None else None

    def _dataset(
        self, name: str, num_classes: int, clipped: list[tuple[str, int]]
    ) -> DetectionDataset | None:
        folder = self.root / "images" / name
        if not folder.is_dir():
            return None
        images = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTS
        )
        if not images:
            raise DataError(f"YOLO folder {str(folder)!r} holds no {'/'.join(_IMAGE_EXTS)} files")
        out = []
        for image in images:
            size = probe_image(image)[1]  # from the header only
            txt = self.root / "labels" / name / f"{image.stem}.txt"
            if txt.is_file():
                labels, cxcywh = read_yolo_labels(txt, num_classes)
            else:
                labels, cxcywh = np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
            boxes, n = check_boxes(yolo_to_xyxy(cxcywh, size), size, str(txt))
            difficult = np.zeros(len(labels), dtype=bool)
            out.append(Annotation(str(image), size, boxes, labels, difficult, str(txt)))
            clipped.append((str(txt), n))
        return DetectionDataset(out)

    def load(self) -> Splits:
        names = self.classes if self.classes is not None else yolo_class_names(self.root)
        clipped: list[tuple[str, int]] = []
        ds = {name: self._dataset(name, len(names), clipped) for name in SPLITS}
        if ds["train"] is None:
            raise DataError(f"YOLO folder {str(self.root / 'images' / 'train')!r} does not exist")
        warn_clipped(clipped, str(self.root))
        return Splits(ds["train"], None, list(names), ds["test"], ds["val"])
