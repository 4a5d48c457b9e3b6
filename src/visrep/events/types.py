"""The event types: one recording (:class:`EventStream`) and a batch (:class:`EventBatch`).

An event ``e = (x, y, t, p)`` is a brightness change at pixel ``(x, y)`` at time ``t``
(int64 microseconds) with polarity ``p`` (0 = OFF, 1 = ON). A batch concatenates the events of
``B`` streams and keeps ``offsets`` so that sample ``b`` owns ``events[offsets[b]:offsets[b+1]]``:
no padding is ever materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visrep.data.samples import EVENTS, collate
from visrep.errors import DataError

__all__ = ["EventBatch", "EventStream", "collate_events"]

_COORD_MAX = int(np.iinfo(np.int32).max)


def _check_sensor_size(sensor_size: Any) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in sensor_size)
    except (TypeError, ValueError):
        raise DataError(f"sensor_size must be (W, H), got {sensor_size!r}") from None
    if not (0 < w <= _COORD_MAX and 0 < h <= _COORD_MAX):
        # x < W must fit the int32 coordinates; a larger sensor would wrap them silently
        raise DataError(
            f"sensor_size must be positive (W, H) of at most {_COORD_MAX}, got {sensor_size!r}"
        )
    return w, h


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class EventStream:
    """One event recording: coordinates, microsecond timestamps, polarities and sensor size.

    Arrays are normalised on construction (``x, y`` to int16/int32, ``t`` to int64, ``p`` to
    int8) and exposed read-only; the stream never changes after it is built.

    Args:
        x: Column of each event, ``0 <= x < W``, shape ``(N,)``.
        y: Row of each event, ``0 <= y < H``, shape ``(N,)``.
        t: Timestamps in microseconds, non-decreasing, shape ``(N,)``.
        p: Polarity in {0, 1} (bool accepted), shape ``(N,)``.
        sensor_size: ``(W, H)`` of the sensor.

    Raises:
        DataError: if shapes, dtypes, ranges or time order are wrong.

    >>> s = EventStream(x=[0, 2], y=[1, 1], t=[5, 9], p=[1, 0], sensor_size=(4, 3))
    >>> len(s), s.duration
    (2, 4)
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    sensor_size: tuple[int, int]

    def __post_init__(self) -> None:
        w, h = _check_sensor_size(self.sensor_size)
        arrays = {k: np.asarray(getattr(self, k)) for k in ("x", "y", "t", "p")}
        n = arrays["x"].shape
        for k, a in arrays.items():
            if a.ndim != 1:
                raise DataError(f"EventStream.{k} must be 1-D, got shape {a.shape}")
            if a.shape != n:
                raise DataError(
                    f"EventStream arrays must have one length, got x {n} and {k} {a.shape}"
                )
            if a.size and not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
                raise DataError(f"EventStream.{k} must be an integer array, got {a.dtype}")
        x, y, t, p = arrays["x"], arrays["y"], arrays["t"], arrays["p"]
        if x.size:
            if x.min() < 0 or x.max() >= w:
                raise DataError(f"x must lie in [0, {w}), got range [{x.min()}, {x.max()}]")
            if y.min() < 0 or y.max() >= h:
                raise DataError(f"y must lie in [0, {h}), got range [{y.min()}, {y.max()}]")
            if p.dtype != np.bool_ and not np.isin(p, (0, 1)).all():
                raise DataError(f"p must be 0 or 1, got values {np.unique(p)[:5].tolist()}")
        coord = np.int16 if max(w, h) <= np.iinfo(np.int16).max else np.int32
        x = x.astype(x.dtype if x.dtype in (np.int16, np.int32) else coord, copy=False)
        y = y.astype(y.dtype if y.dtype in (np.int16, np.int32) else coord, copy=False)
        t = t.astype(np.int64, copy=False)
        p = p.astype(np.int8, copy=False)
        if t.size > 1 and (np.diff(t) < 0).any():
            first = int(np.argmax(np.diff(t) < 0))
            raise DataError(
                f"t must be non-decreasing, got t[{first}]={t[first]} > "
                f"t[{first + 1}]={t[first + 1]}"
            )
        for k, a in (("x", x), ("y", y), ("t", t), ("p", p)):
            object.__setattr__(self, k, _readonly(a))
        object.__setattr__(self, "sensor_size", (w, h))

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def __repr__(self) -> str:
        n, d, size = len(self), self.duration, self.sensor_size
        return f"EventStream(n={n}, duration={d} us, sensor_size={size})"

    @property
    def duration(self) -> int:
        """Time between the first and the last event, in microseconds (0 if < 2 events)."""
        return int(self.t[-1] - self.t[0]) if len(self) else 0

    @classmethod
    def empty(cls, sensor_size: tuple[int, int]) -> EventStream:
        """A stream with no events."""
        z = np.zeros(0, np.int16)
        return cls(z, z, np.zeros(0, np.int64), np.zeros(0, np.int8), sensor_size)

    def select(self, index: slice | np.ndarray) -> EventStream:
        """Events picked by a slice, a boolean mask or sorted integer indices."""
        return EventStream(
            self.x[index], self.y[index], self.t[index], self.p[index], self.sensor_size
        )

    def time_slice(self, t_start: int | None = None, t_end: int | None = None) -> EventStream:
        """Events with ``t_start <= t < t_end`` (half-open; ``None`` means unbounded)."""
        lo = 0 if t_start is None else int(np.searchsorted(self.t, t_start, side="left"))
        hi = len(self) if t_end is None else int(np.searchsorted(self.t, t_end, side="left"))
        return self.select(slice(lo, max(lo, hi)))

    def to_torch(self) -> dict[str, torch.Tensor]:
        """Copies of the arrays as tensors: ``x, y`` int32/int16, ``t`` int64, ``p`` int8."""
        return {k: torch.tensor(getattr(self, k)) for k in ("x", "y", "t", "p")}


