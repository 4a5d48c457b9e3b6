"""Event transforms: hand-checked outputs, purity (no mutation), generators, tonic parity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.events.conftest import random_stream
from visrep.errors import ConfigError
from visrep.events import EventStream
from visrep.events.transforms import (
    Denoise,
    HorizontalFlip,
    MaxEvents,
    PolarityFlip,
    RandomDrop,
    RefractoryFilter,
    SpatialCrop,
    TimeJitter,
    TimeSkew,
    TimeWindow,
    apply_transforms,
    background_activity_mask,
    refractory_mask,
)

ALL = [
    SpatialCrop((8, 6)),
    HorizontalFlip(0.5),
    TimeWindow(3000, "random"),
    TimeJitter(50.0),
    TimeSkew((0.5, 2.0), (0.0, 100.0)),
    PolarityFlip(0.5),
    RandomDrop((0.1, 0.5)),
    Denoise(500),
    RefractoryFilter(200),
    MaxEvents(50, "random"),
]


def ev(x, y, t, p=None, size=(5, 4)) -> EventStream:
    p = [1] * len(x) if p is None else p
    return EventStream(x=x, y=y, t=t, p=p, sensor_size=size)


def as_tuples(s: EventStream) -> list[tuple[int, int, int, int]]:
    return list(zip(s.x.tolist(), s.y.tolist(), s.t.tolist(), s.p.tolist(), strict=True))


@pytest.mark.parametrize("tr", ALL, ids=lambda t: type(t).__name__)
def test_pure_frozen_and_seeded(tr) -> None:
    s = random_stream(300, seed=3)
    before = as_tuples(s)
    a = tr(s, np.random.default_rng(7))
    b = tr(s, np.random.default_rng(7))
    assert as_tuples(s) == before  # the input is untouched
    assert as_tuples(a) == as_tuples(b)  # same generator state -> same output
    assert isinstance(a, EventStream) and (np.diff(a.t) >= 0).all()
    field = dataclasses.fields(tr)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(tr, field, None)


@pytest.mark.parametrize(
    "tr",
    [
        SpatialCrop((2, 2)),
        HorizontalFlip(0.5),
        TimeWindow(5, "random"),
        TimeJitter(1.0),
        TimeSkew((1.0, 2.0)),
        PolarityFlip(0.5),
        RandomDrop(0.5),
        MaxEvents(1, "random"),
    ],
    ids=lambda t: type(t).__name__,
)
def test_random_transforms_need_a_generator(tr) -> None:
    with pytest.raises(ConfigError, match="Generator"):
        tr(ev([0, 1, 2], [0, 1, 2], [0, 5, 9]))


def test_spatial_crop() -> None:
    s = ev([0, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3], size=(5, 4))
    c = SpatialCrop((2, 2), position=(2, 1))(s)
    assert c.sensor_size == (2, 2)
    assert as_tuples(c) == [(0, 0, 1, 1), (1, 1, 2, 1)]
    centre = SpatialCrop((3, 2), position="center")(s)  # origin (1, 1)
    assert as_tuples(centre) == [(1, 0, 1, 1), (2, 1, 2, 1)]
    r = SpatialCrop((3, 3))(random_stream(500, (16, 12)), np.random.default_rng(0))
    assert r.sensor_size == (3, 3) and r.x.max() < 3 and r.y.max() < 3
    with pytest.raises(ConfigError, match="fit the sensor"):
        SpatialCrop((6, 2))(s)
    with pytest.raises(ConfigError, match="leaves the sensor"):
        SpatialCrop((2, 2), position=(4, 0))(s)


def test_horizontal_flip_and_polarity_flip() -> None:
    s = ev([0, 1, 4], [0, 3, 2], [0, 1, 2], [1, 0, 1])
    assert HorizontalFlip(1.0)(s).x.tolist() == [4, 3, 0]
    assert HorizontalFlip(0.0)(s) is s
    assert PolarityFlip(1.0)(s).p.tolist() == [0, 1, 0]
    # p = 0.5: over many draws about half flip
    rng = np.random.default_rng(0)
    flips = sum(HorizontalFlip(0.5)(s, rng).x[0] == 4 for _ in range(400))
    assert 160 < flips < 240


def test_time_window() -> None:
    s = ev([0] * 6, [0] * 6, [100, 150, 200, 250, 300, 400])
    assert TimeWindow(100)(s).t.tolist() == [100, 150]  # [t0, t0 + 100)
    assert TimeWindow(100, start=100)(s).t.tolist() == [200, 250]
    for seed in range(20):
        w = TimeWindow(150, "random")(s, np.random.default_rng(seed))
        assert w.t.min() >= 100 and w.t.max() - w.t.min() < 150 and len(w) >= 2
    assert len(TimeWindow(10)(EventStream.empty((3, 3)))) == 0


def test_time_jitter_and_skew() -> None:
    s = random_stream(400, seed=4)
    assert TimeJitter(0.0)(s) is s
    j = TimeJitter(30.0)(s, np.random.default_rng(1))
    assert (np.diff(j.t) >= 0).all() and len(j) == len(s)
    key = lambda q: sorted(zip(q.x.tolist(), q.y.tolist(), q.p.tolist(), strict=True))  # noqa: E731
    assert key(j) == key(s)  # the same events, only their times moved
    moved = np.sort(j.t) - np.sort(s.t)
    assert 0 < np.abs(moved).mean() < 100
    t = ev([0, 1, 2], [0, 0, 0], [10, 20, 40])
    assert TimeSkew(scale=2.0, offset=5.0)(t).t.tolist() == [15, 35, 75]  # 10 + 2 (t - 10) + 5
    for seed in range(5):
        k = TimeSkew((0.5, 1.5))(t, np.random.default_rng(seed))
        s_drawn = (k.t[2] - k.t[0]) / 30
        assert 0.5 <= s_drawn <= 1.5 and k.t[0] == 10
    with pytest.raises(ConfigError, match="> 0"):
        TimeSkew(scale=(-1.0, 1.0))(t, np.random.default_rng(0))


def test_random_drop() -> None:
    s = random_stream(10_000, seed=5)
    assert RandomDrop(0.0)(s) is s
    assert len(RandomDrop(1.0)(s, np.random.default_rng(0))) == 0
    d = RandomDrop(0.3)(s, np.random.default_rng(0))
    assert abs(len(d) - 7000) < 4 * np.sqrt(10_000 * 0.3 * 0.7)
    assert set(as_tuples(d)) <= set(as_tuples(s))
    with pytest.raises(ConfigError, match="probability"):
        RandomDrop(1.5)(s, np.random.default_rng(0))


def test_denoise_hand_checked() -> None:
    # (1,1)@0 alone; (2,1)@100 has (1,1) 100 us before; (4,3)@150 isolated; (3,2)@5000 has
    # (4,3) diagonally but 4850 us before; (3,3)@5050 has (3,2) above it, 50 us before
    s = ev([1, 2, 4, 3, 3], [1, 1, 3, 2, 3], [0, 100, 150, 5000, 5050])
    assert Denoise(dt=200, connectivity=4)(s).t.tolist() == [100, 5050]
    # 8-connectivity adds (4,3) as a diagonal neighbour of (3,2), but 4850 us is too old ...
    assert Denoise(dt=200, connectivity=8)(s).t.tolist() == [100, 5050]
    assert Denoise(dt=5000, connectivity=8)(s).t.tolist() == [100, 5000, 5050]  # ... or not
    assert Denoise(dt=5000, connectivity=4)(s).t.tolist() == [100, 5050]
    # the pixel itself is no support
    assert len(Denoise(dt=100)(ev([2, 2], [2, 2], [0, 10]))) == 0


def test_denoise_matches_tonic() -> None:
    tonic = pytest.importorskip("tonic.functional")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, dt = int(rng.integers(1, 400)), int(rng.integers(1, 2000))
        x, y = rng.integers(0, 7, n), rng.integers(0, 5, n)
        x[0], y[0] = 6, 4  # tonic sizes its memory from the data: make it the sensor
        t = np.sort(rng.integers(0, 20_000, n)) + dt  # tonic keeps all events before t = dt
        arr = np.zeros(n, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
        arr["x"], arr["y"], arr["t"] = x, y, t
        ref = tonic.denoise_numpy(arr, filter_time=dt)
        mask = background_activity_mask(x, y, t, (7, 5), dt, connectivity=4)
        assert (arr[mask] == ref).all() and mask.sum() == len(ref), trial


def _refractory_loop(pix: np.ndarray, t: np.ndarray, period: int) -> np.ndarray:
    last: dict[int, int] = {}
    keep = np.zeros(len(t), dtype=bool)
    for i, (q, ti) in enumerate(zip(pix.tolist(), t.tolist(), strict=True)):
        if q not in last or ti - last[q] >= period:
            keep[i], last[q] = True, ti
    return keep


def test_refractory_filter() -> None:
    s = ev([1, 1, 2, 1, 1], [0, 0, 0, 0, 0], [0, 5, 6, 10, 12])
    # pixel (1,0): 0 kept, 5 suppressed, 10 kept (10 us after the last *emitted* one), 12 not
    assert RefractoryFilter(10)(s).t.tolist() == [0, 6, 10]
    assert RefractoryFilter(0)(s).t.tolist() == [0, 5, 6, 10, 12]
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(0, 500))
        pix, t = rng.integers(0, 6, n), np.sort(rng.integers(0, 3000, n))
        period = int(rng.integers(0, 400))
        assert (refractory_mask(pix, t, period) == _refractory_loop(pix, t, period)).all()


def test_max_events() -> None:
    s = ev([0] * 10, [0] * 10, list(range(0, 100, 10)))
    assert MaxEvents(20)(s) is s
    assert MaxEvents(4, "first")(s).t.tolist() == [0, 10, 20, 30]
    assert MaxEvents(4, "uniform")(s).t.tolist() == [0, 30, 60, 90]  # indices 0, 3, 6, 9
    r = MaxEvents(4, "random")(s, np.random.default_rng(0))
    assert len(r) == 4 and (np.diff(r.t) > 0).all()
    with pytest.raises(ConfigError, match=">= 1"):
        MaxEvents(0)(s)


def test_apply_transforms_in_order() -> None:
    s = ev([0, 1, 4], [0, 0, 0], [0, 10, 20], size=(5, 1))
    out = apply_transforms(s, [HorizontalFlip(1.0), SpatialCrop((2, 1), position=(3, 0))])
    assert as_tuples(out) == [(1, 0, 0, 1), (0, 0, 10, 1)]
