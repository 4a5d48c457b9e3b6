"""LiDAR scans as raw float32 records: KITTI velodyne ``.bin`` (x, y, z, reflectance) and
nuScenes ``.pcd.bin`` (x, y, z, intensity, ring index); also the ScanNet / SUN RGB-D ``.bin``
of mmdetection3d (x, y, z, r, g, b) with ``columns=6``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visrep.data.pointcloud.io.types import NonFinite, PointCloud, check_finite
from visrep.errors import DataError

__all__ = ["SCAN_COLUMNS", "read_scan_bin"]

SCAN_COLUMNS: dict[int, tuple[str, ...]] = {
    3: ("x", "y", "z"),
    4: ("x", "y", "z", "reflectance"),  # KITTI velodyne
    5: ("x", "y", "z", "intensity", "ring"),  # nuScenes LIDAR_TOP
    6: ("x", "y", "z", "r", "g", "b"),  # ScanNet / SUN RGB-D (mmdetection3d)
}


def _default_columns(path: Path) -> int:
    name = path.name.lower()
    return 5 if name.endswith(".pcd.bin") or "lidar_top" in name else 4


def read_scan_bin(
    path: str | Path,
    columns: int | Sequence[str] | None = None,
    label_field: str | None = "label",
    nonfinite: NonFinite = "error",
) -> PointCloud:
    """Read a scan stored as little-endian float32 records of ``D`` columns.

    Args:
        path: the ``.bin`` file.
        columns: the number of float32 columns (names from :data:`SCAN_COLUMNS`, else
            ``f3, f4 ...``) or their names (x, y, z first); None: 5 for nuScenes files
            (``*.pcd.bin`` or ``LIDAR_TOP`` in the name), else 4 (KITTI).
        label_field: a column of that name becomes the per-point labels.
        nonfinite: points with a NaN / infinite coordinate: ``"error"``, ``"drop"``, ``"keep"``.

    Raises:
        DataError: a file size that is not a multiple of ``D * 4`` bytes (wrong column count),
            non-finite coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such scan file")
    if columns is None:
        columns = _default_columns(path)
    if isinstance(columns, int) and not isinstance(columns, bool):
        if columns < 3:
            raise DataError(f"{path}: columns must be >= 3 (x, y, z first), got {columns}")
        names = SCAN_COLUMNS.get(columns, ("x", "y", "z", *(f"f{i}" for i in range(3, columns))))
    else:
        names = tuple(str(c) for c in columns)
        if names[:3] != ("x", "y", "z") or len(set(names)) != len(names):
            raise DataError(f"{path}: columns must be distinct names starting x, y, z, got {names}")
    d = len(names)
    size = path.stat().st_size
    if size == 0 or size % (4 * d):
        others = [c for c in (4, 5, 6) if c != d and size and size % (4 * c) == 0]
        hint = f"; the size fits columns={' or '.join(map(str, others))}" if others else ""
        raise DataError(
            f"{path}: wrong column count: {size} bytes is not a positive multiple of "
            f"{d} float32 columns ({4 * d} bytes){hint}"
        )
    table = np.fromfile(path, dtype="<f4").reshape(-1, d)
    feat_names = [n for n in names[3:] if n != label_field]
    feats = table[:, [names.index(n) for n in feat_names]] if feat_names else None
    labels = None
    if label_field in names:
        lab = table[:, names.index(label_field)]
        if (lab != np.round(lab)).any():
            raise DataError(f"{path}: column {label_field!r}: per-point labels must be integers")
        labels = lab.astype(np.int64)
    fmt = {4: "kitti bin", 5: "nuscenes bin"}.get(d, "float32 bin")
    meta = {"file": str(path), "format": f"{fmt} ({d} columns)"}
    return check_finite(
        PointCloud(table[:, :3], feats, tuple(feat_names), labels, meta=meta), nonfinite, str(path)
    )