@dataclass(eq=False)
class EventBatch:
    """The events of ``B`` streams concatenated, with per-sample offsets.

    Args:
        x, y: Coordinates, int32, shape ``(N,)``.
        t: Timestamps in microseconds, int64, shape ``(N,)``, sorted within each sample.
        p: Polarities in {0, 1}, int8, shape ``(N,)``.
        offsets: ``(B + 1,)`` int64; sample ``b`` owns ``[offsets[b], offsets[b + 1])``.
        sensor_size: ``(W, H)``, the same for all samples.

    Shape:
        ``len(batch) == B``; ``batch.num_events == N``.
    """

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    p: torch.Tensor
    offsets: torch.Tensor
    sensor_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.sensor_size = _check_sensor_size(self.sensor_size)
        n = self.t.shape
        for k in ("x", "y", "t", "p"):
            v = getattr(self, k)
            if not isinstance(v, torch.Tensor) or v.ndim != 1 or v.shape != n:
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise DataError(f"EventBatch.{k} must be a 1-D tensor of length {n[0]}, got {got}")
        o = self.offsets
        if not isinstance(o, torch.Tensor) or o.ndim != 1 or o.numel() < 1:
            raise DataError("EventBatch.offsets must be a 1-D tensor of shape (B + 1,)")
        if int(o[0]) != 0 or int(o[-1]) != n[0] or bool((o.diff() < 0).any()):
            raise DataError(
                f"EventBatch.offsets must rise from 0 to {n[0]}, got {o.tolist()[:8]}..."
            )

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def num_events(self) -> int:
        """Total number of events ``N`` over the batch."""
        return int(self.t.shape[0])

    @property
    def device(self) -> torch.device:
        return self.t.device

    def counts(self) -> torch.Tensor:
        """Events per sample, ``(B,)`` int64."""
        return self.offsets.diff()

    def batch_index(self) -> torch.Tensor:
        """Sample index of every event, ``(N,)`` int64, without a Python loop."""
        b = torch.arange(len(self), device=self.offsets.device)
        return torch.repeat_interleave(b, self.counts(), output_size=self.num_events)

    @classmethod
    def from_streams(cls, streams: Sequence[EventStream]) -> EventBatch:
        """Concatenate streams that share one sensor size."""
        if len(streams) == 0:
            raise DataError("EventBatch.from_streams needs at least one stream, got 0")
        sizes = {s.sensor_size for s in streams}
        if len(sizes) != 1:
            raise DataError(f"streams of one batch must share sensor_size, got {sorted(sizes)}")
        lengths = np.array([len(s) for s in streams], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])

        def cat(k: str, dtype: type) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([getattr(s, k) for s in streams]).astype(dtype))

        return cls(
            x=cat("x", np.int32),
            y=cat("y", np.int32),
            t=cat("t", np.int64),
            p=cat("p", np.int8),
            offsets=torch.from_numpy(offsets),
            sensor_size=streams[0].sensor_size,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EventBatch:
        """The same batch on ``device``."""
        return self._map(lambda v: v.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> EventBatch:
        """Page-locked copy; ``DataLoader(pin_memory=True)`` calls this."""
        return self._map(lambda v: v.pin_memory())

    def _map(self, fn: Any) -> EventBatch:
        return EventBatch(
            fn(self.x), fn(self.y), fn(self.t), fn(self.p), fn(self.offsets), self.sensor_size
        )

    def stream(self, b: int) -> EventStream:
        """Sample ``b`` back as an :class:`EventStream` (copies to CPU)."""
        lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
        arrs = [v[lo:hi].cpu().numpy() for v in (self.x, self.y, self.t, self.p)]
        return EventStream(*arrs, sensor_size=self.sensor_size)


def collate_events(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``DataLoader`` collate function of event samples: the ``events`` streams of the batch
    become one :class:`EventBatch` (no padding), the other keys batch as
    :func:`visrep.data.samples.collate` does."""
    if len(samples) == 0:
        raise DataError("collate_events got an empty list of samples")
    return collate(samples, {EVENTS: EventBatch.from_streams})
