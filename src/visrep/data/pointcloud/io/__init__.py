"""Point-cloud readers, one module per format, all vectorised numpy.

:func:`read_points` picks the reader from the file's suffix and passes its options on.

=================  ==================================================  =========================
suffix             format                                              reader
=================  ==================================================  =========================
``.pcd``           PCD v0.7: ascii, binary, binary_compressed (LZF)    :func:`read_pcd`
``.ply``           PLY: ascii, binary little / big endian              :func:`read_ply`
``.off``           OFF mesh, sampled to ``num_points`` on its surface  :func:`read_off_points`
``.bin``           KITTI (4 float32 columns) / nuScenes (5) scans      :func:`read_scan_bin`
``.npy``           ``(N, D)`` array, or ``(S, N, D)`` with ``index``   :func:`read_npy`
``.npz``           one cloud (``points``), or a ModelNet-layout set    :func:`read_npz`
=================  ==================================================  =========================

Every reader returns a :class:`PointCloud` (``xyz (N, 3)``, ``features (N, F)``,
``feature_names``, ``labels (N,)``) and raises :class:`~visrep.errors.DataError` with one line
naming the file and the line or field for bad input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visrep.data.pointcloud.io.arrays import (
    NpzArchive,
    describe_npz,
    npz_splits,
    read_npy,
    read_npz,
)
from visrep.data.pointcloud.io.lzf import lzf_decompress
from visrep.data.pointcloud.io.off import read_off, read_off_points
from visrep.data.pointcloud.io.pcd import read_pcd
from visrep.data.pointcloud.io.ply import read_ply, read_ply_mesh
from visrep.data.pointcloud.io.scan import SCAN_COLUMNS, read_scan_bin
from visrep.data.pointcloud.io.types import Mesh, NonFinite, PointCloud
from visrep.errors import ConfigError, DataError

__all__ = [
    "READERS",
    "SCAN_COLUMNS",
    "Mesh",
    "NonFinite",
    "NpzArchive",
    "PointCloud",
    "describe_npz",
    "lzf_decompress",
    "npz_splits",
    "point_suffix",
    "read_npy",
    "read_npz",
    "read_off",
    "read_off_points",
    "read_pcd",
    "read_ply",
    "read_ply_mesh",
    "read_points",
    "read_scan_bin",
]

READERS: dict[str, Callable[..., PointCloud]] = {
    ".pcd": read_pcd,
    ".ply": read_ply,
    ".off": read_off_points,
    ".bin": read_scan_bin,
    ".npy": read_npy,
    ".npz": read_npz,
}


def point_suffix(path: str | Path) -> str:
    """The suffix that picks the reader (lower case; ``.pcd.bin`` is a ``.bin`` scan)."""
    return Path(path).suffix.lower()


def read_points(path: str | Path, **options: Any) -> PointCloud:
    """Read a point cloud in any supported format, chosen by the file's suffix.

    Args:
        path: the file.
        **options: options of that format's reader (``nonfinite`` for all; ``label_field``,
            ``num_points``, ``generator``, ``columns``, ``index``, ``split`` where they apply).

    Raises:
        DataError: a missing file, an unknown suffix, or a bad file.
        ConfigError: an option the format's reader does not take.
    """
    path = Path(path)
    reader = READERS.get(point_suffix(path))
    if reader is None:
        raise DataError(
            f"{path}: unknown point-cloud format {path.suffix!r}, expected one of {', '.join(READERS)}"
        )
    params = list(inspect.signature(reader).parameters)[1:]
    for key in options:
        if key not in params:
            raise ConfigError(
                f"read_points: option {key!r} does not apply to {point_suffix(path)} files "
                f"(options: {', '.join(params)})"
            )
    return reader(path, **options)
