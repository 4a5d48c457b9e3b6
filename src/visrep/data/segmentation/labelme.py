"""labelme annotations (Wada, labelme: image polygonal annotation, github.com/wkentaro/labelme)
rasterised to semantic label maps.

A labelme file ``X.json`` holds ``shapes`` (``label``, ``points``, ``shape_type``), the image
(``imagePath``, relative to the JSON's folder, or the embedded ``imageData``, base64, which wins
when both are there, as in labelme) and its ``imageHeight`` / ``imageWidth``.

The label map (see :mod:`.polygons` for the pixel rule) is drawn as labelme's
``shapes_to_label`` draws it: background 0, then every shape in file order over the earlier
ones; ``polygon`` (3 or more points), ``rectangle`` (two corners) and ``circle`` (centre and a
point on it) have an area; the label ``__ignore__`` draws the ignore index (labelme's
``labels.txt`` convention). ``line``, ``linestrip`` and ``point`` have no area: they are
refused, or skipped with ``other_shapes: skip``. Any other shape type is refused.

Classes: ``class_names`` as given (the class id is the position; an ``__ignore__`` entry is
dropped, so labelme's own ``labels.txt``, ``__ignore__`` then ``_background_`` then the
classes, can be passed as a file), or, by default, ``background`` then the shape labels of
every file in sorted order (labels named ``background`` / ``_background_`` are class 0).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import probe_image
from visrep.data.segmentation.base import (
    Color,
    SegAugment,
    SegmentationDataModule,
    resolve_classes,
)
from visrep.data.segmentation.coco import BACKGROUND_NAMES
from visrep.data.segmentation.polygons import Region, RegionLabel
from visrep.errors import ConfigError, DataError

#: labelme's label of regions that count in no loss or metric.
IGNORE_LABEL = "__ignore__"
#: Shape types with an area, and the number of points each takes (None: 3 or more).
AREA_SHAPES = {"polygon": None, "rectangle": 2, "circle": 2}
#: labelme's shape types without an area (``other_shapes`` decides).
LINE_SHAPES = ("line", "linestrip", "point")


@dataclass(frozen=True, repr=False)
class EmbeddedImage:
    """The image embedded in a labelme file (``imageData``), opened on each call: an image
    source of :class:`~visrep.data.segmentation.base.SegmentationDataset`."""

    json_path: str

    def __call__(self) -> Image.Image:
        try:
            data = json.loads(Path(self.json_path).read_text())["imageData"]
            return Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        except (OSError, ValueError, KeyError, TypeError) as e:  # binascii.Error is a ValueError
            raise DataError(
                f"labelme file {self.json_path}: imageData is not a readable image "
                f"({type(e).__name__})"
            ) from e

    def __str__(self) -> str:
        return f"{self.json_path} (imageData)"

    def __repr__(self) -> str:
        return repr(str(self))


@dataclass(frozen=True)
class LabelmeFile:
    """One labelme file, parsed: its image source, size and shapes (``(label, type, points)``)."""

    path: str
    image: str | EmbeddedImage
    height: int
    width: int
    shapes: tuple[tuple[str, str, np.ndarray], ...]


def read_labelme(path: Path) -> LabelmeFile:
    """Parse a labelme JSON (checking every shape; the embedded image is not kept).

    Raises:
        DataError: invalid JSON, a missing image, a shape without a label or with bad points
            (named by file and shape index).
    """
    where = repr(str(path))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"labelme file {where} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(f"labelme file {where} has no 'shapes' list")
    image: str | EmbeddedImage
    if data.get("imageData"):
        image = EmbeddedImage(str(path))
    elif isinstance(data.get("imagePath"), str):
        # labelme on Windows writes backslashes
        image = str(path.parent / data["imagePath"].replace("\\", "/"))
        if not Path(image).is_file():
            raise DataError(
                f"labelme file {where}: image {image!r} (imagePath, relative to the JSON's "
                "folder) does not exist and there is no imageData"
            )
    else:
        raise DataError(f"labelme file {where} has neither imageData nor an imagePath")
    h, w = data.get("imageHeight"), data.get("imageWidth")
    if h is None or w is None:  # written by labelme < 4
        if isinstance(image, EmbeddedImage):
            with image() as im:
                h, w = im.height, im.width
        else:
            h, w = probe_image(image)[1]
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise DataError(
            f"labelme file {where}: imageHeight {h!r} and imageWidth {w!r} must be positive ints"
        )
    shapes = []
    for i, s in enumerate(data["shapes"]):
        if not isinstance(s, dict) or not isinstance(s.get("label"), str):
            raise DataError(f"labelme file {where}: shape {i} has no 'label'")
        kind = s.get("shape_type") or "polygon"
        try:
            pts = np.asarray(s.get("points"), dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"labelme file {where}: shape {i} ({s['label']!r}) points are not [[x, y], ...]"
            ) from e
        if not np.isfinite(pts).all():
            raise DataError(
                f"labelme file {where}: shape {i} ({s['label']!r}) points are not finite"
            )
        if kind in AREA_SHAPES:
            need = AREA_SHAPES[kind]
            if (need is None and len(pts) < 3) or (need is not None and len(pts) != need):
                raise DataError(
                    f"labelme file {where}: {kind} shape {i} ({s['label']!r}) has {len(pts)} "
                    f"points; expected {'at least 3' if need is None else need}"
                )
        shapes.append((s["label"], str(kind), pts))
    return LabelmeFile(str(path), image, h, w, tuple(shapes))


def has_area(kind: str, other_shapes: str, where: str) -> bool:
    """Whether a shape of type ``kind`` encloses an area (is drawn); a line shape is left out
    with ``other_shapes="skip"``, else refused.

    Raises:
        DataError: a line shape with ``other_shapes="error"`` or an unknown shape type
            (``where`` names the file and shape).
    """
    if kind in LINE_SHAPES:
        if other_shapes == "skip":
            return False
        raise DataError(
            f"{where} is a {kind}, which has no area; use --data.other_shapes skip to leave "
            "such shapes out"
        )
    if kind not in AREA_SHAPES:
        raise DataError(
            f"{where} has shape_type {kind!r}; expected one of {[*AREA_SHAPES, *LINE_SHAPES]}"
        )
    return True


def labelme_label(
    file: LabelmeFile, class_ids: dict[str, int], ignore_index: int, other_shapes: str
) -> RegionLabel:
    """The label map of a parsed labelme file, drawn on demand.

    Args:
        class_ids: ``label -> class id`` (``__ignore__`` is the ignore index whatever it says).
        other_shapes: ``"error"`` refuses ``line`` / ``linestrip`` / ``point`` shapes,
            ``"skip"`` leaves them out.

    Raises:
        DataError: a label not in ``class_ids``, an unknown shape type, or a line shape with
            ``other_shapes="error"`` (named by file and shape index).
    """
    regions = []
    for i, (label, kind, pts) in enumerate(file.shapes):
        where = f"labelme file {file.path!r}: shape {i} ({label!r})"
        if not has_area(kind, other_shapes, where):
            continue
        if label == IGNORE_LABEL:
            value = ignore_index
        elif label in class_ids:
            value = class_ids[label]
        else:
            raise DataError(f"{where}: label {label!r} is not one of the classes {list(class_ids)}")
        regions.append(Region(value, kind, pts))
    return RegionLabel(file.path, file.height, file.width, tuple(regions))


def labelme_class_names(
    class_names: list[str] | str | None, files: list[LabelmeFile], root: Path
) -> tuple[list[str], dict[str, int]]:
    """The class names and ``label -> class id`` (see the module docstring for the rule)."""
    if isinstance(class_names, str):
        listing = Path(class_names) if Path(class_names).is_absolute() else root / class_names
        if not listing.is_file():
            raise ConfigError(f"data.class_names file {str(listing)!r} does not exist")
        class_names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    if class_names is not None:
        names = [n for n in class_names if n != IGNORE_LABEL]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.class_names lists a name twice: {names}")
        return names, {n: i for i, n in enumerate(names)}
    labels = {label for f in files for label, *_ in f.shapes} - {IGNORE_LABEL}
    background = sorted(labels & set(BACKGROUND_NAMES)) or ["background"]
    names = [background[0], *sorted(labels - set(BACKGROUND_NAMES))]
    ids = {n: i for i, n in enumerate(names)}
    return names, ids | {n: 0 for n in BACKGROUND_NAMES}


class LabelmeDataModule(SegmentationDataModule):
    """Semantic segmentation from a folder of labelme JSON files.

    Layout: ``root/*.json``, the training pool (val/test held out with ``split.val_fraction``
    / ``split.test_fraction``), or ``root/train/*.json`` with ``root/val/`` and ``root/test/``
    when present. Every file is parsed when the module is built (the shape labels give the
    default classes); label maps are drawn when an image is read (or once, with ``cache``).

    Args:
        root: the folder of labelme files (or of ``train/`` ...).
        class_names: the classes in id order (background first), or a text file of them, one a
            line (relative to ``root``; labelme's ``labels.txt`` works as it is); default:
            ``background`` and the sorted shape labels.
        class_colors: one ``(R, G, B)`` per class (default: VOC's map).
        other_shapes: ``error`` refuses ``line`` / ``linestrip`` / ``point`` shapes, ``skip``
            leaves them out.
        ignore_index: the label of ``__ignore__`` shapes and of crop padding.
        crop_size: training crop ``(H, W)`` or int (None: whole images, which must then
            share one size).
        augment, cache, loader, split: as in
            :class:`~visrep.data.segmentation.base.SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str,
        class_names: list[str] | str | None = None,
        class_colors: list[Color] | None = None,
        other_shapes: Literal["error", "skip"] = "error",
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = None,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        if other_shapes not in ("error", "skip"):
            raise ConfigError(f"data.other_shapes must be 'error' or 'skip', got {other_shapes!r}")
        self.other_shapes = other_shapes
        folders = {"train": self.root}
        if (self.root / "train").is_dir():
            folders = {k: self.root / k for k in ("train", "val", "test")}
            folders = {k: d for k, d in folders.items() if d.is_dir()}
        self.parsed: dict[str, list[LabelmeFile]] = {}
        for name, folder in folders.items():
            jsons = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
            if not jsons:
                raise DataError(f"folder {str(folder)!r} holds no labelme .json files")
            self.parsed[name] = [read_labelme(p) for p in jsons]
        every = [f for files in self.parsed.values() for f in files]
        names, self.class_ids = labelme_class_names(class_names, every, self.root)
        classes = resolve_classes(names, None, class_colors)
        super().__init__(classes, ignore_index, crop_size, augment, cache, loader, split)

    def load(self) -> Splits:
        ds = {}
        for name, files in self.parsed.items():
            labels = [
                labelme_label(f, self.class_ids, self.ignore_index, self.other_shapes)
                for f in files
            ]
            ds[name] = self.pairs([f.image for f in files], labels, channels=3)
        return Splits(ds["train"], None, list(self.classes.names), ds.get("test"), ds.get("val"))
