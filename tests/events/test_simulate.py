"""The event simulator: analytic ramps, thresholds, refractory period, noise, saccades, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from visrep.errors import ConfigError, DataError
from visrep.events import DigitsEventsDataModule
from visrep.events.simulate import (
    _bilinear_shift,
    saccade_events,
    saccade_frames,
    simulate_batch,
    simulate_events,
)

EXACT = {"threshold_sigma": 0.0, "log_eps": 0.0}  # no mismatch; L = log(I)


def ramp(logs: list[float], h: int = 1, w: int = 1) -> np.ndarray:
    """Frames whose log intensity is ``logs[k]`` at every pixel."""
    return np.exp(np.asarray(logs, dtype=np.float64))[:, None, None] * np.ones((1, h, w))


def events(s) -> list[tuple[int, int, int, int]]:
    return list(zip(s.x.tolist(), s.y.tolist(), s.t.tolist(), s.p.tolist(), strict=True))


def test_ramp_crossing_k_thresholds_gives_k_interpolated_events() -> None:
    # log intensity 0 -> 1 over 1000 us, C+ = 0.3: crossings at 0.3, 0.6, 0.9
    s = simulate_events(ramp([0.0, 1.0]), [0, 1000], pos_threshold=0.3, **EXACT)
    assert s.t.tolist() == [300, 600, 900] and s.p.tolist() == [1, 1, 1]
    # falling 1 -> 0 with C- = 0.25: levels 0.75, 0.5, 0.25, 0.0 (the last one exactly reached)
    s = simulate_events(ramp([1.0, 0.0]), [0, 1000], neg_threshold=0.25, **EXACT)
    assert s.t.tolist() == [250, 500, 750, 1000] and s.p.tolist() == [0, 0, 0, 0]


def test_reference_carries_across_frames() -> None:
    # 0 -> 0.2 -> 0.4 with C = 0.3: one event, at 0.3, halfway through the second interval
    s = simulate_events(ramp([0.0, 0.2, 0.4]), [0, 100, 200], pos_threshold=0.3, **EXACT)
    assert s.t.tolist() == [150]
    # up 0.35 then down 0.35 (C = 0.3): ON at 0.3; the reference is 0.3 so OFF at 0.0
    s = simulate_events(
        ramp([0.0, 0.35, 0.0]), [0, 350, 700], pos_threshold=0.3, neg_threshold=0.3, **EXACT
    )
    assert s.p.tolist() == [1, 0] and s.t.tolist() == [300, 700]


def test_thresholds_signs_are_respected() -> None:
    up_down = ramp([0.0, 1.0, 0.0])
    s = simulate_events(up_down, [0, 1000, 2000], pos_threshold=0.5, neg_threshold=0.2, **EXACT)
    assert s.p.tolist() == [1, 1, 0, 0, 0, 0, 0]  # 1 / 0.5 ON, then 1 / 0.2 OFF
    assert s.t.tolist() == [500, 1000, 1200, 1400, 1600, 1800, 2000]


def test_refractory_period_suppresses_events() -> None:
    frames = ramp([0.0, 1.0])
    s = simulate_events(frames, [0, 1000], pos_threshold=0.3, refractory_period=400, **EXACT)
    assert s.t.tolist() == [300, 900]  # 600 falls 300 us after the event at 300
    s = simulate_events(frames, [0, 1000], pos_threshold=0.3, refractory_period=300, **EXACT)
    assert s.t.tolist() == [300, 600, 900]  # exactly the period: allowed


def test_pixels_are_independent_and_batch_equals_single() -> None:
    f = np.ones((2, 3, 2, 2))
    f[0, 1:, 0, 1] = math.e  # sample 0, pixel (x=1, y=0) brightens by 1
    f[1, 2, 1, 0] = math.exp(-0.5)  # sample 1, pixel (x=0, y=1) darkens in the last interval
    out = simulate_batch(f, [0, 10, 20], pos_threshold=0.4, neg_threshold=0.2, **EXACT)
    assert events(out[0]) == [(1, 0, 4, 1), (1, 0, 8, 1)]
    assert events(out[1]) == [(0, 1, 14, 0), (0, 1, 18, 0)]
    for b in range(2):
        single = simulate_events(f[b], [0, 10, 20], pos_threshold=0.4, neg_threshold=0.2, **EXACT)
        for k in "xytp":
            assert np.array_equal(getattr(single, k), getattr(out[b], k))


def test_threshold_mismatch_and_shot_noise_statistics() -> None:
    frames = ramp([0.0, 2.0], h=40, w=50)  # 2000 pixels, each rises by 2 log units
    s = simulate_events(frames, [0, 1000], pos_threshold=0.2, threshold_sigma=0.02, log_eps=0.0)
    counts = np.bincount(s.y.astype(int) * 50 + s.x, minlength=2000)
    assert counts.min() < 10 < counts.max()  # thresholds differ from pixel to pixel
    assert 9 < counts.mean() < 11  # floor(2 / C) with C ~ N(0.2, 0.02^2): about 9.6
    quiet = np.ones((2, 40, 50))
    noise = simulate_events(quiet, [0, 1_000_000], shot_noise_rate=5.0, rng=3)
    expected = 5.0 * 2000  # 5 Hz x 1 s x 2000 pixels
    assert abs(len(noise) - expected) < 5 * math.sqrt(expected)
    assert 0.4 < noise.p.mean() < 0.6 and (np.diff(noise.t) >= 0).all()


def test_seeded_determinism() -> None:
    frames = np.random.default_rng(0).random((6, 8, 9))
    t = np.arange(6) * 1000
    kw = {"threshold_sigma": 0.05, "shot_noise_rate": 50.0}
    a = simulate_events(frames, t, rng=11, **kw)
    b = simulate_events(frames, t, rng=np.random.default_rng(11), **kw)
    c = simulate_events(frames, t, rng=12, **kw)
    assert len(a) > 0 and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "xytp")
    assert len(a) != len(c) or not np.array_equal(a.t, c.t)


def test_bad_inputs_raise() -> None:
    with pytest.raises(DataError, match="strictly increasing"):
        simulate_events(ramp([0.0, 1.0, 2.0]), [0, 10, 10])
    with pytest.raises(DataError, match=r"\(T, H, W\)"):
        simulate_events(np.ones((2, 3)), [0, 1])
    with pytest.raises(DataError, match=">= 0"):
        simulate_events(-np.ones((2, 1, 1)), [0, 1])
    with pytest.raises(ConfigError, match="pos_threshold"):
        simulate_events(ramp([0.0, 1.0]), [0, 1], pos_threshold=0.0)
    with pytest.raises(DataError, match="at least 2 frames"):
        simulate_events(np.ones((1, 2, 2)), [0])


def test_bilinear_shift_matches_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    a = np.random.default_rng(0).random((2, 9, 11))
    for dx, dy in [(0.3, 0.7), (-1.25, 2.5), (2.0, -1.0), (0.0, 0.0), (-0.5, -3.2)]:
        ref = ndimage.shift(a, (0, dy, dx), order=1, mode="grid-constant", prefilter=False)
        assert np.allclose(_bilinear_shift(a, dx, dy), ref, atol=1e-12)


def test_saccades() -> None:
    img = np.zeros((28, 28))
    img[8:20, 10:18] = 1.0
    frames, t = saccade_frames(img, amplitude=3.0, duration=300_000, frames_per_saccade=5)
    assert frames.shape == (16, 34, 34) and t.tolist()[0] == 0 and t[-1] == 300_000
    assert np.allclose(frames[0], frames[-1])  # the triangle closes
    assert np.allclose(frames[0, 3:31, 3:31], np.roll(img, -3, axis=0))  # first vertex: up 3 px
    assert np.allclose(frames.sum((1, 2)), img.sum())  # a shift moves, never loses, the square
    s = saccade_events(img, rng=0)
    assert s.sensor_size == (34, 34) and 250_000 < s.duration <= 300_000
    assert 0.3 < s.p.mean() < 0.7  # leading edges ON, trailing edges OFF
    inside = (s.x >= 3 + 10 - 4) & (s.x < 3 + 18 + 4) & (s.y >= 3 + 8 - 4) & (s.y < 3 + 20 + 4)
    assert inside.all()  # events only where the square's edges pass
    batch_frames, _ = saccade_frames(np.stack([img, img.T]), frames_per_saccade=5)
    assert batch_frames.shape == (2, 16, 34, 34) and np.allclose(batch_frames[0], frames)


def test_digits_events_data_module_is_seeded() -> None:
    a = DigitsEventsDataModule(max_samples=40, frames_per_saccade=4, seed=1)
    b = DigitsEventsDataModule(max_samples=40, frames_per_saccade=4, seed=1)
    a.setup()
    b.setup()
    spec = a.spec()
    assert (spec.num_classes, spec.sensor_size) == (10, (20, 20))
    assert spec.class_names == tuple(str(c) for c in range(10))
    sa, ya = a.train_set[0].values()
    sb, yb = b.train_set[0].values()
    assert ya == yb and len(sa) > 100 and np.array_equal(sa.t, sb.t)
    assert len(a.train_set) + len(a.val_set) + len(a.test_set) == 40
