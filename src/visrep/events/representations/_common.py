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


class Events:
    """Per-event int64 views of a batch, computed lazily (only what a representation uses).

    ``rel`` is ``t - t_first`` of the event's sample and ``dur`` that sample's
    ``t_last - t_first``; empty samples get ``t_first = t_last = 0``. Per-sample values are
    spread to events with ``index_select``, the fastest gather on CPU.
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
        """Spread a ``(B,)`` per-sample tensor to the ``(N,)`` events."""
        if len(self.batch) == 1:
            return values.expand(self.batch.num_events)
        return values.index_select(0, self.b)

    def flat_index(self, channel: torch.Tensor, channels: int) -> torch.Tensor:
        """Index of each event in a flattened ``(B, channels, H, W)`` tensor."""
        W, H = self.batch.sensor_size
        c = channel if len(self.batch) == 1 else self.b * channels + channel
        return (c * H + self.y) * W + self.x

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
