"""Exponential-decay time surface, global variant, read at the end of the window."""

from __future__ import annotations

import torch
from torch import nn

from visrep.errors import ShapeError
from visrep.events.representations._common import (
    check_batch,
    check_positive,
    flat_index,
    per_sample,
    unpack,
)
from visrep.events.representations.registry import REPRESENTATIONS
from visrep.events.types import EventBatch

__all__ = ["TimeSurface", "to_time_surface"]


def to_time_surface(
    batch: EventBatch,
    tau: float,
    t_ref: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Exponentially decayed time of the last event per pixel and polarity.

    ``S_b(p, y, x) = exp(-(t_ref_b - T_b(p, y, x)) / tau)`` where ``T`` is the time of the last
    event at that pixel and polarity with ``t <= t_ref``, and ``S = 0`` where there is none.
    This is the global surface of the whole sensor at one instant, as in tonic's
    ``ToTimesurface``. HOTS (Lagorce et al. 2016, Eq. 3) instead builds, for every event ``e_i``,
    a *local* surface on a ``(2R + 1)^2`` patch around ``x_i`` at ``t_i``: the same kernel
    evaluated on the memory ``T`` at that moment; :func:`~visrep.events.representations.to_hats`
    averages such local surfaces per cell.

    Args:
        batch: The events.
        tau: Decay constant in microseconds.
        t_ref: ``(B,)`` int64 reference times; default each sample's last timestamp. Events
            after ``t_ref`` are ignored.
        dtype: Output dtype.

    Shape:
        ``(B, 2, H, W)``, values in ``[0, 1]``.
    """
    batch = check_batch(batch)
    tau = check_positive(tau, "tau")
    W, H = batch.sensor_size
    B = len(batch)
    idx = flat_index(batch, batch.p, 2)
    if t_ref is None:
        delta = batch.t - per_sample(batch, unpack(batch).t_last)
    elif not isinstance(t_ref, torch.Tensor) or tuple(t_ref.shape) != (B,):
        got = tuple(t_ref.shape) if isinstance(t_ref, torch.Tensor) else type(t_ref).__name__
        raise ShapeError(f"t_ref must be a ({B},) tensor, got {got}")
    else:
        delta = batch.t - per_sample(batch, t_ref.to(device=batch.device, dtype=torch.int64))
        keep = delta <= 0  # events after t_ref do not count
        idx, delta = idx[keep], delta[keep]
    last = torch.full((B * 2 * H * W,), float("-inf"), dtype=dtype, device=batch.device)
    last.scatter_reduce_(0, idx, delta.to(dtype), reduce="amax", include_self=True)
    return torch.exp(last / tau).view(B, 2, H, W)


@REPRESENTATIONS.register(name="timesurface")
class TimeSurface(nn.Module):
    """Module form of :func:`to_time_surface` (reference time: each sample's last event)."""

    def __init__(self, tau: float = 50_000.0) -> None:
        super().__init__()
        self.tau = check_positive(tau, "tau")
        self.out_channels = 2

    def forward(self, batch: EventBatch) -> torch.Tensor:
        return to_time_surface(batch, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
