"""3-D boxes of a LiDAR scan from an mmdetection3d info pickle (the v1.x format of
``../shared/data/pointclouds``: ``{"metainfo": ..., "data_list": [sample, ...]}``), read without
running code.

A pickle is a program: ``pickle.load`` on a crafted file calls any function it names. The info
files only need numpy's scalar, dtype and array reconstruction (and ``_codecs.encode``, which
protocol 2 uses for bytes), so :func:`read_info_pickle` allows exactly those globals and refuses
any other with a one-line :class:`~visrep.errors.DataError` naming the file and the global.

Boxes come back in one convention, mmdetection3d's ``LiDARInstance3DBoxes``: the LiDAR frame,
``(x, y, z_bottom, dx, dy, dz, yaw)`` with ``(x, y, z_bottom)`` the centre of the box's bottom
face, ``dx`` its length along the heading, ``dy`` its width, ``dz`` its height, and ``yaw`` the
heading's angle from +x towards +y (about +z).

* KITTI infos hold ``CameraInstance3DBoxes``: bottom centre ``(x, y, z)`` in RECTIFIED camera
  coordinates (x right, y down, z forward), dims ``(l, h, w)``, yaw ``ry`` about +y (0 along +x,
  decreasing towards +z). They are moved to the LiDAR frame as mmdetection3d's
  ``box_np_ops.box_camera_to_lidar`` does: the centre through ``(R0_rect Tr_velo_to_cam)^-1``
  (``Tr_velo_to_cam`` alone maps to the unrectified camera), dims ``(l, w, h)``, yaw
  ``-ry - pi/2``. That is how the dataset counted each box's ``num_lidar_pts``; the counts of
  :func:`~visrep.data.pointcloud.points_in_boxes` on the shared scan equal them for all six boxes.
* nuScenes infos hold LiDAR boxes whose ``z`` is the GRAVITY centre (mmdetection3d's
  ``NuScenesDataset`` builds them with ``origin=(0.5, 0.5, 0.5)``); the bottom is ``z - dz / 2``.
"""

from __future__ import annotations

import _codecs
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrep.errors import DataError

__all__ = [
    "KITTI_CLASSES",
    "SceneBoxes",
    "read_info_pickle",
    "read_scene_boxes",
]

# mmdetection3d's KittiDataset.METAINFO["classes"]: bbox_label_3d indexes this tuple
KITTI_CLASSES = ("Pedestrian", "Cyclist", "Car", "Van", "Truck", "Person_sitting", "Tram", "Misc")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    out: dict[tuple[str, str], Any] = {
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("_codecs", "encode"): _codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(module, "scalar")] = core.multiarray.scalar
        out[(module, "_reconstruct")] = core.multiarray._reconstruct
    return out


class _InfoUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array / scalar / dtype reconstruction globals."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise DataError(
                f"{self.path}: refused to unpickle the global {module}.{name} (an info file may "
                "only hold plain data and numpy arrays, scalars and dtypes)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.path}: refused a persistent id in the pickle")


