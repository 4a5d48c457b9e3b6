"""An event-camera simulator: frames -> events, and still images -> N-MNIST-like saccades.

An event camera pixel fires when its log intensity has moved by a contrast threshold ``C``
since the pixel's last event (the reference level), with ``C+`` for brightening (ON) and
``C-`` for darkening (OFF) and pixel-to-pixel threshold mismatch (Lichtsteiner et al. 2008; the
seed's "smart pixels ... only transmit brightness changes"). Between two frames the log
intensity is taken to change linearly, so the ``k``-th crossing gets the interpolated time
(ESIM, Rebecq et al. 2018, CoRL, Sec. 3; v2e, Hu et al. 2021, for threshold mismatch and shot
noise). Per frame pair everything is vectorised over pixels and crossings; the loop is over
frames only.

>>> import numpy as np
>>> frames = np.array([1.0, np.e]).reshape(2, 1, 1)  # log intensity rises by 1
>>> s = simulate_events(frames, [0, 1000], pos_threshold=0.3, threshold_sigma=0.0, log_eps=0.0)
>>> s.t.tolist(), s.p.tolist()
([300, 600, 900], [1, 1, 1])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from visrep.errors import ConfigError, DataError
from visrep.events.transforms import refractory_mask
from visrep.events.types import EventStream

__all__ = [
    "saccade_events",
    "saccade_frames",
    "simulate_batch",
    "simulate_events",
]

# Crossings closer than this (in thresholds) to the next level count as reaching it: linear ramps
# built to land exactly on a level must not lose an event to float rounding.
_LEVEL_TOL = 1e-9
_MIN_THRESHOLD = 0.01  # v2e's floor for mismatched thresholds


def _as_frames(frames: object, name: str = "frames") -> np.ndarray:
    """Checked intensities: uint8 kept as is (scaled by 1/255 when used), others as floats."""
    a = np.asarray(frames)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.size and (not np.isfinite(a).all() or a.min() < 0):
        raise DataError(f"{name} must be finite linear intensities >= 0")
    return a


def _intensity(a: np.ndarray) -> np.ndarray:
    return a / 255.0 if a.dtype == np.uint8 else a


def _check_times(timestamps: Sequence[int] | np.ndarray, n_frames: int) -> np.ndarray:
    t = np.asarray(timestamps)
    if t.shape != (n_frames,) or not np.issubdtype(t.dtype, np.integer):
        raise DataError(f"timestamps must be {n_frames} integers (us), got shape {t.shape}")
    if n_frames < 2:
        raise DataError(f"the simulator needs at least 2 frames, got {n_frames}")
    if (np.diff(t) <= 0).any():
        raise DataError("timestamps must be strictly increasing")
    return t.astype(np.int64)


def _simulate_pixels(
    log_frame: Callable[[int], np.ndarray],
    t: np.ndarray,
    c_pos: np.ndarray,
    c_neg: np.ndarray,
    rng: np.random.Generator,
    shot_noise_rate: float,
    refractory_period: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of ``P`` independent pixels, ``log_frame(k) -> (P,)``: (pixel, t, p) sorted by time."""
    ln = log_frame(0)
    ref = ln.copy()  # per-pixel reference: log intensity at the last event
    P = ref.shape[0]
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(len(t) - 1):
        lp, ln = ln, log_frame(k + 1)
        n_pos = np.floor((ln - ref) / c_pos + _LEVEL_TOL).clip(min=0).astype(np.int64)
        n_neg = np.floor((ref - ln) / c_neg + _LEVEL_TOL).clip(min=0).astype(np.int64)
        # ref stays within (ref - C-, ref + C+) of the signal, so at most one of them is > 0
        sign = np.where(n_pos > 0, 1.0, -1.0)
        step = np.where(n_pos > 0, c_pos, c_neg)
        n = n_pos + n_neg
        pix = np.flatnonzero(n)
        cnt = n[pix]
        ev_pix = np.repeat(pix, cnt)
        i = np.arange(ev_pix.size) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1  # crossing 1..n
        level = ref[ev_pix] + sign[ev_pix] * i * step[ev_pix]
        rise = (ln - lp)[ev_pix]
        frac = np.divide(level - lp[ev_pix], rise, out=np.ones_like(rise), where=rise != 0)
        ts = t[k] + np.rint(frac.clip(0, 1) * (t[k + 1] - t[k])).astype(np.int64)
        pol = (sign[ev_pix] > 0).astype(np.int8)
        ref[pix] += sign[pix] * cnt * step[pix]
        if shot_noise_rate > 0:
            m = rng.poisson(shot_noise_rate * 1e-6 * (t[k + 1] - t[k]) * P)
            ev_pix = np.concatenate([ev_pix, rng.integers(0, P, m)])
            ts = np.concatenate([ts, rng.integers(t[k] + 1, t[k + 1] + 1, m)])
            pol = np.concatenate([pol, rng.integers(0, 2, m).astype(np.int8)])
        order = np.lexsort((ev_pix, ts))
        pieces.append((ev_pix[order], ts[order], pol[order]))
    pix, ts, pol = (np.concatenate(a) for a in zip(*pieces, strict=True))
    if refractory_period > 0:
        keep = refractory_mask(pix, ts, refractory_period)
        pix, ts, pol = pix[keep], ts[keep], pol[keep]
    return pix, ts, pol


