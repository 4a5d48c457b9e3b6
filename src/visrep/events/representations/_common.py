"""Checks and per-event quantities shared by the representations."""

from __future__ import annotations

from functools import cached_property

import torch

from visrep.errors import ConfigError, ShapeError
from visrep.events.types import EventBatch


def check_batch(batch: object, name: str = "batch") -> EventBatch:
    if not isinstance(batch, EventBatch):
        raise ShapeError(f"{name} must be an EventBatch, got {type(batch).__name__}")
    return batch


def check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def per_sample(batch: EventBatch, values: torch.Tensor) -> torch.Tensor:
    """Spread a ``(B,)`` per-sample tensor to the ``(N,)`` events (a view when ``B == 1``).

    ``repeat_interleave`` of the values themselves: one pass, no int64 sample index first.
    """
    n = batch.num_events
    if len(batch) == 1:
        return values.expand(n)
    return torch.repeat_interleave(values, batch.counts(), output_size=n)


def flat_index(batch: EventBatch, channel: torch.Tensor | None, channels: int) -> torch.Tensor:
    """Index of each event in a flattened ``(B, channels, H, W)`` tensor, int64.

    ``x + W (y + H (channel + channels b))`` is built in int32 whenever the output fits (half
    the memory traffic of int64 and vectorised conversions from the stored int16 / int32 / int8
    columns), with one ``add`` per term and no per-event sample index; the final int64 copy is
    what ``scatter_add_`` / ``scatter_reduce_`` take (their CPU kernels are several times
    faster than ``index_add_`` or ``bincount``; ``benchmarks/events.py``).
    """
    W, H = batch.sensor_size
    B = len(batch)
    dt = torch.int32 if B * channels * H * W < 2**31 else torch.int64
    plane = None if channel is None else channel.to(dt)
    if B > 1:
        start = torch.arange(0, B * channels, channels, dtype=dt, device=batch.device)
        base = per_sample(batch, start)
        plane = base if plane is None else plane + base
    y = batch.y.to(dt)
    row = y if plane is None else torch.add(y, plane, alpha=H)
    return torch.add(batch.x.to(dt), row, alpha=W).long()


class Events:
    """Per-event int64 views of a batch, computed lazily (only what a representation uses).

    ``rel`` is ``t - t_first`` of the event's sample and ``dur`` that sample's
    ``t_last - t_first``; empty samples get ``t_first = t_last = 0``. Per-sample values are
    spread to events with :func:`per_sample`.
    """

    def __init__(self, batch: EventBatch) -> None:
        self.batch = batch
        n = batch.num_events
        if n:
            first = batch.t.index_select(0, batch.offsets[:-1].clamp(max=n - 1))
            last = batch.t.index_select(0, (batch.offsets[1:] - 1).clamp(min=0))
        else:
            first = last = torch.zeros(len(batch), dtype=torch.int64, device=batch.device)
        nonempty = batch.counts() > 0
        self.t_first = torch.where(nonempty, first, torch.zeros_like(first))
        self.t_last = torch.where(nonempty, last, torch.zeros_like(last))
        self.t = batch.t

    def per_event(self, values: torch.Tensor) -> torch.Tensor:
        """Spread a ``(B,)`` per-sample tensor to the ``(N,)`` events (:func:`per_sample`)."""
        return per_sample(self.batch, values)

    def flat_index(self, channel: torch.Tensor, channels: int) -> torch.Tensor:
        """Index of each event in a flattened ``(B, channels, H, W)`` tensor (:func:`flat_index`)."""
        return flat_index(self.batch, channel, channels)

    @cached_property
    def b(self) -> torch.Tensor:
        return self.batch.batch_index()

    @cached_property
    def x(self) -> torch.Tensor:
        return self.batch.x.long()

    @cached_property
    def y(self) -> torch.Tensor:
        return self.batch.y.long()

    @cached_property
    def p(self) -> torch.Tensor:
        return self.batch.p.long()

    @cached_property
    def rel(self) -> torch.Tensor:
        return self.t - self.per_event(self.t_first)

    @cached_property
    def dur(self) -> torch.Tensor:
        return self.per_event(self.t_last - self.t_first)


def unpack(batch: EventBatch) -> Events:
    """Lazy per-event tensors of ``batch``."""
    return Events(batch)


def check_sensor_size(sensor_size: object) -> tuple[int, int]:
    """``(W, H)`` of a representation module, validated."""
    try:
        w, h = (int(v) for v in sensor_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"sensor_size must be (W, H), got {sensor_size!r}") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"sensor_size must be positive (W, H), got {sensor_size!r}")
    return w, h


def check_sensor(batch: EventBatch, sensor_size: tuple[int, int]) -> None:
    """Refuse a batch recorded on another sensor size than the module was built for."""
    if tuple(batch.sensor_size) != sensor_size:
        raise ShapeError(
            f"batch sensor_size {batch.sensor_size} does not match the module's {sensor_size}"
        )
