"""HOTS (visrep.events.hots): time surfaces, online prototypes and assignments against a slow
per-event reference; histograms, distances, the module, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.events.hots import (
    HOTS,
    assign_prototypes,
    histogram_distances,
    hots_time_surfaces,
    online_prototypes,
)
from visrep.events.types import EventBatch, EventStream


def _tiny(seed: int, n: int = 30, size: int = 8, channels: int = 2) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, size, n)
    y = rng.integers(0, size, n)
    t = np.sort(rng.integers(0, 400, n))  # repeated timestamps on purpose
    p = rng.integers(0, channels, n)
    return x, y, t, p


def _slow_surfaces(streams: list, size: int, channels: int, radius: int, tau: float) -> list:
    """Eq. 3 event by event: a memory of last times per (polarity, pixel), reset per sample."""
    out = []
    for x, y, t, p in streams:
        memory = {}
        for i in range(len(t)):
            memory[(int(p[i]), int(x[i]), int(y[i]))] = int(t[i])
            s = []
            for c in range(channels):
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        last = memory.get((c, int(x[i]) + dx, int(y[i]) + dy))
                        s.append(0.0 if last is None else math.exp(-(int(t[i]) - last) / tau))
            out.append(s)
    return out


def _slow_online(surfaces: list, prototypes: list) -> tuple[list, list]:
    """Lagorce et al. 2016, Alg. 1, in plain Python."""
    c = [list(v) for v in prototypes]
    counts = [0] * len(c)
    chosen = []
    for s in surfaces:
        d = [sum((a - b) ** 2 for a, b in zip(ck, s, strict=True)) for ck in c]
        k = d.index(min(d))
        ck = c[k]
        dot = sum(a * b for a, b in zip(ck, s, strict=True))
        beta = dot / (math.sqrt(sum(a * a for a in ck)) * math.sqrt(sum(b * b for b in s)))
        alpha = 0.01 / (1 + counts[k] / 20000)
        c[k] = [a + alpha * (b - beta * a) for a, b in zip(ck, s, strict=True)]
        counts[k] += 1
        chosen.append(k)
    return c, counts


def _batch(streams: list, channels: int) -> tuple:
    x, y, t, p = (torch.from_numpy(np.concatenate([s[i] for s in streams])) for i in range(4))
    offsets = torch.tensor([0, *np.cumsum([len(s[2]) for s in streams])])
    return x, y, t, p, offsets


@pytest.mark.parametrize(("channels", "radius"), [(2, 1), (3, 2)])
def test_surfaces_prototypes_and_assignments_match_a_slow_reference(
    channels: int, radius: int
) -> None:
    streams = [_tiny(0, channels=channels), _tiny(1, 17, channels=channels)]
    tau = 150.0
    x, y, t, p, offsets = _batch(streams, channels)
    ours = hots_time_surfaces(x, y, t, p, offsets, (8, 8), channels, radius, tau)
    ref = torch.tensor(_slow_surfaces(streams, 8, channels, radius, tau), dtype=torch.float64)
    assert ours.shape == (47, channels * (2 * radius + 1) ** 2)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-7)

    init = ref[:4].clone()
    c, counts = online_prototypes(ref, init)
    c_ref, counts_ref = _slow_online(ref.tolist(), init.tolist())
    torch.testing.assert_close(c, torch.tensor(c_ref, dtype=torch.float64))
    assert counts.tolist() == counts_ref
    assert torch.equal(init, ref[:4])  # the initial prototypes are not modified

    d = [
        [sum((a - b) ** 2 for a, b in zip(s, ck, strict=True)) for ck in c_ref]
        for s in ref.tolist()
    ]
    assert assign_prototypes(ref, c).tolist() == [r.index(min(r)) for r in d]


def test_hots_module_histograms_count_every_event_and_fit_is_seeded() -> None:
    rng = np.random.default_rng(3)
    streams = []
    for n in (40, 25, 33):
        x, y, t, p = _tiny(int(rng.integers(100)), n, 10)
        streams.append(EventStream(x=x, y=y, t=t, p=p, sensor_size=(10, 10)))
    batch = EventBatch.from_streams(streams)
    for learning in ("online", "kmeans"):
        kw = dict(num_prototypes=(3, 4), radius=(1, 2), tau=(100.0, 1000.0), learning=learning)
        a = HOTS(**kw, fit_events=60).fit(batch)
        b = HOTS(**kw, fit_events=60).fit(batch)
        h = a(batch)
        assert h.shape == (3, 4)
        assert h.sum(1).tolist() == [40.0, 25.0, 33.0]
        assert torch.equal(h, b(batch))
        assert a.fitted_events == [60, 60]
        assert a.prototypes[1].shape == (4, 3 * 25)
        c = HOTS(**kw).load_arrays(a.state_arrays())
        assert torch.equal(c(batch), h)


def test_histogram_distances_follow_their_definitions() -> None:
    h = torch.tensor([[4.0, 0.0, 4.0], [1.0, 2.0, 1.0]])
    r = torch.tensor([[2.0, 2.0, 0.0]])
    assert histogram_distances(h, r, "standard")[0, 0] == pytest.approx(math.sqrt(4 + 4 + 16))
    assert histogram_distances(h, r, "normalised")[1, 0] == pytest.approx(
        math.sqrt(0.25**2 + 0.0 + 0.25**2)
    )
    bc = math.sqrt(0.5 * 0.5)  # only the first bin of h[0] overlaps r
    assert histogram_distances(h, r, "bhattacharyya")[0, 0] == pytest.approx(-math.log(bc))
    assert histogram_distances(r, r, "bhattacharyya")[0, 0] == pytest.approx(0.0)


def test_bad_input_raises() -> None:
    with pytest.raises(ConfigError, match="one value per layer"):
        HOTS(num_prototypes=(4, 8), radius=(2,), tau=(1.0, 2.0))
    with pytest.raises(ConfigError, match="learning"):
        HOTS(learning="em")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--distance"):
        histogram_distances(torch.ones(1, 2), torch.ones(1, 2), "cosine")  # type: ignore[arg-type]
    x = torch.tensor([0, 1])
    with pytest.raises(ShapeError, match="polarities"):
        hots_time_surfaces(x, x, x, torch.tensor([0, 2]), torch.tensor([0, 2]), (2, 2), 2, 1, 1.0)
    with pytest.raises(ShapeError, match="prototypes"):
        assign_prototypes(torch.ones(3, 4), torch.ones(2, 5))