def simulate_batch(
    frames: np.ndarray,
    timestamps: Sequence[int] | np.ndarray,
    pos_threshold: float = 0.2,
    neg_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period: int = 0,
    shot_noise_rate: float = 0.0,
    log_eps: float = 1e-3,
    rng: np.random.Generator | int = 0,
) -> list[EventStream]:
    """Simulate ``N`` recordings that share frame times at once (one loop over frames for all).

    Args:
        frames: ``(N, T, H, W)`` linear intensities (floats >= 0, or uint8 scaled by 1/255).
        timestamps: ``(T,)`` strictly increasing frame times in microseconds.
        pos_threshold, neg_threshold: Mean contrast thresholds ``C+``, ``C-`` (log units).
        threshold_sigma: Std of the per-pixel Gaussian threshold mismatch (floored at 0.01).
        refractory_period: Per-pixel dead time in microseconds after each event (ESIM's rule:
            the reference still moves during it).
        shot_noise_rate: Rate of spurious events per pixel in Hz (uniform times, random sign);
            they do not move the reference.
        log_eps: ``L = log(I + eps)``; keeps black pixels finite.
        rng: Generator or seed for the thresholds and the noise.

    Returns:
        One :class:`EventStream` per recording, sensor size ``(W, H)``.
    """
    f = _as_frames(frames)
    if f.ndim != 4:
        raise DataError(f"frames must be (N, T, H, W), got shape {f.shape}")
    N, T, H, W = f.shape
    t = _check_times(timestamps, T)
    for name, v in (("pos_threshold", pos_threshold), ("neg_threshold", neg_threshold)):
        if not v > 0:
            raise ConfigError(f"{name} must be > 0, got {v}")
    if threshold_sigma < 0 or shot_noise_rate < 0 or refractory_period < 0 or log_eps < 0:
        raise ConfigError(
            "threshold_sigma, shot_noise_rate, refractory_period, log_eps must be >= 0"
        )
    gen = np.random.default_rng(rng)
    P = N * H * W
    c_pos = np.maximum(pos_threshold + threshold_sigma * gen.standard_normal(P), _MIN_THRESHOLD)
    c_neg = np.maximum(neg_threshold + threshold_sigma * gen.standard_normal(P), _MIN_THRESHOLD)
    if log_eps == 0 and f.size and f.min() <= 0:
        raise ConfigError("log_eps = 0 needs strictly positive intensities")

    def log_frame(k: int) -> np.ndarray:
        return np.log(_intensity(f[:, k].reshape(P)) + log_eps)

    pix, ts, pol = _simulate_pixels(
        log_frame, t, c_pos, c_neg, gen, float(shot_noise_rate), int(refractory_period)
    )
    sample, rem = np.divmod(pix, H * W)
    if N > 1:  # stable: time order is kept within each recording (radix sort for small keys)
        order = np.argsort(sample.astype(np.min_scalar_type(N)), kind="stable")
        sample, rem, ts, pol = sample[order], rem[order], ts[order], pol[order]
    bounds = np.searchsorted(sample, np.arange(N + 1))
    y, x = np.divmod(rem, W)
    return [
        EventStream(x[a:b], y[a:b], ts[a:b], pol[a:b], (W, H))
        for a, b in itertools.pairwise(bounds)
    ]


def simulate_events(
    frames: np.ndarray,
    timestamps: Sequence[int] | np.ndarray,
    pos_threshold: float = 0.2,
    neg_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period: int = 0,
    shot_noise_rate: float = 0.0,
    log_eps: float = 1e-3,
    rng: np.random.Generator | int = 0,
) -> EventStream:
    """Events of one video: ``frames (T, H, W)`` at ``timestamps (T,)`` us; see
    :func:`simulate_batch` for the options."""
    f = _as_frames(frames)
    if f.ndim != 3:
        raise DataError(f"frames must be (T, H, W) grey intensities, got shape {f.shape}")
    return simulate_batch(
        f[None],
        timestamps,
        pos_threshold,
        neg_threshold,
        threshold_sigma,
        refractory_period,
        shot_noise_rate,
        log_eps,
        rng,
    )[0]


