"""Detection data converted between VOC, COCO, YOLO (and from labelme): read with the data
modules' own readers, written by :mod:`.writers` (``visrep data convert``).

The source's splits are kept as they are: VOC's ``ImageSets/Main`` lists, YOLO's
``images/<split>`` folders, COCO's split files, labelme's ``train/val/test`` folders; a source
without splits becomes a ``train`` split (a data module holds out val/test from it when it
reads the target). Nothing is split or dropped on the way.

COCO sources are found by :func:`coco_layout`: a ``.json`` file (image ``file_name`` relative to
its folder, as labelme2coco writes them), or a folder with ``annotations/instances_<name>.json``
(the images in ``<name>/``, COCO 2017's and the writer's layout; ``<name>`` starting with
``train``, ``val`` or ``test`` names the split) or with ``annotations.json``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from visrep.data.base import SplitDataModule
from visrep.data.detection.base import Annotation
from visrep.data.detection.coco import CocoDetectionDataModule
from visrep.data.detection.labelme import LabelmeDetectionDataModule
from visrep.data.detection.voc import VOCDetectionDataModule
from visrep.data.detection.writers import WRITERS, Images
from visrep.data.detection.yolo import YOLODataModule
from visrep.data.segmentation.coco import CocoFiles
from visrep.errors import ConfigError, DataError

SourceFormat = Literal["voc", "coco", "yolo", "labelme"]
TargetFormat = Literal["voc", "coco", "yolo"]
SPLITS = ("train", "val", "test")


def coco_layout(path: str | Path) -> tuple[Path, dict[str, CocoFiles]]:
    """The root folder and the split files of a COCO source (module docstring).

    Raises:
        DataError: no annotation file found, or two files for one split.
    """
    p = Path(path)
    if p.is_file():
        return p.parent, {"train": CocoFiles(p.name, ".")}
    files: dict[str, CocoFiles] = {}
    for f in sorted((p / "annotations").glob("instances_*.json")):
        name = f.stem.removeprefix("instances_")
        split = next((s for s in SPLITS if name.startswith(s)), None)
        if split is None:
            continue
        if split in files:
            raise DataError(
                f"COCO folder {str(p)!r}: {files[split].annotations!r} and "
                f"{f.relative_to(p)!s} are both {split} files"
            )
        images = name if (p / name).is_dir() else "."
        files[split] = CocoFiles(str(f.relative_to(p)), images)
    if not files and (p / "annotations.json").is_file():
        files["train"] = CocoFiles("annotations.json", ".")
    if "train" not in files:
        raise DataError(
            f"COCO source {str(p)!r}: expected a .json file, annotations/instances_train*.json "
            "or annotations.json"
        )
    return p, files


def detection_source(path: str, fmt: SourceFormat, masks: bool = False) -> SplitDataModule:
    """The data module that reads a detection source of format ``fmt``."""
    if masks and fmt not in ("coco", "labelme"):
        raise ConfigError(f"--masks: a {fmt} source has no instance masks (coco or labelme have)")
    if not Path(path).exists():
        raise DataError(f"source {path!r} does not exist")
    if fmt == "voc":
        return VOCDetectionDataModule(path)
    if fmt == "yolo":
        return YOLODataModule(path)
    if fmt == "labelme":
        return LabelmeDetectionDataModule(path, masks=masks)
    if fmt == "coco":
        root, files = coco_layout(path)
        return CocoDetectionDataModule(str(root), masks=masks, **files)
    raise ConfigError(f"source format {fmt!r} is not one of voc, coco, yolo, labelme")


def read_detection_source(
    path: str, fmt: SourceFormat, masks: bool = False
) -> tuple[dict[str, list[Annotation]], list[str]]:
    """``{split: annotations}`` (the source's own splits) and the class names of a source."""
    s = detection_source(path, fmt, masks).load()
    splits = {"train": s.train, "val": s.val, "test": s.test}
    return {k: list(d.annotations) for k, d in splits.items() if d is not None}, s.class_names


def _dir_mode() -> int:
    mask = os.umask(0o022)  # os.umask sets and returns the mask: set it back at once
    os.umask(mask)
    return 0o777 & ~mask


def convert_detection(
    source: str,
    source_format: SourceFormat,
    target: str,
    target_format: TargetFormat,
    images: Images = "copy",
    masks: bool = False,
) -> tuple[dict[str, list[Annotation]], list[str]]:
    """Convert a detection source to another format; returns what was written.

    The target is written into a temporary folder beside it and renamed into place at the end,
    so a failed conversion leaves no partial tree. Difficult (crowd) objects written to YOLO,
    which has no such flag, become ordinary ones with one warning.

    Args:
        source, source_format: what to read.
        target, target_format: the folder to write (new or empty) and its layout.
        images: copy the images, or link to them (``symlink``).
        masks: carry instance masks (a coco / labelme source to a coco target).

    Raises:
        ConfigError: a target that exists and is not empty, an unknown format, masks asked of
            a format without them.
        DataError: whatever the source's reader refuses.
    """
    if target_format not in WRITERS:
        raise ConfigError(f"target format {target_format!r} is not one of {', '.join(WRITERS)}")
    if masks and target_format != "coco":
        raise ConfigError(f"--masks: a {target_format} target stores no instance masks (coco does)")
    if images not in ("copy", "symlink"):
        raise ConfigError(f"--images must be copy or symlink, got {images!r}")
    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--target {target!r} exists and is not an empty folder")
    splits, names = read_detection_source(source, source_format, masks)
    difficult = sum(int(np.count_nonzero(a.difficult)) for anns in splits.values() for a in anns)
    if target_format == "yolo" and difficult:
        warnings.warn(
            f"--target {target}: YOLO txt has no difficult flag; {difficult} difficult (or "
            "crowd) objects are written as ordinary ones",
            stacklevel=2,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        WRITERS[target_format](tmp, splits, names, images)
        os.chmod(tmp, _dir_mode())
        os.replace(tmp, out)  # an empty folder at ``out`` is replaced too (POSIX rename)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return splits, names


def split_summary(splits: dict[str, Sequence[Annotation]], class_names: Sequence[str]) -> str:
    """One line per split: images, objects per class, difficult objects and masks.

    >>> a = Annotation("x.jpg", (4, 4), np.zeros((2, 4), np.float32) + [0, 0, 1, 1],
    ...                np.array([1, 1]), np.array([False, True]), "x.xml")
    >>> print(split_summary({"train": [a]}, ["cat", "dog"]))
    train: 1 images, 2 objects (cat 0, dog 2), 1 difficult
    """
    lines = []
    for split, anns in splits.items():
        labels = [a.labels for a in anns]
        flat = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        counts = np.bincount(flat, minlength=len(class_names))
        per_class = ", ".join(f"{n} {int(c)}" for n, c in zip(class_names, counts, strict=True))
        line = f"{split}: {len(anns)} images, {len(flat)} objects ({per_class})"
        difficult = sum(int(np.count_nonzero(a.difficult)) for a in anns)
        if difficult:
            line += f", {difficult} difficult"
        if anns and all(a.masks is not None for a in anns):
            line += ", with instance masks"
        lines.append(line)
    return "\n".join(lines)
