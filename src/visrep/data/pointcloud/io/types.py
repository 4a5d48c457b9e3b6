"""The types the point-cloud readers return: :class:`PointCloud` and :class:`Mesh`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from visrep.errors import DataError, ShapeError

__all__ = ["Mesh", "NonFinite", "PointCloud"]

NonFinite = Literal["error", "drop", "keep"]


@dataclass(frozen=True)
class PointCloud:
    """One point cloud as read from a file.

    Attributes:
        xyz: ``(N, 3)`` float32 coordinates.
        features: ``(N, F)`` float32 per-point features (intensity, normals, colour ...) in
            file order, or None.
        feature_names: the ``F`` feature names.
        labels: ``(N,)`` int64 per-point labels (segmentation), or None.
        label: the shape class of the whole cloud (ModelNet npz), or None.
        meta: ``file``, ``format`` and what else the reader knows (class name, viewpoint ...).
    """

    xyz: np.ndarray
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    labels: np.ndarray | None = None
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ShapeError(f"PointCloud: xyz must be (N, 3), got {xyz.shape}")
        object.__setattr__(self, "xyz", xyz)
        n = len(xyz)
        if self.features is not None:
            f = np.ascontiguousarray(self.features, dtype=np.float32)
            if f.ndim != 2 or len(f) != n or f.shape[1] != len(self.feature_names):
                raise ShapeError(
                    f"PointCloud: features must be ({n}, {len(self.feature_names)}) for "
                    f"feature_names {self.feature_names}, got {f.shape}"
                )
            object.__setattr__(self, "features", f if f.shape[1] else None)
        elif self.feature_names:
            raise ShapeError(f"PointCloud: feature_names {self.feature_names} without features")
        object.__setattr__(
            self, "feature_names", tuple(self.feature_names) if self.features is not None else ()
        )
        if self.labels is not None:
            lab = np.ascontiguousarray(self.labels, dtype=np.int64)
            if lab.shape != (n,):
                raise ShapeError(f"PointCloud: labels must be ({n},), got {lab.shape}")
            object.__setattr__(self, "labels", lab)

    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def points(self) -> np.ndarray:
        """``(N, 3 + F)`` float32: x, y, z, then the features (the ``"points"`` of a sample)."""
        return self.xyz if self.features is None else np.concatenate([self.xyz, self.features], 1)

    @property
    def fields(self) -> tuple[str, ...]:
        """The column names of :attr:`points`."""
        return ("x", "y", "z", *self.feature_names)

    def select(self, idx: np.ndarray) -> PointCloud:
        """The cloud restricted to the points ``idx`` (an index or boolean array)."""
        return PointCloud(
            self.xyz[idx],
            None if self.features is None else self.features[idx],
            self.feature_names,
            None if self.labels is None else self.labels[idx],
            self.label,
            dict(self.meta),
        )

    def to_sample(self) -> dict[str, Any]:
        """A sample dict: ``points`` ``(N, 3 + F)`` float32 tensor, ``point_labels`` and
        ``label`` where present, ``meta``."""
        out: dict[str, Any] = {"points": torch.from_numpy(self.points.copy())}
        if self.labels is not None:
            out["point_labels"] = torch.from_numpy(self.labels.copy())
        if self.label is not None:
            out["label"] = int(self.label)
        out["meta"] = dict(self.meta)
        return out

    def summary(self) -> dict[str, Any]:
        """What ``visrep points info`` prints: count, fields, bounding box, centroid, finite."""
        finite = np.isfinite(self.xyz).all(axis=1)
        good = self.xyz[finite].astype(np.float64)
        out: dict[str, Any] = {
            "format": self.meta.get("format", ""),
            "points": len(self),
            "fields": list(self.fields),
            "non_finite_points": int((~finite).sum()),
        }
        if len(good):
            out["bbox_min"] = good.min(0).tolist()
            out["bbox_max"] = good.max(0).tolist()
            out["centroid"] = good.mean(0).tolist()
        if self.labels is not None:
            values, counts = np.unique(self.labels, return_counts=True)
            out["point_labels"] = dict(zip(values.tolist(), counts.tolist(), strict=True))
        if self.label is not None:
            out["label"] = self.label
        return out


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices (V, 3)`` float64, ``faces (T, 3)`` int64 (polygons
    fan-triangulated), ``polygons`` the number of faces in the file."""

    vertices: np.ndarray
    faces: np.ndarray
    polygons: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def area(self) -> float:
        """The total surface area, the sum of the triangles' ``|AB x AC| / 2``."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def check_finite(cloud: PointCloud, nonfinite: NonFinite, where: str) -> PointCloud:
    """Apply a reader's ``nonfinite`` policy to ``cloud``'s coordinates.

    ``"error"``: :class:`DataError` naming the first point and coordinate; ``"drop"``: the
    points with a NaN or infinite coordinate are removed; ``"keep"``: unchanged.
    """
    if nonfinite not in ("error", "drop", "keep"):
        raise DataError(f"{where}: nonfinite must be 'error', 'drop' or 'keep', got {nonfinite!r}")
    if nonfinite == "keep":
        return cloud
    finite = np.isfinite(cloud.xyz).all(axis=1)
    if finite.all():
        return cloud
    if nonfinite == "drop":
        return cloud.select(finite)
    i = int(np.flatnonzero(~finite)[0])
    axis = "xyz"[int(np.flatnonzero(~np.isfinite(cloud.xyz[i]))[0])]
    lines = cloud.meta.get("_data_lines")  # file line of each point, for text formats
    at = f"line {int(lines[i])}" if lines is not None else f"point {i}"
    raise DataError(
        f"{where}: {at}: non-finite coordinate {axis}={cloud.xyz[i, 'xyz'.index(axis)]} "
        f"({int((~finite).sum())} of {len(finite)} points; nonfinite='drop' removes them)"
    )