def _take(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``out[..., i, ...] = a[..., i + k, ...]`` along ``axis``, zero outside."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    if abs(k) < n:
        dst = [slice(None)] * a.ndim
        src = [slice(None)] * a.ndim
        dst[axis], src[axis] = slice(max(-k, 0), n - max(k, 0)), slice(max(k, 0), n - max(-k, 0))
        out[tuple(dst)] = a[tuple(src)]
    return out


def _bilinear_shift(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move images ``a (B, H, W)`` by ``(dx, dy)`` pixels with bilinear interpolation, zero fill."""
    out = np.zeros_like(a)
    kx, ky = math.floor(-dx), math.floor(-dy)  # sample at x - dx = x + kx + rx, rx in [0, 1)
    rx, ry = -dx - kx, -dy - ky
    for oy, wy in ((ky, 1 - ry), (ky + 1, ry)):
        rows = _take(a, oy, 1)
        for ox, wx in ((kx, 1 - rx), (kx + 1, rx)):
            if wx * wy > 0:
                out += wx * wy * _take(rows, ox, 2)
    return out


def saccade_frames(
    images: np.ndarray,
    amplitude: float = 3.0,
    duration: int = 300_000,
    frames_per_saccade: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Render still images moved along N-MNIST's three saccades.

    N-MNIST (Orchard et al. 2015, Front. Neurosci., Sec. 2.2) moves the ATIS camera in three
    ~100 ms saccades along an isosceles triangle in front of the digit. Here the image moves
    instead (the same relative motion): top ``(0, -A)`` -> bottom right ``(A, A)`` -> bottom left
    ``(-A, A)`` -> top, each side taking ``duration / 3``, rendered by bilinear sub-pixel shifts
    (zero outside) on a canvas with a margin of ``ceil(A)`` pixels (28x28 MNIST with ``A = 3`` -> 34x34).

    Args:
        images: ``(..., H, W)`` linear intensities (uint8 or floats).
        amplitude: ``A`` in pixels.
        duration: Total duration in microseconds.
        frames_per_saccade: Frames rendered per side of the triangle.

    Returns:
        ``frames (..., T, H + 2m, W + 2m)`` with ``T = 3 * frames_per_saccade + 1`` and their
        ``timestamps (T,)`` in microseconds.
    """
    img = _intensity(_as_frames(images, "images"))
    if img.ndim < 2:
        raise DataError(f"images must be (..., H, W), got shape {img.shape}")
    if amplitude <= 0 or duration < 3 * frames_per_saccade or frames_per_saccade < 1:
        raise ConfigError(
            f"need amplitude > 0 and duration >= 3 * frames_per_saccade >= 3, got {amplitude}, "
            f"{duration}, {frames_per_saccade}"
        )
    m = math.ceil(amplitude)
    lead = img.shape[:-2]
    flat = img.reshape(-1, *img.shape[-2:])
    canvas = np.pad(flat, ((0, 0), (m, m), (m, m)))
    corners = amplitude * np.array([(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0), (0.0, -1.0)])
    s = np.arange(frames_per_saccade) / frames_per_saccade
    path = np.concatenate(
        [corners[i] + s[:, None] * (corners[i + 1] - corners[i]) for i in range(3)] + [corners[3:]]
    )
    frames = np.stack([_bilinear_shift(canvas, dx, dy) for dx, dy in path], 1)
    t = np.rint(np.linspace(0, duration, len(path))).astype(np.int64)
    return frames.reshape(*lead, *frames.shape[1:]), t


def saccade_events(
    image: np.ndarray,
    amplitude: float = 3.0,
    duration: int = 300_000,
    frames_per_saccade: int = 20,
    pos_threshold: float = 0.2,
    neg_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory_period: int = 0,
    shot_noise_rate: float = 0.0,
    log_eps: float = 0.1,
    rng: np.random.Generator | int = 0,
) -> EventStream:
    """An N-MNIST-like recording of a still grey ``image (H, W)``: :func:`saccade_frames` then
    :func:`simulate_events`. The sensor is ``(W + 2m, H + 2m)`` with ``m = ceil(amplitude)``."""
    frames, t = saccade_frames(image, amplitude, duration, frames_per_saccade)
    if frames.ndim != 3:
        raise DataError(f"image must be (H, W) grey, got shape {np.shape(image)}")
    return simulate_events(
        frames,
        t,
        pos_threshold,
        neg_threshold,
        threshold_sigma,
        refractory_period,
        shot_noise_rate,
        log_eps,
        rng,
    )
