"""Point sampling: farthest-point sampling in torch, batched over clouds.

Farthest-point sampling (FPS) is the sampling layer of PointNet++ (Qi et al. 2017b, sec. 3.2):
given already chosen points ``{x_i1, ..., x_i(j-1)}``, choose ``x_ij`` as the point most distant
from that set, ``i_j = argmax_n min_{l<j} ||x_n - x_il||^2``. Kept as a running minimum of squared
distances, one step costs O(B N); the loop runs over the ``k`` picks only, never over clouds or
points.

>>> pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0.1, 0, 0], [5, 0, 0]])
>>> farthest_point_sample(pts, 3).tolist()
[0, 3, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "farthest_point_sample",
    "gather_points",
    "sample_mesh_surface",
    "surface_samples",
    "triangulate_fan",
]


def farthest_point_sample(points: Tensor, k: int, start: Tensor | int | None = None) -> Tensor:
    """Indices of ``k`` points chosen by farthest-point sampling (PointNet++, sec. 3.2).

    Each pick is the point whose squared distance to the nearest already-chosen point is
    largest (ties: the lowest index); chosen points are excluded, so the indices are distinct
    even when the cloud has duplicate points.

    Args:
        points: ``(B, N, D)`` or ``(N, D)`` with ``D >= 3``; columns 0..2 (x, y, z) are used.
        k: number of points to pick, ``1 <= k <= N``.
        start: index of the first pick, an int or a ``(B,)`` tensor; None: index 0 (as the
            PointNet++ reference kernel).

    Returns:
        int64 indices ``(B, k)``, or ``(k,)`` for an unbatched input.

    Shape:
        ``(B, N, D) -> (B, k)``.
    """
    if not isinstance(points, Tensor) or points.dim() not in (2, 3) or points.shape[-1] < 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ShapeError(
            f"farthest_point_sample: points must be (B, N, >=3) or (N, >=3), got {shape}"
        )
    unbatched = points.dim() == 2
    xyz = points[None, :, :3] if unbatched else points[..., :3]
    if not xyz.is_floating_point():
        xyz = xyz.float()
    b, n, _ = xyz.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(f"farthest_point_sample: k must be an int in [1, N={n}], got {k!r}")
    dev = xyz.device
    if start is None:
        far = torch.zeros(b, dtype=torch.int64, device=dev)
    else:
        far = torch.as_tensor(start, dtype=torch.int64, device=dev).reshape(-1)
        far = far.expand(b).clone() if far.numel() == 1 else far
        if far.numel() != b or bool(((far < 0) | (far >= n)).any()):
            raise ConfigError(
                f"farthest_point_sample: start must be in [0, {n}) for each of {b} clouds, got {start!r}"
            )
    # coordinates as (B, 3, N): the distance is then a reduction over a leading axis, ~4x
    # faster on CPU than over a trailing axis of 3
    soa = xyz.transpose(1, 2).contiguous()
    far = far.unsqueeze(1)  # (B, 1)
    mind = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=dev)
    diff = torch.empty_like(soa)
    dist = torch.empty_like(mind)
    picks = []
    for _ in range(k):
        picks.append(far)
        centre = torch.gather(soa, 2, far.unsqueeze(1).expand(b, 3, 1))  # (B, 3, 1)
        torch.sub(soa, centre, out=diff)
        torch.sum(diff.square_(), dim=1, out=dist)
        torch.minimum(mind, dist, out=mind)
        mind.scatter_(1, far, -1.0)  # chosen: never picked again (duplicates stay distinct)
        far = mind.argmax(dim=1, keepdim=True)
    idx = torch.cat(picks, dim=1)
    return idx[0] if unbatched else idx


def gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """Rows of each cloud at ``idx``: ``(B, N, D), (B, k) -> (B, k, D)``; also ``(N, D), (k,)``."""
    if points.dim() == 2 and idx.dim() == 1:
        return points[idx]
    if points.dim() != 3 or idx.dim() != 2 or idx.shape[0] != points.shape[0]:
        raise ShapeError(
            f"gather_points: points (B, N, D) and idx (B, k) expected, got {tuple(points.shape)} "
            f"and {tuple(idx.shape)}"
        )
    return torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


# -- mesh surfaces -------------------------------------------------------------------------------
def triangulate_fan(
    polygons: Sequence[np.ndarray | Tensor], order: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Fan-triangulate polygons: ``(v0, v1, ..., v(k-1)) -> (v0, vj, vj+1)`` for
    ``j = 1 .. k-2``.

    Args:
        polygons: arrays ``(F_k, k)`` of vertex ids, one per polygon size ``k >= 3``.
        order: for each array, the ``(F_k,)`` positions of its polygons in the file; the
            triangles then follow the file's polygon order (None: array by array).

    Returns:
        ``(T, 3)`` int64 triangles, ``T = sum F_k (k - 2)``.

    >>> triangulate_fan([np.array([[0, 1, 2, 3]]), np.array([[4, 5, 6]])], [np.array([1]), np.array([0])]).tolist()
    [[4, 5, 6], [0, 1, 2], [0, 2, 3]]
    """
    out, where = [], []
    for i, poly in enumerate(polygons):
        p = np.asarray(poly, dtype=np.int64)
        if p.ndim != 2 or p.shape[1] < 3:
            raise ShapeError(f"triangulate_fan: polygons must be (F, k >= 3), got {p.shape}")
        j = np.arange(1, p.shape[1] - 1)
        tri = np.stack([np.broadcast_to(p[:, :1], (len(p), len(j))), p[:, j], p[:, j + 1]], axis=-1)
        out.append(tri.reshape(-1, 3))
        if order is not None:
            where.append(np.repeat(np.asarray(order[i], dtype=np.int64), len(j)))
    if not out:
        return np.zeros((0, 3), dtype=np.int64)
    tris = np.concatenate(out)
    return tris if order is None else tris[np.argsort(np.concatenate(where), kind="stable")]