def read_info_pickle(path: str | Path) -> Any:
    """Unpickle an info file, allowing only numpy's reconstruction globals (nothing runs).

    Raises:
        DataError: a missing or broken file, or a pickle naming any other global (one line
            naming the file and the global).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such info file")
    try:
        with open(path, "rb") as f:
            return _InfoUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError from a bad stream
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable info pickle: {reason}") from None


@dataclass(frozen=True)
class SceneBoxes:
    """The annotated 3-D boxes of one scan, in the LiDAR frame (see the module docstring).

    Attributes:
        boxes: ``(B, 7)`` float64 ``(x, y, z_bottom, dx, dy, dz, yaw)``.
        labels: ``(B,)`` int64 index into ``class_names``; -1 for a box of a class the dataset
            does not evaluate.
        class_names: the dataset's classes.
        num_lidar_pts: ``(B,)`` the points the dataset counted in each box (-1 where absent).
        dataset: ``"kitti"`` or ``"nuscenes"``.
        lidar_path: the scan's file name as the info gives it.
    """

    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    num_lidar_pts: np.ndarray
    dataset: str
    lidar_path: str


def _matrix(value: Any, path: Path, what: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: {what} must be a finite 4x4 matrix, got {type(value).__name__} {str(value)[:60]!r}"
        ) from None
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DataError(f"{path}: {what} must be a finite 4x4 matrix, got shape {m.shape}")
    return m


def _ints(instances: list[dict], key: str, path: Path) -> np.ndarray:
    """``instance[key]`` (default -1) of each instance as int64, refusing non-integers."""
    out = []
    for i, ins in enumerate(instances):
        v = ins.get(key, -1)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise DataError(f"{path}: instance {i}: {key} must be an integer, got {v!r}")
        out.append(int(v))
    return np.array(out, dtype=np.int64)


def _dict(value: Any, path: Path, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} must be a dict, got {type(value).__name__}")
    return value


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles in ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def read_scene_boxes(path: str | Path, sample: int = 0) -> SceneBoxes:
    """The 3-D boxes of sample ``sample`` of a KITTI or nuScenes mmdetection3d info file.

    Instances whose box has a non-positive size (KITTI's ``DontCare`` regions, stored as
    ``[-1000, -1000, -1000, -1, -1, -1, -10]``) are left out.

    Raises:
        DataError: an unsafe or broken pickle, an unknown layout, a missing sample or bad boxes.
    """
    path = Path(path)
    info = read_info_pickle(path)
    if not isinstance(info, dict) or not isinstance(info.get("data_list"), list):
        raise DataError(f"{path}: expected an mmdetection3d v1.x info dict with a 'data_list'")
    items = info["data_list"]
    if not -len(items) <= sample < len(items):
        raise DataError(f"{path}: sample {sample} out of range (the file holds {len(items)})")
    item = _dict(items[sample], path, f"data_list[{sample}]")
    meta = _dict(info.get("metainfo"), path, "metainfo")
    lidar = _dict(item.get("lidar_points"), path, f"data_list[{sample}].lidar_points")
    instances = item.get("instances") or []
    if not isinstance(instances, list):
        raise DataError(f"{path}: data_list[{sample}].instances must be a list")
    raw = []
    for i, ins in enumerate(instances):
        ins = _dict(ins, path, f"instance {i}")
        try:
            b = np.asarray(ins.get("bbox_3d", ()), dtype=np.float64)
        except (TypeError, ValueError):
            b = np.zeros(0)
        if b.shape != (7,) or not np.isfinite(b).all():
            raise DataError(
                f"{path}: instance {i}: bbox_3d must be 7 finite numbers, got {ins.get('bbox_3d')}"
            )
        raw.append((b, ins))
    raw = [(b, ins) for b, ins in raw if (b[3:6] > 0).all()]
    boxes = np.stack([b for b, _ in raw]) if raw else np.zeros((0, 7))
    labels = _ints([ins for _, ins in raw], "bbox_label_3d", path)
    counts = _ints([ins for _, ins in raw], "num_lidar_pts", path)
    dataset = str(meta.get("DATASET", meta.get("dataset", ""))).lower()
    if dataset == "kitti" or "Tr_velo_to_cam" in lidar:
        images = _dict(item.get("images"), path, f"data_list[{sample}].images")
        if "R0_rect" not in images or "Tr_velo_to_cam" not in lidar:
            raise DataError(
                f"{path}: a KITTI info needs images.R0_rect and lidar_points.Tr_velo_to_cam"
            )
        rect = _matrix(images["R0_rect"], path, "R0_rect")
        velo_to_cam = _matrix(lidar["Tr_velo_to_cam"], path, "Tr_velo_to_cam")
        lidar_to_cam = rect @ velo_to_cam
        if np.linalg.cond(lidar_to_cam) > 1e12:
            raise DataError(
                f"{path}: R0_rect @ Tr_velo_to_cam is singular: no camera-to-LiDAR transform"
            )
        cam_to_lidar = np.linalg.inv(lidar_to_cam)
        centre = np.c_[boxes[:, :3], np.ones(len(boxes))] @ cam_to_lidar.T
        out = np.c_[
            centre[:, :3], boxes[:, 3], boxes[:, 5], boxes[:, 4], _wrap(-boxes[:, 6] - math.pi / 2)
        ]
        names, dataset = KITTI_CLASSES, "kitti"
    elif dataset == "nuscenes":
        cats = meta.get("categories")
        if not isinstance(cats, dict) or sorted(cats.values()) != list(range(len(cats))):
            raise DataError(f"{path}: a nuScenes info needs metainfo.categories {{name: 0..K-1}}")
        names = tuple(sorted(cats, key=cats.get))
        out = boxes.copy()
        out[:, 2] -= out[:, 5] / 2  # gravity centre -> bottom centre
        out[:, 6] = _wrap(out[:, 6])
    else:
        raise DataError(
            f"{path}: unknown info layout (metainfo {sorted(meta)}): expected KITTI or nuScenes"
        )
    bad = (labels < -1) | (labels >= len(names))
    if bad.any():
        raise DataError(
            f"{path}: bbox_label_3d {int(labels[bad][0])} is not in -1..{len(names) - 1}"
        )
    return SceneBoxes(
        out.astype(np.float64), labels, names, counts, dataset, str(lidar.get("lidar_path", ""))
    )
