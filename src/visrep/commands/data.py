"""``visrep data convert|info``: detection data sets from the command line.

* ``convert --source PATH --source_format voc|coco|yolo|labelme --target PATH --target_format
  voc|coco|yolo``: rewrite a detection data set in another layout (boxes, class names, splits,
  difficult / crowd flags; instance masks with ``--masks true`` from coco / labelme to coco).
* ``info --source PATH --source_format ...``: images, objects per class and masks of each split.

The library work is :mod:`visrep.data.detection.convert`.
"""

from __future__ import annotations

from collections.abc import Sequence

from visrep.commands._common import Command, run_subcommands
from visrep.data.detection.convert import (
    SourceFormat,
    TargetFormat,
    convert_detection,
    read_detection_source,
    split_summary,
)
from visrep.data.detection.writers import Images


def convert(
    *,
    source: str,
    source_format: SourceFormat,
    target: str,
    target_format: TargetFormat,
    images: Images = "copy",
    masks: bool = False,
) -> int:
    """Convert a detection data set between VOC, COCO and YOLO (or from labelme).

    Args:
        source: the data set: a VOC or YOLO root, a COCO .json or folder, a labelme folder.
        source_format: voc, coco, yolo or labelme.
        target: the folder to write (new or empty).
        target_format: voc, coco or yolo.
        images: copy the images, or symlink to them.
        masks: carry instance masks (a coco or labelme source to a coco target).
    """
    splits, names = convert_detection(
        source, source_format, target, target_format, images=images, masks=masks
    )
    print(f"{target}: {target_format} data set, {len(names)} classes")
    print(split_summary(splits, names))
    return 0


def info(*, source: str, source_format: SourceFormat, masks: bool = False) -> int:
    """Images, objects per class and masks of each split of a detection data set.

    Args:
        source: the data set: a VOC or YOLO root, a COCO .json or folder, a labelme folder.
        source_format: voc, coco, yolo or labelme.
        masks: read the instance masks too (coco or labelme).
    """
    splits, names = read_detection_source(source, source_format, masks)
    print(f"{source}: {source_format} data set, {len(names)} classes: {', '.join(names)}")
    print(split_summary(splits, names))
    return 0


COMMANDS = {"convert": Command(convert), "info": Command(info)}


def main(argv: Sequence[str]) -> int:
    """Run ``visrep data ...``; returns the exit code."""
    doc = "detection data sets: convert between VOC / COCO / YOLO (and from labelme), info"
    return run_subcommands(COMMANDS, "visrep data", doc, argv)