def surface_samples(
    vertices: np.ndarray | Tensor,
    faces: np.ndarray | Tensor,
    n: int,
    generator: torch.Generator | None = None,
    where: str = "mesh",
) -> tuple[Tensor, Tensor]:
    """Triangles and barycentric weights of ``n`` points uniform on a triangle mesh's surface.

    A triangle is drawn with probability proportional to its area (inverse CDF of the
    cumulative areas), and a point in it as ``(1 - sqrt(r1)) A + sqrt(r1) (1 - r2) B +
    sqrt(r1) r2 C`` with ``r1, r2 ~ U[0, 1)`` (Osada et al. 2002, "Shape distributions", sec.
    4.2), which is uniform on the triangle.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(T, 3)`` vertex ids.
        n: number of points.
        generator: random generator (None: torch's global one).
        where: the mesh (its file), for error messages.

    Returns:
        ``(n,)`` int64 triangle ids and ``(n, 3)`` float64 weights of the triangle's corners.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_points must be a positive int, got {n!r}")
    v = torch.as_tensor(
        np.asarray(vertices) if not isinstance(vertices, Tensor) else vertices
    ).double()
    f = torch.as_tensor(np.asarray(faces) if not isinstance(faces, Tensor) else faces).long()
    if v.dim() != 2 or v.shape[1] != 3 or f.dim() != 2 or f.shape[1] != 3:
        raise ShapeError(
            f"{where}: vertices (V, 3) and faces (T, 3) expected, got {tuple(v.shape)} and {tuple(f.shape)}"
        )
    if len(f) == 0:
        raise DataError(f"{where}: the mesh has no faces to sample")
    if f.min() < 0 or f.max() >= len(v):
        raise DataError(
            f"{where}: face vertex ids must be in [0, {len(v)}), got {int(f.min())}..{int(f.max())}"
        )
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=1)
    cdf = torch.cumsum(area, 0)
    total = cdf[-1]
    if not torch.isfinite(total) or total <= 0:
        raise DataError(
            f"{where}: the mesh has no surface area to sample (total area {float(total)})"
        )
    u = torch.rand(n, generator=generator, dtype=torch.float64) * total
    fid = torch.searchsorted(cdf, u, right=True).clamp_(max=len(f) - 1)
    r = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    s1 = r[:, 0].sqrt()
    w = torch.stack([1 - s1, s1 * (1 - r[:, 1]), s1 * r[:, 1]], dim=1)
    return fid, w


def sample_mesh_surface(
    vertices: np.ndarray | Tensor,
    faces: np.ndarray | Tensor,
    n: int,
    generator: torch.Generator | None = None,
    where: str = "mesh",
) -> Tensor:
    """``n`` points drawn uniformly from a mesh surface: area-weighted triangle choice, uniform
    barycentric point (Osada et al. 2002, sec. 4.2) - how PointNet's ModelNet clouds are made
    from the CAD meshes (Qi et al. 2017, sec. 5.1, "uniformly sample 1024 points on mesh faces
    according to face area").

    Args:
        vertices: ``(V, 3)``.
        faces: ``(T, k)`` vertex ids, ``k >= 3``; polygons are fan-triangulated.
        n: number of points.
        generator: random generator (None: torch's global one).
        where: the mesh (its file), for error messages.

    Returns:
        ``(n, 3)`` float32 points.

    >>> v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    >>> p = sample_mesh_surface(v, torch.tensor([[0, 1, 2, 3]]), 500, torch.Generator().manual_seed(0))
    >>> p.shape, bool((p[:, :2] >= 0).all() and (p[:, :2] <= 1).all() and (p[:, 2] == 0).all())
    (torch.Size([500, 3]), True)
    """
    f = np.asarray(faces.cpu() if isinstance(faces, Tensor) else faces)
    if f.ndim == 2 and f.shape[1] > 3:
        f = triangulate_fan([f])
    v = torch.as_tensor(
        np.asarray(vertices) if not isinstance(vertices, Tensor) else vertices.cpu()
    ).double()
    fid, w = surface_samples(v, f, n, generator, where)
    corners = torch.as_tensor(f, dtype=torch.int64)[fid]
    return torch.einsum("nk,nkd->nd", w, v[corners]).float()
