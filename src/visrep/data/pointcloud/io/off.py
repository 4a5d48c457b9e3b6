"""OFF meshes (Object File Format; the original ModelNet and Princeton Shape Benchmark files).

``OFF`` on the first line, then ``V F E`` (some ModelNet files run them on: ``OFF490 518 0``),
``V`` vertex lines ``x y z``, ``F`` face lines ``k i1 ... ik`` (anything after the ``k`` ids,
such as a colour, is ignored). ``COFF`` / ``NOFF`` / ``CNOFF`` vertex lines carry colour or
normals after x, y, z (ignored); ``#`` starts a comment. Polygons are fan-triangulated; a point
cloud is sampled from the surface with :func:`~visrep.data.pointcloud.sampling.sample_mesh_surface`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from visrep.data.pointcloud.io._text import text_rows
from visrep.data.pointcloud.io.types import Mesh, NonFinite, PointCloud, check_finite
from visrep.data.pointcloud.sampling import sample_mesh_surface, triangulate_fan
from visrep.errors import DataError

__all__ = ["read_off", "read_off_points"]

_MAGIC = re.compile(rb"^\s*(C?N?OFF)(?=\s|\d|$)")


def read_off(path: str | Path) -> Mesh:
    """Read an OFF mesh; polygons are fan-triangulated.

    Raises:
        DataError: no ``OFF`` line, bad counts, fewer vertex / face lines than declared, a
            face with fewer than 3 vertices or an out-of-range vertex id, non-finite vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such OFF file")
    data = path.read_bytes()
    m = _MAGIC.match(data)
    if m is None:
        head = data[:20].split(b"\n", 1)[0].decode("latin-1")
        raise DataError(f"{path}: line 1: not an OFF file (expected 'OFF', got {head!r})")
    if b"BINARY" in data[m.end() : m.end() + 16].split(b"\n", 1)[0].upper():
        raise DataError(f"{path}: line 1: binary OFF is not supported (expected ASCII OFF)")
    first_line = data.count(b"\n", 0, m.start()) + 1
    rows = text_rows(data[m.end() :], str(path), first_line, comments=True)
    if not len(rows) or rows.length[0] < 2:
        raise DataError(
            f"{path}: line {first_line + 1 if not len(rows) else int(rows.line[0])}: expected the counts 'V F E'"
        )
    cnt = rows.values[rows.start[0] : rows.start[0] + min(int(rows.length[0]), 3)]
    if (cnt != np.round(cnt)).any() or (cnt < 0).any():
        raise DataError(
            f"{path}: line {int(rows.line[0])}: counts must be integers >= 0, got {cnt.tolist()}"
        )
    nv, nf = int(cnt[0]), int(cnt[1])
    if len(rows) < 1 + nv:
        raise DataError(
            f"{path}: fewer vertices than declared: {nv} declared, {len(rows) - 1} vertex lines"
        )
    if len(rows) < 1 + nv + nf:
        raise DataError(
            f"{path}: fewer faces than declared: {nf} declared, {len(rows) - 1 - nv} face lines"
        )
    vl = slice(1, 1 + nv)
    short = np.flatnonzero(rows.length[vl] < 3)
    if short.size:
        i = 1 + int(short[0])
        raise DataError(
            f"{path}: line {int(rows.line[i])}: vertex line has {int(rows.length[i])} values, expected 3"
        )
    vertices = rows.values[rows.start[vl, None] + np.arange(3)]
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        i = 1 + int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {int(rows.line[i])}: non-finite vertex coordinate")
    fl = slice(1 + nv, 1 + nv + nf)
    start, length = rows.start[fl], rows.length[fl]
    k = rows.values[start]
    bad = (k != np.round(k)) | (k < 3) | (length < 1 + k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = (
            f"has {int(length[i]) - 1} vertex ids for {k[i]:g} vertices"
            if k[i] >= 3 and k[i] == round(k[i])
            else f"a face needs at least 3 vertices, got {k[i]:g}"
        )
        raise DataError(f"{path}: line {int(rows.line[1 + nv + i])}: {what}")
    k = k.astype(np.int64)
    polygons, order = [], []
    for size in np.unique(k):
        sel = np.flatnonzero(k == size)
        ids = rows.values[start[sel, None] + 1 + np.arange(size)]
        out = (ids != np.round(ids)) | (ids < 0) | (ids >= nv)
        if out.any():
            r = int(np.flatnonzero(out.any(axis=1))[0])
            raise DataError(
                f"{path}: line {int(rows.line[1 + nv + sel[r]])}: vertex id {ids[r][out[r]][0]:g} "
                f"is not in [0, {nv})"
            )
        polygons.append(ids.astype(np.int64))
        order.append(sel)
    faces = triangulate_fan(polygons, order)
    return Mesh(vertices, faces, nf, {"file": str(path), "format": f"off ({m.group(1).decode()})"})


def read_off_points(
    path: str | Path,
    num_points: int = 1024,
    generator: torch.Generator | None = None,
    nonfinite: NonFinite = "error",
) -> PointCloud:
    """``num_points`` points sampled uniformly from the surface of an OFF mesh (area-weighted
    triangle, uniform barycentric point; PointNet's ModelNet sampling, Qi et al. 2017, sec. 5.1).

    Args:
        path: the ``.off`` file.
        num_points: number of points.
        generator: random generator of the sampling (None: torch's global one).
        nonfinite: kept for a uniform reader interface; vertices are always checked.
    """
    mesh = read_off(path)
    pts = sample_mesh_surface(mesh.vertices, mesh.faces, num_points, generator, str(path))
    meta = dict(mesh.meta, sampled_from=f"{len(mesh.faces)} triangles")
    return check_finite(PointCloud(pts.numpy(), meta=meta), nonfinite, str(path))
