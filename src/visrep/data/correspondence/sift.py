"""Putative matches between two images: OpenCV SIFT (Lowe 2004) and nearest-neighbour matching
with Lowe's ratio test (sec. 7.1 of Lowe's paper; Yi et al. 2018 keep the plain nearest
neighbours, ``ratio=None``)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from visrep.errors import ConfigError, ShapeError

__all__ = ["SiftConfig", "opencv", "sift_matches"]


def opencv() -> ModuleType:
    """The ``cv2`` module (imported on first use: OpenCV is needed by this family only), or a
    one-line ``ConfigError`` saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise ConfigError(
            "learned correspondences need OpenCV (SIFT, warps, RANSAC): pip install "
            "opencv-python-headless"
        ) from None
    return cv2


@dataclass(frozen=True)
class SiftConfig:
    """Keypoints and matching (``--data.sift.ratio 0.8`` ...).

    Attributes:
        max_keypoints: at most this many SIFT keypoints per image (OpenCV's ``nfeatures``: the
            strongest by response; 2000 in Yi et al.).
        ratio: keep a match when its descriptor distance is below ``ratio`` times the second
            nearest one's (Lowe's test); None keeps every nearest neighbour (Yi et al.).
        mutual: keep only matches that are also nearest neighbours from image 2 to image 1.
    """

    max_keypoints: int = 1000
    ratio: float | None = 0.8
    mutual: bool = False

    def __post_init__(self) -> None:
        if self.max_keypoints < 2:
            raise ConfigError(f"data.sift.max_keypoints must be >= 2, got {self.max_keypoints}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ConfigError(f"data.sift.ratio must be in (0, 1] or null, got {self.ratio}")


def sift_matches(
    image1: np.ndarray, image2: np.ndarray, cfg: SiftConfig = SiftConfig()
) -> np.ndarray:
    """Putative matches ``(N, 4)`` float32 ``(x1, y1, x2, y2)`` in pixels (OpenCV's keypoint
    centres: pixel ``(0, 0)``'s centre is ``(0, 0)``), one per kept keypoint of image 1, in
    keypoint order; deterministic (one OpenCV thread, brute-force matching).

    Args:
        image1, image2: grey uint8 ``(H, W)`` images.
        cfg: keypoint count, ratio test, mutual check.
    """
    for name, im in (("image1", image1), ("image2", image2)):
        if im.ndim != 2 or im.dtype != np.uint8:
            raise ShapeError(
                f"sift_matches: {name} must be grey uint8 (H, W), got {im.shape} {im.dtype}"
            )
    cv2 = opencv()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        sift = cv2.SIFT_create(nfeatures=cfg.max_keypoints)
        k1, d1 = sift.detectAndCompute(image1, None)
        k2, d2 = sift.detectAndCompute(image2, None)
    finally:
        cv2.setNumThreads(threads)
    if d1 is None or d2 is None or len(k1) < 1 or len(k2) < 2:
        return np.zeros((0, 4), np.float32)
    p1 = np.float32([k.pt for k in k1])
    p2 = np.float32([k.pt for k in k2])
    # squared L2 distances of all descriptor pairs, in float64
    a, b = d1.astype(np.float64), d2.astype(np.float64)
    dist = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    two = np.argpartition(dist, 1, axis=1)[:, :2]  # the two nearest, unordered
    order = np.argsort(np.take_along_axis(dist, two, 1), axis=1, kind="stable")
    nn = np.take_along_axis(two, order, 1)
    rows = np.arange(len(a))
    d_first = np.sqrt(np.maximum(dist[rows, nn[:, 0]], 0))
    d_second = np.sqrt(np.maximum(dist[rows, nn[:, 1]], 0))
    keep = np.ones(len(a), bool)
    if cfg.ratio is not None:
        keep &= d_first < cfg.ratio * d_second
    if cfg.mutual:
        keep &= np.argmin(dist, axis=0)[nn[:, 0]] == rows
    j = nn[keep, 0]
    return np.concatenate([p1[keep], p2[j]], 1).astype(np.float32)
