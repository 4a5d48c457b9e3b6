"""COCO-keypoints JSON (``person_keypoints_*.json`` and files like it): ``images``,
``annotations`` with ``keypoints`` ``[x1, y1, v1, ...]`` and ``bbox`` ``[x, y, w, h]``, and a
category naming the ``keypoints`` and their ``skeleton`` (1-based limb pairs).

Single-pose samples: one per image (the instance with the most labelled keypoints), or with
``crop_boxes`` one per annotated instance, cropped to its enlarged box. Coordinates are taken
as pixel-index coordinates, as most COCO tools read them. Crowd annotations are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visrep.data.keypoints.base import KeypointRecord
from visrep.errors import DataError


def _category(data: dict[str, Any], path: str) -> dict[str, Any]:
    cats = [c for c in data.get("categories", []) if c.get("keypoints")]
    if not cats:
        raise DataError(
            f"{path}: no category names its keypoints (a COCO-keypoints file has categories[].keypoints)"
        )
    if len(cats) > 1:
        raise DataError(f"{path}: {len(cats)} categories with keypoints; one is supported")
    return cats[0]


def read_coco_keypoints(
    path: str, image_root: str, crop_boxes: bool = False, box_margin: float = 0.25
) -> tuple[list[KeypointRecord], tuple[str, ...], tuple[tuple[int, int], ...]]:
    """The records, keypoint names and skeleton (0-based limbs) of a COCO-keypoints file.

    Raises:
        DataError: an unreadable file, no keypoint category, or an annotation whose keypoint
            list is not ``3 K`` long (the message names the file and the annotation id).
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read COCO-keypoints file {path!r}: {e}") from e
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{path}: expected a COCO JSON object with images and annotations")
    cat = _category(data, path)
    names = tuple(str(n) for n in cat["keypoints"])
    k = len(names)
    limbs = tuple((int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton", []))
    images = {im["id"]: im for im in data["images"]}
    by_image: dict[Any, list[tuple[np.ndarray, list[float] | None]]] = {}
    for ann in data["annotations"]:
        if ann.get("category_id", cat["id"]) != cat["id"] or ann.get("iscrowd", 0):
            continue
        kp = np.asarray(ann.get("keypoints", []), dtype=np.float32)
        if kp.size != 3 * k:
            raise DataError(
                f"{path} annotation {ann.get('id')}: {kp.size} keypoint values, expected 3 x {k} = {3 * k}"
            )
        if ann.get("image_id") not in images:
            raise DataError(
                f"{path} annotation {ann.get('id')}: image_id {ann.get('image_id')} is not in images"
            )
        kp = kp.reshape(k, 3)
        if (kp[:, 2] > 0).any():
            by_image.setdefault(ann["image_id"], []).append((kp, ann.get("bbox")))
    records = []
    for image_id, instances in sorted(by_image.items(), key=lambda t: str(t[0])):
        im = images[image_id]
        file = str(Path(image_root) / im["file_name"])
        if not crop_boxes:
            kp, _ = max(instances, key=lambda t: int((t[0][:, 2] > 0).sum()))
            records.append(KeypointRecord(file, kp, group=str(image_id)))
            continue
        for kp, bbox in instances:
            if bbox is None or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
                raise DataError(
                    f"{path}: an annotation of image {image_id} has no usable bbox for data.crop_boxes"
                )
            x, y, w, h = (float(v) for v in bbox)
            mx, my = box_margin * w, box_margin * h
            records.append(
                KeypointRecord(file, kp, (x - mx, y - my, w + 2 * mx, h + 2 * my), str(image_id))
            )
    if not records:
        raise DataError(f"{path}: no annotation has labelled keypoints")
    return records, names, limbs
