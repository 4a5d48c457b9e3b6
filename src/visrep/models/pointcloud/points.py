"""Batches of point sets for order-invariant networks: stacked when the clouds have one size,
packed (all points in one ``(M, C)`` tensor with a cloud index per point) when they do not.

PointNet's layers act per point (shared MLPs), per cloud (max pool) or per cloud and point (the
T-Nets' ``x A``), so neither layout needs padding for the per-point work; only the batched matrix
product of the feature transform pads, internally, and drops the padding again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from visrep.errors import ShapeError

__all__ = ["PointBatch", "as_point_batch"]


@dataclass(frozen=True)
class PointBatch:
    """Point features of ``B`` clouds.

    Attributes:
        x: ``(B, N, C)`` when ``counts`` is None (every cloud has ``N`` points), else the packed
            ``(M, C)`` features of all points, cloud after cloud (``M = sum(counts)``).
        counts: ``(B,)`` points per cloud of a packed batch, or None.
    """

    x: Tensor
    counts: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.x.shape[0] if self.counts is None else len(self.counts)

    def cloud_index(self) -> Tensor:
        """The cloud of each packed point, ``(M,)`` int64."""
        assert self.counts is not None
        return torch.repeat_interleave(
            torch.arange(len(self.counts), device=self.x.device), self.counts
        )

    def with_features(self, x: Tensor) -> PointBatch:
        """The same clouds with new per-point features (same leading dimensions)."""
        return PointBatch(x, self.counts)

    def max_pool(self) -> tuple[Tensor, Tensor]:
        """Per-cloud channel-wise max and the index of the point that attains it.

        Returns:
            ``(values (B, C), argmax (B, C))``; for packed batches the index counts from the
            start of the cloud. Ties pick the first point, as ``torch.max`` does.
        """
        if self.counts is None:
            return self.x.max(1)
        b, c = len(self.counts), self.x.shape[1]
        idx = self.cloud_index()
        values = self.x.new_full((b, c), float("-inf")).scatter_reduce(
            0, idx[:, None].expand(-1, c), self.x, "amax", include_self=True
        )
        # the first point of each cloud that attains the maximum (matches torch.max's ties)
        starts = torch.cumsum(self.counts, 0) - self.counts
        local = torch.arange(len(idx), device=idx.device) - starts[idx]
        hit = self.x == values[idx]
        big = torch.iinfo(torch.int64).max
        cand = torch.where(hit, local[:, None], torch.full_like(local[:, None], big))
        arg = torch.full((b, c), big, dtype=torch.int64, device=idx.device)
        arg = arg.scatter_reduce(0, idx[:, None].expand(-1, c), cand, "amin", include_self=True)
        return values, arg

    def transform(self, a: Tensor) -> PointBatch:
        """Multiply each cloud's points by its own matrix: ``x_i A_i``, ``a`` of ``(B, C, C')``."""
        if self.counts is None:
            return PointBatch(torch.bmm(self.x, a), None)
        sizes = self.counts.tolist()
        padded = pad_sequence(list(torch.split(self.x, sizes)), batch_first=True)
        keep = torch.arange(padded.shape[1], device=a.device) < self.counts[:, None]
        return PointBatch(torch.bmm(padded, a)[keep], self.counts)

    def broadcast(self, g: Tensor) -> Tensor:
        """A per-cloud ``(B, C)`` tensor repeated for each point, shaped like ``x``'s leading dims."""
        if self.counts is None:
            return g[:, None, :].expand(-1, self.x.shape[1], -1)
        return g[self.cloud_index()]


def as_point_batch(points: Tensor | Sequence[Tensor], point_dim: int | None = None) -> PointBatch:
    """A :class:`PointBatch` from a ``(B, N, D)`` tensor or a list of ``(N_i, D)`` clouds.

    Lists of clouds that all have one size are stacked; otherwise they are packed.

    Raises:
        ShapeError: not ``(B, N, D)`` / ``(N_i, D)`` clouds, mixed ``D``, a cloud with no point,
            or ``D != point_dim`` when given.

    >>> as_point_batch([torch.zeros(5, 3), torch.zeros(5, 3)]).x.shape
    torch.Size([2, 5, 3])
    >>> pb = as_point_batch([torch.zeros(5, 3), torch.zeros(2, 3)])
    >>> pb.x.shape, pb.counts.tolist()
    (torch.Size([7, 3]), [5, 2])
    """
    if isinstance(points, Tensor):
        if points.dim() != 3 or points.shape[1] == 0:
            raise ShapeError(f"points must be (B, N, D) with N >= 1, got {tuple(points.shape)}")
        batch = PointBatch(points)
    else:
        clouds = list(points)
        if not clouds or any(not isinstance(p, Tensor) or p.dim() != 2 for p in clouds):
            raise ShapeError("points must be a non-empty list of (N_i, D) tensors")
        dims = {p.shape[1] for p in clouds}
        sizes = [p.shape[0] for p in clouds]
        if len(dims) != 1 or min(sizes) == 0:
            raise ShapeError(
                f"point clouds of one batch need one dimension D and >= 1 point each, got "
                f"D in {sorted(dims)} and sizes {min(sizes)}..{max(sizes)}"
            )
        if len(set(sizes)) == 1:
            batch = PointBatch(torch.stack(clouds))
        else:
            counts = torch.tensor(sizes, dtype=torch.int64, device=clouds[0].device)
            batch = PointBatch(torch.cat(clouds), counts)
    d = batch.x.shape[-1]
    if point_dim is not None and d != point_dim:
        raise ShapeError(f"the model reads points of dimension {point_dim}, got {d}")
    return batch
