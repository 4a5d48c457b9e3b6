"""Voxel grid with bilinear weighting in time (Zhu et al. 2019, "Unsupervised event-based
learning of optical flow, depth, and egomotion", Eq. 2)."""

from __future__ import annotations

import torch
from torch import nn

from visrep.events.representations._common import (
    check_batch,
    check_int,
    flat_index,
    per_sample,
    unpack,
)
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
    rel = (batch.t - per_sample(batch, e.t_first)).to(dtype)
    scale = (bins - 1) / (e.t_last - e.t_first).clamp(min=1).to(dtype)  # (B,)
    ts = rel * per_sample(batch, scale)
    pol = batch.p.to(dtype) * 2 - 1
    out = torch.zeros(B * bins * H * W, dtype=dtype, device=batch.device)
    if bins == 1:
        return out.scatter_add_(0, flat_index(batch, None, 1), pol).view(B, bins, H, W)
    # left bin k = floor(t*) except the last event's (t* = bins - 1), which takes k = bins - 2
    # with right weight 1: every event then has both neighbours on the grid, no masking
    k = ts.floor().clamp_(max=bins - 2)
    w_right = pol * (ts - k)
    idx = flat_index(batch, k.to(torch.int32), bins)
    out.scatter_add_(0, idx, pol - w_right)
    out.scatter_add_(0, idx.add_(H * W), w_right)
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
