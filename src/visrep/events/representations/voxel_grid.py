"""Voxel grid with bilinear weighting in time (Zhu et al. 2019, "Unsupervised event-based
learning of optical flow, depth, and egomotion", Eq. 2)."""

from __future__ import annotations

import torch
from torch import nn

from visrep.events.representations._common import check_batch, check_int, unpack
from visrep.events.representations.registry import REPRESENTATIONS
from visrep.events.types import EventBatch

__all__ = ["VoxelGrid", "to_voxel_grid"]


def to_voxel_grid(batch: EventBatch, bins: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Signed event volume with linear interpolation between the two nearest time bins.

    ``t*_i = (bins - 1) (t_i - t_first) / (t_last - t_first)`` and
    ``V(k, y, x) = sum_i p_i max(0, 1 - |k - t*_i|)`` over events at ``(x, y)``, with polarity
    ``p_i`` in {-1, +1}: the first event lands in bin 0 and the last in bin ``bins - 1``.
    (tonic 1.7 scales by ``bins`` instead, so its last event falls off the grid; see the tests.)

    Args:
        batch: The events.
        bins: Number of time bins ``>= 1``.
        dtype: Output dtype.

    Shape:
        ``(B, bins, H, W)``.
    """
    batch = check_batch(batch)
    bins = check_int(bins, "bins")
    W, H = batch.sensor_size
    B = len(batch)
    e = unpack(batch)
    ts = (bins - 1) * (e.rel.to(dtype) / e.dur.clamp(min=1).to(dtype))
    left = ts.floor()
    w_right = ts - left
    k = left.long()
    pol = (2 * e.p - 1).to(dtype)
    idx = e.flat_index(k, bins)
    out = torch.zeros(B * bins * H * W, dtype=dtype, device=batch.device)
    out.index_add_(0, idx, pol * (1 - w_right))
    # the right neighbour bin; events in the last bin have weight 0 there, so clamp, not mask
    idx_r = torch.where(k + 1 < bins, idx + H * W, idx)
    out.index_add_(0, idx_r, torch.where(k + 1 < bins, pol * w_right, 0.0))
    return out.view(B, bins, H, W)


@REPRESENTATIONS.register(name="voxel")
class VoxelGrid(nn.Module):
    """Module form of :func:`to_voxel_grid`."""

    def __init__(self, bins: int = 5) -> None:
        super().__init__()
        self.bins = check_int(bins, "bins")
        self.out_channels = self.bins

    def forward(self, batch: EventBatch) -> torch.Tensor:
        return to_voxel_grid(batch, self.bins)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"
