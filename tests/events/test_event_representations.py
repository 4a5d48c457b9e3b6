"""Shapes, errors, analytic values and module == function for the hand-crafted representations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.events.conftest import random_stream
from visrep.errors import ConfigError, ShapeError, VisrepError
from visrep.events import (
    HATS,
    EventBatch,
    EventCount,
    EventStream,
    LastTimestamp,
    TimeSurface,
    VoxelGrid,
    to_event_count,
    to_hats,
    to_last_timestamp,
    to_time_surface,
    to_voxel_grid,
)

PAIRS = [
    (EventCount(bins=3), lambda b: to_event_count(b, 3), 6),
    (LastTimestamp(), to_last_timestamp, 2),
    (TimeSurface(tau=2000.0), lambda b: to_time_surface(b, 2000.0), 2),
    (VoxelGrid(bins=4), lambda b: to_voxel_grid(b, 4), 4),
    (HATS(cell_size=4, radius=1, tau=3000.0, delta_t=5000), None, 2),
]


def one(x, y, t, p, size=(4, 3)) -> EventBatch:
    return EventBatch.from_streams([EventStream(x=x, y=y, t=t, p=p, sensor_size=size)])


@pytest.mark.parametrize(("module", "fn", "channels"), PAIRS)
def test_module_equals_function_and_shape(module, fn, channels, streams) -> None:
    batch = EventBatch.from_streams(streams)
    out = module(batch)
    if fn is None:
        fn = lambda b: to_hats(b, 4, 1, 3000.0, 5000)  # noqa: E731
        assert out.shape == (3, channels, 3 * 3, 4 * 3)
    else:
        assert out.shape == (3, channels, 12, 16)
    assert torch.equal(out, fn(batch))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out[1].abs().sum() == 0  # the empty sample
    # samples do not leak into each other: the batch equals its samples one by one
    for i, s in enumerate(streams):
        assert torch.allclose(out[i], fn(EventBatch.from_streams([s]))[0], atol=1e-6)


def test_bad_inputs_raise() -> None:
    batch = one([0], [0], [0], [1])
    with pytest.raises(ShapeError, match="EventBatch"):
        to_event_count(torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bins"):
        to_voxel_grid(batch, 0)
    with pytest.raises(ConfigError, match="bins"):
        EventCount(bins=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tau"):
        to_time_surface(batch, -1.0)
    with pytest.raises(ShapeError, match="t_ref"):
        to_time_surface(batch, 1.0, t_ref=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="cell_size"):
        to_hats(batch, cell_size=4, radius=2)
    with pytest.raises(ConfigError, match="cell_size"):
        HATS(cell_size=2, radius=1)
    with pytest.raises(ConfigError, match="method"):
        to_hats(batch, method="loop")
    assert issubclass(ConfigError, VisrepError) and issubclass(ShapeError, VisrepError)


def test_event_count_values() -> None:
    b = one(x=[0, 0, 3, 3], y=[0, 0, 2, 2], t=[0, 5, 5, 10], p=[1, 1, 0, 1])
    c1 = to_event_count(b)
    assert c1[0, 1, 0, 0] == 2 and c1[0, 0, 2, 3] == 1 and c1[0, 1, 2, 3] == 1 and c1.sum() == 4
    c2 = to_event_count(b, bins=2)  # bin = floor(2 t / 10), the last event clipped to bin 1
    assert c2[0, 2, 0, 0] == 1 and c2[0, 3, 0, 0] == 1  # channel p * bins + k
    assert c2[0, 1, 2, 3] == 1 and c2[0, 3, 2, 3] == 1 and c2.sum() == 4


def test_last_timestamp_values() -> None:
    b = one(x=[1, 1, 2], y=[0, 0, 1], t=[100, 150, 300], p=[0, 0, 1])
    s = to_last_timestamp(b)
    assert s[0, 0, 0, 1] == pytest.approx(0.25) and s[0, 1, 1, 2] == 1.0 and s.sum() == 1.25


def test_time_surface_values() -> None:
    b = one(x=[1, 1, 2], y=[0, 0, 1], t=[100, 150, 300], p=[0, 0, 1])
    s = to_time_surface(b, tau=100.0)
    assert s[0, 0, 0, 1] == pytest.approx(math.exp(-1.5)) and s[0, 1, 1, 2] == 1.0
    assert (s > 0).sum() == 2
    early = to_time_surface(b, tau=100.0, t_ref=torch.tensor([120]))  # later events ignored
    assert early[0, 0, 0, 1] == pytest.approx(math.exp(-0.2)) and (early > 0).sum() == 1


def test_voxel_grid_values() -> None:
    # t* = (bins - 1) (t - t0) / (t1 - t0) = 0, 0.5, 2 with bins = 3; polarity as -1 / +1
    b = one(x=[0, 1, 2], y=[0, 0, 0], t=[0, 25, 100], p=[1, 0, 1])
    v = to_voxel_grid(b, 3)[0, :, 0, :]
    expected = torch.tensor([[1.0, -0.5, 0.0, 0.0], [0.0, -0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    assert torch.allclose(v, expected)
    assert to_voxel_grid(b, 1)[0, 0, 0].tolist() == [1.0, -1.0, 1.0, 0.0]


def test_hats_values() -> None:
    tau, dt = 1000.0, 700
    # cell 0 (x < 3): events at pixel (1, 1) at t = 0 and t = 500, one at (2, 1) at t = 600;
    # (3, 1) lies in the next cell and (1, 1) at t = 1500 is past delta_t from t = 500 / 600.
    b = one(
        x=[1, 1, 2, 3, 1],
        y=[1, 1, 1, 1, 1],
        t=[0, 500, 600, 600, 1500],
        p=[1, 1, 1, 1, 1],
        size=(6, 3),
    )
    h = to_hats(b, cell_size=3, radius=1, tau=tau, delta_t=dt)
    assert h.shape == (1, 2, 3, 6)
    cell0 = h[0, 1, :, :3]
    n = 4  # events of polarity 1 in cell 0
    centre = (1 + (1 + math.exp(-0.5)) + 1 + 1) / n  # each event sees itself; e2 sees e1
    left = (math.exp(-0.1) + 0) / n  # e3 at x=2 sees e2 at x=1 (dt 100); e1 is 600 us back
    left += math.exp(-0.6) / n  # ... and e1, 600 <= delta_t
    assert cell0[1, 1] == pytest.approx(centre, rel=1e-6)
    assert cell0[1, 0] == pytest.approx(left, rel=1e-6)
    assert cell0.sum() == pytest.approx(centre + left, rel=1e-6)
    assert h[0, 1, :, 3:].sum() == pytest.approx(1.0)  # the lone event of cell 1
    assert h[0, 0].sum() == 0


def _hats_direct(stream: EventStream, K: int, R: int, tau: float, delta_t: int) -> np.ndarray:
    """Eq. 4-5 summed pair by pair (slow reference): (2, Hc * S, Wc * S)."""
    W, H = stream.sensor_size
    S, Hc, Wc = 2 * R + 1, -(-H // K), -(-W // K)
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (stream.x, stream.y, stream.t, stream.p))
    out = np.zeros((2, Hc * S, Wc * S))
    for i in range(len(t)):
        for j in range(i + 1):  # earlier in stream order, e_i itself included
            dx, dy = x[j] - x[i], y[j] - y[i]
            same_cell = x[j] // K == x[i] // K and y[j] // K == y[i] // K
            near = abs(dx) <= R and abs(dy) <= R and t[i] - t[j] <= delta_t
            if p[j] == p[i] and near and same_cell:
                row, col = (y[i] // K) * S + dy + R, (x[i] // K) * S + dx + R
                out[p[i], row, col] += math.exp(-(t[i] - t[j]) / tau)
    cells = np.zeros((2, Hc, Wc))
    np.add.at(cells, (p, y // K, x // K), 1)
    return out / np.maximum(cells, 1).repeat(S, 1).repeat(S, 2)


@pytest.mark.parametrize("method", ["pairs", "prefix", "auto"])
def test_hats_matches_the_direct_sum_and_float64(method: str) -> None:
    streams = [random_stream(400, seed=5), random_stream(300, seed=6)]
    batch = EventBatch.from_streams(streams)
    full = to_hats(batch, cell_size=5, radius=2, tau=2000.0, delta_t=3000, method=method)
    for b, s in enumerate(streams):
        ref = _hats_direct(s, 5, 2, 2000.0, 3000)
        assert np.allclose(full[b].numpy(), ref, rtol=1e-5, atol=1e-6)
    f64 = to_hats(batch, cell_size=5, radius=2, tau=2000.0, delta_t=3000, dtype=torch.float64)
    assert f64.dtype == torch.float64 and torch.allclose(full.double(), f64, atol=1e-5)


@pytest.mark.parametrize("method", ["pairs", "prefix"])
def test_hats_long_stream_small_tau_does_not_overflow(method: str) -> None:
    # a span of 2,000 tau: exp(t / tau) would overflow float64 without the per-run offsets
    long = random_stream(300, seed=7, span=10**7)
    batch = EventBatch.from_streams([long])
    h = to_hats(batch, cell_size=5, radius=2, tau=5000.0, delta_t=10**9, method=method)
    ref = _hats_direct(long, 5, 2, 5000.0, 10**9)
    assert torch.isfinite(h).all() and np.allclose(h[0].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_all_empty_batch() -> None:
    batch = EventBatch.from_streams([EventStream.empty((5, 4))] * 2)
    for fn in (to_event_count, to_last_timestamp, to_hats):
        assert fn(batch).abs().sum() == 0
    assert to_voxel_grid(batch, 2).shape == (2, 2, 4, 5)
    assert to_time_surface(batch, 10.0).sum() == 0
