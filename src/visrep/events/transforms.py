"""Event-stream transforms: frozen dataclasses, vectorised numpy, explicit random generators.

Every transform is called as ``transform(stream, rng)`` and returns a new
:class:`~visrep.events.EventStream`; it never changes itself or its input (tonic's transforms,
without their hidden state). Randomness comes only from the ``numpy.random.Generator`` passed
in; a random transform called without one raises :class:`~visrep.errors.ConfigError`, so a
deterministic pipeline (evaluation) cannot silently draw from global state.

=====================  =======================================================================
transform              what it does
=====================  =======================================================================
:class:`SpatialCrop`   keep a ``(w, h)`` window (random or centred), shift it to the origin
:class:`HorizontalFlip`  ``x -> W - 1 - x`` with probability ``p``
:class:`TimeWindow`    keep the events of one ``duration``-long window
:class:`TimeJitter`    add Gaussian noise to timestamps, then re-sort
:class:`TimeSkew`      ``t -> t0 + s (t - t0) + o`` (playback speed and offset)
:class:`PolarityFlip`  swap ON and OFF with probability ``p``
:class:`RandomDrop`    drop each event with probability ``p`` (EventDrop, Gu et al. 2021)
:class:`Denoise`       background-activity filter (Delbruck 2008)
:class:`RefractoryFilter`  per-pixel dead time after each emitted event
:class:`MaxEvents`     cap the number of events per sample
=====================  =======================================================================

>>> import numpy as np
>>> from visrep.events import EventStream
>>> s = EventStream(x=[0, 3], y=[1, 1], t=[0, 5], p=[1, 0], sensor_size=(4, 2))
>>> HorizontalFlip(p=1.0)(s).x.tolist()
[3, 0]
>>> len(RandomDrop(p=0.5)(s, np.random.default_rng(0))) <= 2
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from visrep.errors import ConfigError
from visrep.events.types import EventStream

__all__ = [
    "Denoise",
    "EventTransform",
    "HorizontalFlip",
    "MaxEvents",
    "PolarityFlip",
    "RandomDrop",
    "RefractoryFilter",
    "SpatialCrop",
    "TimeJitter",
    "TimeSkew",
    "TimeWindow",
    "apply_transforms",
    "background_activity_mask",
    "check_transforms",
    "refractory_mask",
]

Range = float | tuple[float, float]


class EventTransform:
    """Base of the event transforms: ``transform(stream, rng=None) -> EventStream``."""

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        raise NotImplementedError(type(self).__name__)


def apply_transforms(
    stream: EventStream,
    transforms: Sequence[EventTransform],
    rng: np.random.Generator | None = None,
) -> EventStream:
    """Apply ``transforms`` in order, all drawing from the one generator ``rng``."""
    for tr in transforms:
        stream = tr(stream, rng)
    return stream


# -- helpers -------------------------------------------------------------------------------------
def _need(rng: np.random.Generator | None, who: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"{type(who).__name__} is random and needs a numpy.random.Generator, got "
            f"{type(rng).__name__} (use it in train_transforms, or make it deterministic)"
        )
    return rng


def _prob(p: float, name: str) -> float:
    if not 0 <= p <= 1:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _coin(p: float, rng: np.random.Generator | None, who: object) -> bool:
    """True with probability ``p``; ``p`` of 0 or 1 needs no generator."""
    if p <= 0 or p >= 1:
        return p >= 1
    return bool(_need(rng, who).random() < p)


def _range(v: Range, name: str) -> tuple[float, float]:
    lo, hi = (v, v) if isinstance(v, int | float) else (float(v[0]), float(v[1]))
    if lo > hi:
        raise ConfigError(f"{name} must be a value or a (low, high) range, got {v}")
    return float(lo), float(hi)


def _draw(v: Range, rng: np.random.Generator | None, who: object, name: str) -> float:
    lo, hi = _range(v, name)
    return lo if lo == hi else float(_need(rng, who).uniform(lo, hi))


def _pixels(stream: EventStream) -> np.ndarray:
    return stream.y.astype(np.int64) * stream.sensor_size[0] + stream.x


# -- vectorised filters (shared with the simulator) -----------------------------------------------
def refractory_mask(pixel: np.ndarray, t: np.ndarray, period: int) -> np.ndarray:
    """Events that survive a per-pixel refractory period (dead time after each *emitted* event).

    An event at pixel ``q`` is emitted iff ``t - t_last >= period`` where ``t_last`` is the time
    of the last *emitted* event at ``q``: suppressed events do not extend the dead time, as in an
    event camera and in ESIM (Rebecq et al. 2018, Sec. 3). (tonic's ``RefractoryPeriod`` instead
    resets the timer on every event, suppressed or not.)

    Vectorised without a loop over events: within each pixel's run, ``next[j]`` is the first
    event with ``t >= t_j + period`` (one ``searchsorted``); the emitted events are the chain
    ``head, next[head], next[next[head]], ...`` of each run, marked by pointer doubling in
    ``O(N log L)`` for chains of length ``L``.

    Args:
        pixel: Integer pixel id of each event, shape ``(N,)``.
        t: Timestamps, non-decreasing, shape ``(N,)``.
        period: Dead time in the unit of ``t`` (``<= 0`` keeps everything).

    Returns:
        Boolean keep mask, shape ``(N,)``.
    """
    n = t.shape[0]
    if period <= 0 or n == 0:
        return np.ones(n, dtype=bool)
    order = np.argsort(pixel, kind="stable")  # time order is kept inside each pixel's run
    pix, ts = pixel[order].astype(np.int64), t[order].astype(np.int64) - int(t.min())
    span = int(ts.max()) + int(period) + 1
    if (int(pix.max()) + 1) * span >= 2**62:
        raise ConfigError(f"refractory filter: {pix.max() + 1} pixels x {span} us overflow int64")
    key = pix * span + ts
    nxt = np.searchsorted(key, key + period, side="left")
    nxt[(nxt >= n) | (pix[np.minimum(nxt, n - 1)] != pix)] = n  # past the run: sentinel n
    jump = np.append(nxt, n)
    mark = np.zeros(n + 1, dtype=bool)
    mark[np.flatnonzero(np.r_[True, pix[1:] != pix[:-1]])] = True  # run heads are emitted
    while True:  # after round r the first 2**(r+1) chain members are marked
        mark[jump[np.flatnonzero(mark[:n])]] = True
        if (jump[:n] == n).all():
            break
        jump = jump[jump]
    keep = np.empty(n, dtype=bool)
    keep[order] = mark[:n]
    return keep


def background_activity_mask(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    sensor_size: tuple[int, int],
    dt: int,
    connectivity: Literal[4, 8] = 8,
) -> np.ndarray:
    """Events supported by a neighbour: another pixel next to it fired less than ``dt`` before.

    Delbruck's background-activity filter (Delbruck 2008, "Frame-free dynamic digital vision"):
    event ``i`` is kept iff some *earlier* event (stream order) at one of the 4 or 8 neighbouring
    pixels (not the pixel itself) has ``t_i - t_j < dt``. With ``connectivity=4`` this is
    tonic's ``Denoise`` rule, minus tonic's start-up quirk (its memory starts at ``dt``, so every
    event before ``t = dt`` passes).

    Vectorised: events sorted by (pixel, stream order); for each neighbour offset one
    ``searchsorted`` finds every event's latest earlier event at that neighbour.

    Returns:
        Boolean keep mask, shape ``(N,)``.
    """
    if connectivity not in (4, 8):
        raise ConfigError(f"connectivity must be 4 or 8, got {connectivity}")
    n = t.shape[0]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    W, H = sensor_size
    pix = y.astype(np.int64) * W + x
    order = np.argsort(pix, kind="stable")
    # work in (pixel, stream index) order: then every neighbour's queries are sorted too
    ps, xs, ys, ts = pix[order], x[order].astype(np.int64), y[order].astype(np.int64), t[order]
    key = ps * n + order
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        offsets += [(-1, -1), (1, -1), (-1, 1), (1, 1)]
    kept = np.zeros(n, dtype=bool)
    for dx, dy in offsets:
        q = ps + (dy * W + dx)
        pos = np.searchsorted(key, q * n + order, side="left") - 1
        j = np.maximum(pos, 0)
        inside = (xs + dx >= 0) & (xs + dx < W) & (ys + dy >= 0) & (ys + dy < H)
        kept |= inside & (pos >= 0) & (ps[j] == q) & (ts - ts[j] < dt)
    keep[order] = kept
    return keep


# -- transforms ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpatialCrop(EventTransform):
    """Keep the events inside a ``size = (w, h)`` window and move it to the origin.

    Args:
        size: ``(w, h)`` of the window, at most the sensor size.
        position: ``"random"`` (uniform over valid origins; needs ``rng``), ``"center"``, or a
            fixed ``(x0, y0)`` origin.
    """

    size: tuple[int, int]
    position: Literal["random", "center"] | tuple[int, int] = "random"

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        W, H = stream.sensor_size
        w, h = (int(v) for v in self.size)
        if not (0 < w <= W and 0 < h <= H):
            raise ConfigError(f"SpatialCrop.size must fit the sensor {(W, H)}, got {self.size}")
        if self.position == "random":
            g = _need(rng, self)
            x0, y0 = int(g.integers(0, W - w + 1)), int(g.integers(0, H - h + 1))
        elif self.position == "center":
            x0, y0 = (W - w) // 2, (H - h) // 2
        else:
            x0, y0 = (int(v) for v in self.position)
            if not (0 <= x0 <= W - w and 0 <= y0 <= H - h):
                raise ConfigError(
                    f"SpatialCrop window {self.size} at {self.position} leaves the sensor {(W, H)}"
                )
        x, y = stream.x.astype(np.int32), stream.y.astype(np.int32)
        keep = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
        return EventStream(x[keep] - x0, y[keep] - y0, stream.t[keep], stream.p[keep], (w, h))


@dataclass(frozen=True)
class HorizontalFlip(EventTransform):
    """Mirror left-right (``x -> W - 1 - x``) with probability ``p``."""

    p: float = 0.5

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if not _coin(_prob(self.p, "HorizontalFlip.p"), rng, self):
            return stream
        x = stream.sensor_size[0] - 1 - stream.x.astype(np.int32)
        return EventStream(x, stream.y, stream.t, stream.p, stream.sensor_size)


@dataclass(frozen=True)
class TimeWindow(EventTransform):
    """Keep the events with ``t0 <= t < t0 + duration``.

    Args:
        duration: Window length in microseconds.
        start: ``t0`` as an offset from the first event (microseconds), or ``"random"``: uniform
            over the windows that fit in the recording (needs ``rng``).
    """

    duration: int
    start: int | Literal["random"] = 0

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if self.duration <= 0:
            raise ConfigError(f"TimeWindow.duration must be > 0 us, got {self.duration}")
        if len(stream) == 0:
            return stream
        t_first = int(stream.t[0])
        if self.start == "random":
            slack = max(stream.duration - int(self.duration), 0)
            t0 = t_first + int(_need(rng, self).integers(0, slack + 1))
        else:
            t0 = t_first + int(self.start)
        return stream.time_slice(t0, t0 + int(self.duration))


def _reorder(stream: EventStream, t: np.ndarray) -> EventStream:
    order = np.argsort(t, kind="stable")
    return EventStream(
        stream.x[order], stream.y[order], t[order], stream.p[order], stream.sensor_size
    )


@dataclass(frozen=True)
class TimeJitter(EventTransform):
    """Add ``round(N(0, std^2))`` microseconds to every timestamp, then sort (stable) by time."""

    std: float

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if self.std < 0:
            raise ConfigError(f"TimeJitter.std must be >= 0, got {self.std}")
        if self.std == 0 or len(stream) == 0:
            return stream
        noise = np.rint(_need(rng, self).normal(0.0, self.std, len(stream))).astype(np.int64)
        return _reorder(stream, stream.t + noise)


@dataclass(frozen=True)
class TimeSkew(EventTransform):
    """Change playback speed and offset: ``t -> t0 + round(s (t - t0)) + o``, ``t0`` the first event.

    Args:
        scale: ``s > 0``, a value or a ``(low, high)`` range drawn uniformly per call.
        offset: ``o`` in microseconds, a value or a range drawn uniformly per call.
    """

    scale: Range = (0.8, 1.2)
    offset: Range = 0.0

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if _range(self.scale, "TimeSkew.scale")[0] <= 0:
            raise ConfigError(f"TimeSkew.scale must be > 0, got {self.scale}")
        s = _draw(self.scale, rng, self, "TimeSkew.scale")
        o = _draw(self.offset, rng, self, "TimeSkew.offset")
        if len(stream) == 0:
            return stream
        t0 = int(stream.t[0])
        t = t0 + np.rint(s * (stream.t - t0) + o).astype(np.int64)
        return EventStream(stream.x, stream.y, t, stream.p, stream.sensor_size)


@dataclass(frozen=True)
class PolarityFlip(EventTransform):
    """Swap ON and OFF events of the whole sample with probability ``p``."""

    p: float = 0.5

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if not _coin(_prob(self.p, "PolarityFlip.p"), rng, self):
            return stream
        return EventStream(stream.x, stream.y, stream.t, 1 - stream.p, stream.sensor_size)


@dataclass(frozen=True)
class RandomDrop(EventTransform):
    """Drop each event independently with probability ``p`` (EventDrop, Gu et al. 2021, IJCAI).

    Args:
        p: The drop probability, or a ``(low, high)`` range it is drawn from per sample.
    """

    p: Range = 0.1

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        for v in _range(self.p, "RandomDrop.p"):
            _prob(v, "RandomDrop.p")
        p = _draw(self.p, rng, self, "RandomDrop.p")
        if p == 0:
            return stream
        return stream.select(_need(rng, self).random(len(stream)) >= p)


@dataclass(frozen=True)
class Denoise(EventTransform):
    """Background-activity filter: see :func:`background_activity_mask`.

    Args:
        dt: Support window in microseconds.
        connectivity: 4 or 8 neighbours.
    """

    dt: int = 10_000
    connectivity: Literal[4, 8] = 8

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if self.dt <= 0:
            raise ConfigError(f"Denoise.dt must be > 0 us, got {self.dt}")
        mask = background_activity_mask(
            stream.x, stream.y, stream.t, stream.sensor_size, int(self.dt), self.connectivity
        )
        return stream.select(mask)


@dataclass(frozen=True)
class RefractoryFilter(EventTransform):
    """Per-pixel dead time of ``period`` microseconds after each emitted event; see
    :func:`refractory_mask`."""

    period: int = 1_000

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if self.period < 0:
            raise ConfigError(f"RefractoryFilter.period must be >= 0 us, got {self.period}")
        return stream.select(refractory_mask(_pixels(stream), stream.t, int(self.period)))


@dataclass(frozen=True)
class MaxEvents(EventTransform):
    """Keep at most ``n`` events, in time order.

    Args:
        n: The cap.
        mode: ``"uniform"`` (evenly spaced indices: the whole recording, thinned;
            deterministic), ``"first"`` (the first ``n``) or ``"random"`` (a uniform subset;
            needs ``rng``).
    """

    n: int
    mode: Literal["uniform", "first", "random"] = "uniform"

    def __call__(self, stream: EventStream, rng: np.random.Generator | None = None) -> EventStream:
        if self.n < 1:
            raise ConfigError(f"MaxEvents.n must be >= 1, got {self.n}")
        m = len(stream)
        if m <= self.n:
            return stream
        if self.mode == "first":
            return stream.select(slice(0, self.n))
        if self.mode == "uniform":
            return stream.select(np.arange(self.n) * (m - 1) // max(self.n - 1, 1))
        if self.mode == "random":
            return stream.select(np.sort(_need(rng, self).choice(m, self.n, replace=False)))
        raise ConfigError(f"MaxEvents.mode must be uniform, first or random, got {self.mode!r}")


def check_transforms(transforms: object, name: str) -> tuple[EventTransform, ...]:
    """``transforms`` as a tuple, each an :class:`EventTransform`."""
    items = tuple(transforms or ())
    for tr in items:
        if not isinstance(tr, EventTransform):
            raise ConfigError(f"{name} must hold event transforms, got {type(tr).__name__}")
    return items
