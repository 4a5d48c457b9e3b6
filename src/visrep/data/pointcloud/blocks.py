"""Large scans cut into blocks, PointNet's recipe for scene segmentation (Qi et al. 2017, sec. 5.1,
"Semantic Segmentation in Scenes": rooms split into 1 m x 1 m blocks, 4096 points sampled per
block on the fly for training, every point at test time).

:func:`grid_blocks` is the authors' ``room2blocks`` grid: square ``size x size`` windows in the
x-y plane, starting at the scan's minimum every ``stride`` (their data uses size 1, stride 0.5),
as many as needed to reach its maximum. Each window is half-open ``[start, start + size)``
except the last one per axis, which also keeps its upper edge, so with ``stride == size`` the
blocks partition the points: every point in exactly one block.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from visrep.errors import ConfigError, ShapeError

__all__ = ["chunk_indices", "grid_blocks"]


def _axis_members(
    rel: np.ndarray, size: float, stride: float, count: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per offset ``k``: the window index ``m`` of each coordinate and whether it is in it."""
    if stride == size:  # a partition: one window per point, exact whatever the rounding
        return [
            (
                np.minimum(np.floor(rel / stride).astype(np.int64), count - 1),
                np.ones(len(rel), bool),
            )
        ]
    first = np.minimum(np.floor(rel / stride).astype(np.int64), count - 1)
    out = []
    for k in range(math.ceil(size / stride) + 1):
        m = first - k
        off = rel - m * stride
        ok = (m >= 0) & (off >= 0) & ((off < size) | ((m == count - 1) & (off <= size)))
        out.append((m, ok))
    return out


def grid_blocks(
    xy: np.ndarray, size: float, stride: float, min_points: int = 1
) -> tuple[list[np.ndarray], np.ndarray]:
    """The points of each block of a square grid over ``xy``.

    Args:
        xy: ``(N, >=2)`` coordinates (columns 0, 1 used).
        size: the block's side.
        stride: the distance between block starts (``<= size``; ``== size`` partitions).
        min_points: blocks with fewer points are left out (the authors' ``room2blocks``: 100).

    Returns:
        ``(indices, origins)``: one sorted int64 index array per non-empty block (blocks in
        x-major order) and ``(K, 2)`` their lower corners.

    >>> idx, org = grid_blocks(np.array([[0.0, 0], [0.5, 0.2], [1.5, 0], [2.0, 1.0]]), 1.0, 1.0)
    >>> [i.tolist() for i in idx], org.tolist()
    ([[0, 1], [2, 3]], [[0.0, 0.0], [1.0, 0.0]])
    """
    p = np.asarray(xy, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not len(p):
        raise ShapeError(f"grid_blocks: points must be a non-empty (N, >=2) array, got {p.shape}")
    if not (math.isfinite(size) and size > 0 and 0 < stride <= size):
        raise ConfigError(f"block size must be > 0 and stride in (0, size], got {size}, {stride}")
    lo = p[:, :2].min(0)
    rel = p[:, :2] - lo
    counts = np.maximum(np.ceil((rel.max(0) - size) / stride).astype(np.int64), 0) + 1
    xs = _axis_members(rel[:, 0], size, stride, int(counts[0]))
    ys = _axis_members(rel[:, 1], size, stride, int(counts[1]))
    point, block = [], []
    arange = np.arange(len(p))
    for mx, okx in xs:
        for my, oky in ys:
            ok = okx & oky
            point.append(arange[ok])
            block.append(mx[ok] * counts[1] + my[ok])
    point_all, block_all = np.concatenate(point), np.concatenate(block)
    order = np.lexsort((point_all, block_all))
    point_all, block_all = point_all[order], block_all[order]
    ids, starts, sizes = np.unique(block_all, return_index=True, return_counts=True)
    keep = sizes >= min_points
    indices = [point_all[s : s + n] for s, n in zip(starts[keep], sizes[keep], strict=True)]
    ids = ids[keep]
    origins = lo + np.stack([ids // counts[1], ids % counts[1]], 1) * stride
    return indices, origins.reshape(-1, 2)


def chunk_indices(
    n: int, max_points: int, generator: torch.Generator | None = None
) -> list[np.ndarray]:
    """``range(n)`` cut into ``ceil(n / max_points)`` random parts of nearly equal size (each
    point in exactly one part; each part sorted), so a block of any size is evaluated on every
    one of its points in pieces the network takes.

    >>> sorted(np.concatenate(chunk_indices(10, 4, torch.Generator().manual_seed(0))).tolist())
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    if max_points < 1:
        raise ConfigError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return [np.arange(n)]
    perm = torch.randperm(n, generator=generator).numpy()
    return [np.sort(c) for c in np.array_split(perm, math.ceil(n / max_points))]
