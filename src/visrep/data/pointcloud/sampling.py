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

import torch
from torch import Tensor

from visrep.errors import ConfigError, ShapeError

__all__ = ["farthest_point_sample", "gather_points"]


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
        far = torch.as_tensor(start, dtype=torch.int64, device=dev).reshape(-1).expand(b).clone()
        if far.numel() != b or bool(((far < 0) | (far >= n)).any()):
            raise ConfigError(
                f"farthest_point_sample: start must be in [0, {n}) for each of {b} clouds, got {start!r}"
            )
    xyz = xyz.contiguous()
    idx = torch.empty(b, k, dtype=torch.int64, device=dev)
    mind = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=dev)
    diff = torch.empty_like(xyz)
    dist = torch.empty_like(mind)
    rows = torch.arange(b, device=dev)
    for j in range(k):
        idx[:, j] = far
        torch.sub(xyz, xyz[rows, far].unsqueeze(1), out=diff)
        torch.sum(diff.square_(), dim=-1, out=dist)
        torch.minimum(mind, dist, out=mind)
        mind[rows, far] = -1.0  # chosen: never picked again (duplicates keep indices distinct)
        far = mind.argmax(dim=-1)
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
