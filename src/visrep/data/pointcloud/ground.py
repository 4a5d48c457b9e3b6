"""A non-learned baseline for object / background segmentation of a LiDAR scan: fit the ground
plane (RANSAC, Fischler and Bolles 1981, then a least-squares refit on its inliers) and call a
point an object when its height above that plane lies in a band.

The band's top is the tallest training box; its bottom is the threshold that maximises the
object IoU on the TRAINING points, so nothing of the held-out region is used. Also the IoU
arithmetic both the baseline and the demo's report use, from a confusion matrix.
"""

from __future__ import annotations

import math

import numpy as np

from visrep.errors import ConfigError, DataError, ShapeError

__all__ = ["confusion_iou", "fit_ground_plane", "fit_height_band", "height_above"]


def fit_ground_plane(
    xyz: np.ndarray,
    threshold: float = 0.15,
    hypotheses: int = 2000,
    max_tilt_deg: float = 15.0,
    seed: int = 0,
) -> np.ndarray:
    """The dominant near-horizontal plane of a scan, ``(a, b, c, d)`` with ``(a, b, c)`` a unit
    normal pointing up (``c > 0``) and ``a x + b y + c z + d`` the signed height above it.

    RANSAC over ``hypotheses`` random point triples at once (seeded), keeping planes tilted at
    most ``max_tilt_deg`` from horizontal; the one with most points within ``threshold`` is
    refit by least squares (the smallest singular vector of its centred inliers).

    >>> rng = np.random.default_rng(0)
    >>> flat = np.c_[rng.uniform(-5, 5, (200, 2)), np.full(200, -1.7)]
    >>> fit_ground_plane(np.r_[flat, rng.uniform(-5, 5, (50, 3))]).round(6).tolist()
    [0.0, 0.0, 1.0, 1.7]
    """
    p = np.asarray(xyz, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3 or len(p) < 3:
        raise ShapeError(f"fit_ground_plane: points must be (N >= 3, >= 3), got {p.shape}")
    p = p[:, :3]
    rng = np.random.default_rng(seed)
    tri = p[rng.integers(0, len(p), (hypotheses, 3))]  # (T, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-12
    n, tri = n[ok] / norm[ok, None], tri[ok]
    n *= np.sign(n[:, 2:3] + (n[:, 2:3] == 0))
    ok = n[:, 2] >= math.cos(math.radians(max_tilt_deg))
    n, tri = n[ok], tri[ok]
    if not len(n):
        raise DataError("fit_ground_plane: no near-horizontal plane among the sampled triples")
    d = -(n * tri[:, 0]).sum(1)
    best, best_count = 0, -1
    for s in range(0, len(n), 256):  # (N, 256) distances at a time
        counts = (np.abs(p @ n[s : s + 256].T + d[s : s + 256]) < threshold).sum(0)
        j = int(counts.argmax())
        if counts[j] > best_count:
            best, best_count = s + j, int(counts[j])
    inl = p[np.abs(p @ n[best] + d[best]) < threshold]
    centre = inl.mean(0)
    normal = np.linalg.svd(inl - centre, full_matrices=False)[2][-1]
    normal = normal if normal[2] > 0 else -normal
    return np.r_[normal, -normal @ centre]


def height_above(xyz: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Signed height of each point above ``plane`` (``(a, b, c, d)``, unit normal)."""
    return np.asarray(xyz, dtype=np.float64)[:, :3] @ plane[:3] + plane[3]


def confusion_iou(
    pred: np.ndarray, truth: np.ndarray, k: int, ignore: int | None = None
) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)`` over the points whose truth is not ``ignore``;
    NaN for a class absent from both.

    >>> confusion_iou(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2).round(4).tolist()
    [0.6667, 0.5]
    """
    pred, truth = np.asarray(pred).ravel(), np.asarray(truth).ravel()
    keep = np.ones(len(truth), bool) if ignore is None else truth != ignore
    cm = np.bincount(truth[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def fit_height_band(
    height: np.ndarray,
    is_object: np.ndarray,
    top: float,
    candidates: np.ndarray | None = None,
) -> float:
    """The bottom of the height band ``(bottom, top]`` that maximises the object IoU of
    ``height`` against ``is_object`` (training points), among ``candidates`` (default 0 to 1
    m in 2 cm steps).

    >>> fit_height_band(np.array([0.0, 0.05, 0.5, 1.0]), np.array([0, 0, 1, 1], bool), 2.0)
    0.06
    """
    if top <= 0:
        raise ConfigError(f"the band's top must be > 0, got {top}")
    c = np.round(np.arange(0, 1.0001, 0.02), 6) if candidates is None else np.asarray(candidates)
    h, y = np.asarray(height)[:, None], np.asarray(is_object, bool)[:, None]
    pred = (h > c[None]) & (h <= top)  # (N, C)
    tp = (pred & y).sum(0)
    iou = tp / np.maximum(pred.sum(0) + y.sum() - tp, 1)
    return float(c[int(iou.argmax())])
