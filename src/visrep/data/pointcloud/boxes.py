"""Per-point labels from 3-D boxes: a vectorised points-in-rotated-boxes test, and the labelled
cloud it gives a LiDAR scan (object class or object / background per point).

Boxes follow mmdetection3d's ``LiDARInstance3DBoxes`` (see
:mod:`visrep.data.pointcloud.mmdet3d_info`): ``(x, y, z_bottom, dx, dy, dz, yaw)``, yaw about +z
from +x. A point is inside when, in the box's frame (translated to the bottom centre, rotated by
``-yaw``), ``|u| < dx / 2``, ``|v| < dy / 2`` and ``0 < w < dz``: the open box, as
mmdetection3d's ``box_np_ops.points_in_rbbox`` (which counted KITTI's ``num_lidar_pts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from visrep.data.pointcloud.mmdet3d_info import SceneBoxes
from visrep.errors import ConfigError, ShapeError

__all__ = ["BoxLabels", "label_points_in_boxes", "points_in_boxes"]

IGNORE_LABEL = 255  # points of boxes whose class is not kept: no loss, no metric


STEP_BYTES = 1 << 27  # default working memory of one vectorised step of points_in_boxes
_BYTES_PER_PAIR = 40  # float64 offsets (24) and two rotated coordinates (16) per point-box pair


def points_in_boxes(
    xyz: np.ndarray, boxes: np.ndarray, chunk: int | None = None, max_bytes: int = STEP_BYTES
) -> np.ndarray:
    """Whether each point lies inside each rotated box.

    Args:
        xyz: ``(N, >=3)`` points (columns 0..2 used).
        boxes: ``(B, 7)`` ``(x, y, z_bottom, dx, dy, dz, yaw)``.
        chunk: points per vectorised step; a step holds about ``40 chunk B`` bytes of float64
            temporaries (the offsets ``(chunk, B, 3)`` and the rotated ``u``, ``v``). None:
            sized from ``B`` so that this stays under ``max_bytes``.
        max_bytes: the working memory of one step when ``chunk`` is None.

    Returns:
        ``(N, B)`` bool.

    >>> box = np.array([[0.0, 0, 0, 4, 2, 1, np.pi / 2]])  # 4 long along +y after the yaw
    >>> points_in_boxes(np.array([[0.0, 1.5, 0.5], [1.5, 0, 0.5], [0, 0, 1.5]]), box)[:, 0].tolist()
    [True, False, False]
    """
    p = np.asarray(xyz, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ShapeError(f"points_in_boxes: points must be (N, >=3), got {p.shape}")
    if b.ndim != 2 or b.shape[1] != 7:
        raise ShapeError(f"points_in_boxes: boxes must be (B, 7), got {b.shape}")
    out = np.zeros((len(p), len(b)), dtype=bool)
    if not len(b):
        return out
    if chunk is None:
        chunk = max(1, max_bytes // (_BYTES_PER_PAIR * len(b)))
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    half = b[:, 3:5] / 2
    for start in range(0, len(p), chunk):
        d = p[start : start + chunk, None, :3] - b[None, :, :3]  # (n, B, 3)
        u = d[..., 0] * c + d[..., 1] * s  # rotation by -yaw
        v = -d[..., 0] * s + d[..., 1] * c
        out[start : start + chunk] = (
            (np.abs(u) < half[:, 0])
            & (np.abs(v) < half[:, 1])
            & (d[..., 2] > 0)
            & (d[..., 2] < b[:, 5])
        )
    return out


@dataclass(frozen=True)
class BoxLabels:
    """Per-point labels of a scan made from its boxes.

    Attributes:
        labels: ``(N,)`` int64: 0 background, ``1..K`` the kept classes (or 1 object),
            :data:`IGNORE_LABEL` inside a box of a class that is not kept.
        class_names: ``("background", ...)``, one per label value ``0..K``.
        box_points: ``(B,)`` the points inside each box (a point in several boxes counts in
            each; it takes the first box's label).
        box_labels: ``(B,)`` each box's label value in ``labels``.
        ignore_index: :data:`IGNORE_LABEL`.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]
    box_points: np.ndarray
    box_labels: np.ndarray
    ignore_index: int = IGNORE_LABEL


def label_points_in_boxes(
    xyz: np.ndarray,
    scene: SceneBoxes,
    classes: Sequence[str] | None = None,
    mode: Literal["classes", "object"] = "classes",
) -> BoxLabels:
    """Label every point of a scan by the box it falls in.

    Args:
        xyz: ``(N, >=3)`` points in the LiDAR frame of ``scene``'s boxes.
        scene: the boxes (:func:`~visrep.data.pointcloud.read_scene_boxes`).
        classes: the dataset classes to keep (matched without case), in label order; None keeps
            every class of ``scene``. Points of boxes of other classes (and of label -1) get
            :data:`IGNORE_LABEL`.
        mode: ``classes`` (label ``1 + i`` for ``classes[i]``) or ``object`` (1 for any kept box).

    Raises:
        ConfigError: a class name the dataset does not have, an unknown mode.
    """
    if mode not in ("classes", "object"):
        raise ConfigError(f"mode must be 'classes' or 'object', got {mode!r}")
    lower = [n.lower() for n in scene.class_names]
    kept = list(scene.class_names) if classes is None else list(classes)
    unknown = [c for c in kept if c.lower() not in lower]
    if unknown:
        raise ConfigError(
            f"classes {unknown} are not {scene.dataset} classes ({', '.join(scene.class_names)})"
        )
    # dataset label -> our label value (IGNORE_LABEL where not kept)
    lut = np.full(len(scene.class_names) + 1, IGNORE_LABEL, dtype=np.int64)  # last: label -1
    for i, c in enumerate(kept):
        lut[lower.index(c.lower())] = 1 if mode == "object" else 1 + i
    box_labels = lut[scene.labels]
    inside = points_in_boxes(xyz, scene.boxes)
    labels = np.zeros(len(inside), dtype=np.int64)
    hit = inside.any(1)
    labels[hit] = box_labels[inside[hit].argmax(1)]  # the first box a point is in
    names = ("background", "object") if mode == "object" else ("background", *kept)
    return BoxLabels(labels, tuple(n.lower() for n in names), inside.sum(0), box_labels)
