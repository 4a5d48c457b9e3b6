"""Simple surfaces: event counts per polarity (and time bin) and the last-timestamp image.

Both are the "simple surfaces" of the seed's event-representation slides: the number of events
received in each pixel, and the timestamp of the last event in each pixel, per polarity
(Maqueda et al. 2018, event histograms; Zhu et al. 2018, EV-FlowNet, timestamp images).
"""

from __future__ import annotations

import torch
from torch import nn

from visrep.events.representations._common import check_batch, check_int, flat_index, unpack
from visrep.events.representations.registry import REPRESENTATIONS
from visrep.events.types import EventBatch

__all__ = ["EventCount", "LastTimestamp", "to_event_count", "to_last_timestamp"]


def to_event_count(
    batch: EventBatch, bins: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Count events per pixel, polarity and (optionally) equal-duration time bin.

    Sample ``b``'s window ``[t_first, t_last]`` is cut into ``bins`` equal parts; event ``i``
    goes to bin ``floor(bins * (t_i - t_first) / (t_last - t_first))``, clipped to ``bins - 1``
    so the last event counts (integer arithmetic, no rounding).

    Args:
        batch: The events.
        bins: Number of time bins (1 = a plain histogram).
        dtype: Output dtype.

    Returns:
        Counts, channel ``c = p * bins + k`` for polarity ``p`` and time bin ``k``.

    Shape:
        ``(B, 2 * bins, H, W)``.

    >>> from visrep.events import EventBatch, EventStream
    >>> s = EventStream(x=[0, 0, 1], y=[0, 0, 1], t=[0, 1, 2], p=[1, 1, 0], sensor_size=(2, 2))
    >>> to_event_count(EventBatch.from_streams([s]))[0, :, :, :].tolist()
    [[[0.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 0.0]]]
    """
    batch = check_batch(batch)
    bins = check_int(bins, "bins")
    W, H = batch.sensor_size
    B, C = len(batch), 2 * bins
    c = batch.p
    if bins > 1:
        e = unpack(batch)
        k = torch.div(e.rel * bins, e.dur.clamp(min=1), rounding_mode="floor").clamp(max=bins - 1)
        c = e.p * bins + k
    idx = flat_index(batch, c, C)
    ones = torch.ones(len(idx), dtype=dtype, device=batch.device)
    out = torch.zeros(B * C * H * W, dtype=dtype, device=batch.device)
    return out.scatter_add_(0, idx, ones).view(B, C, H, W)


def to_last_timestamp(batch: EventBatch, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised timestamp of the most recent event per pixel and polarity.

    Value ``(t_last_px - t_first) / (t_last - t_first)`` in ``[0, 1]``; pixels without events
    are 0, so an event at ``t_first`` looks like none (as in EV-FlowNet's timestamp image).

    Shape:
        ``(B, 2, H, W)``.
    """
    batch = check_batch(batch)
    W, H = batch.sensor_size
    B = len(batch)
    e = unpack(batch)
    tn = e.rel.to(dtype) / e.dur.clamp(min=1).to(dtype)
    idx = flat_index(batch, batch.p, 2)
    out = torch.zeros(B * 2 * H * W, dtype=dtype, device=batch.device)
    out.scatter_reduce_(0, idx, tn, reduce="amax", include_self=True)
    return out.view(B, 2, H, W)


@REPRESENTATIONS.register(name="count")
class EventCount(nn.Module):
    """Module form of :func:`to_event_count`."""

    def __init__(self, bins: int = 1) -> None:
        super().__init__()
        self.bins = check_int(bins, "bins")
        self.out_channels = 2 * self.bins

    def forward(self, batch: EventBatch) -> torch.Tensor:
        return to_event_count(batch, self.bins)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


@REPRESENTATIONS.register(name="last_timestamp")
class LastTimestamp(nn.Module):
    """Module form of :func:`to_last_timestamp` (no options)."""

    out_channels = 2

    def __init__(self) -> None:
        super().__init__()

    def forward(self, batch: EventBatch) -> torch.Tensor:
        return to_last_timestamp(batch)
