"""Evaluating local features on an image pair with a known homography: repeatability and
matching score (LIFT, Yi et al. 2016, Sec. 5.2, after Mikolajczyk et al. 2005 and Strecha et
al.), and OpenCV's SIFT and ORB as the baselines on the same pair and keypoint budget.

Both measures count only keypoints in the region both images show (a keypoint of image 1 whose
projection ``H p`` falls inside image 2, and a keypoint of image 2 whose back-projection falls
inside image 1):

* repeatability: the share of these keypoints with a keypoint of the other image within
  ``threshold`` pixels after projection, ``(n_1^rep + n_2^rep) / (n_1 + n_2)`` (the symmetric
  point form SuperPoint also uses);
* matching score: the mutual nearest-neighbour descriptor matches that are correct (``||H p_1
  - p_2|| < threshold``), over the mean number of shared-region keypoints (LIFT: "the ratio of
  ground truth correspondences that can be recovered by the whole pipeline over the number of
  features proposed by the pipeline in the shared viewpoint region").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from visrep.data.correspondence.opencv_samples import (
    DEFAULT_OPENCV_SAMPLES,
    read_opencv_matrix,
    resize_homography,
)
from visrep.data.correspondence.sift import opencv
from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "Extractor",
    "compare_features",
    "graf_images",
    "matching_score",
    "opencv_features",
    "project",
    "repeatability",
]

# image (grey uint8) -> keypoints (N, 5) x, y, scale, angle, score; descriptors (N, D)
Extractor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def project(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``H`` applied to pixel points ``(N, 2)``."""
    x = np.concatenate([points[:, :2], np.ones((len(points), 1))], 1) @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return x[:, :2] / x[:, 2:]


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return (
        np.isfinite(points).all(1)
        & (points[:, 0] >= -0.5) & (points[:, 0] <= w - 0.5)
        & (points[:, 1] >= -0.5) & (points[:, 1] <= h - 0.5)
    )  # fmt: skip


def _shared(
    kp1: np.ndarray, kp2: np.ndarray, H: np.ndarray, size1: tuple[int, int], size2: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the shared-region keypoints of each image and ``H p_1``."""
    if kp1.ndim != 2 or kp2.ndim != 2 or kp1.shape[1] < 2 or kp2.shape[1] < 2:
        raise ShapeError(f"keypoints must be (N, >= 2), got {kp1.shape} and {kp2.shape}")
    q1 = project(H, kp1)
    return _inside(q1, size2), _inside(project(np.linalg.inv(H), kp2), size1), q1


def _dist2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def repeatability(
    kp1: np.ndarray,
    kp2: np.ndarray,
    H: np.ndarray,
    size1: tuple[int, int],
    size2: tuple[int, int],
    threshold: float = 3.0,
) -> float:
    """Repeatability (module docstring) of keypoints ``(N, >= 2)`` and ``(M, >= 2)`` (x, y first)
    of images of ``(w, h)`` ``size1`` and ``size2``; NaN when no keypoint is in the shared region.

    >>> kp = np.array([[10.0, 10.0], [20.0, 5.0]])
    >>> repeatability(kp, kp + [1.0, 0.0], np.eye(3), (32, 32), (32, 32))
    1.0
    """
    in1, in2, q1 = _shared(kp1, kp2, H, size1, size2)
    n1, n2 = int(in1.sum()), int(in2.sum())
    if n1 + n2 == 0:
        return float("nan")
    if n1 == 0 or n2 == 0:
        return 0.0
    d = _dist2(q1[in1], kp2[in2, :2])
    close = d < threshold**2
    return float((close.any(1).sum() + close.any(0).sum()) / (n1 + n2))


def _descriptor_distances(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Squared L2 distances; binary (uint8) descriptors by their Hamming distance."""
    if d1.dtype == np.uint8 and d2.dtype == np.uint8:
        d1, d2 = np.unpackbits(d1, axis=1), np.unpackbits(d2, axis=1)
    a, b = d1.astype(np.float64), d2.astype(np.float64)
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)


def matching_score(
    kp1: np.ndarray,
    d1: np.ndarray,
    kp2: np.ndarray,
    d2: np.ndarray,
    H: np.ndarray,
    size1: tuple[int, int],
    size2: tuple[int, int],
    threshold: float = 3.0,
) -> float:
    """Matching score (module docstring): correct mutual nearest-neighbour matches between the
    shared-region keypoints over their mean count; NaN when none is in the shared region."""
    if len(d1) != len(kp1) or len(d2) != len(kp2):
        raise ShapeError(
            f"one descriptor per keypoint expected: {len(kp1)}/{len(d1)}, {len(kp2)}/{len(d2)}"
        )
    in1, in2, q1 = _shared(kp1, kp2, H, size1, size2)
    n1, n2 = int(in1.sum()), int(in2.sum())
    if n1 + n2 == 0:
        return float("nan")
    if n1 == 0 or n2 == 0:
        return 0.0
    dd = _descriptor_distances(d1[in1], d2[in2])
    nn12, nn21 = dd.argmin(1), dd.argmin(0)
    mutual = nn21[nn12] == np.arange(n1)
    err = np.linalg.norm(q1[in1] - kp2[in2][nn12, :2], axis=1)
    correct = int((mutual & (err < threshold)).sum())
    return float(correct / ((n1 + n2) / 2))


def opencv_features(
    image: np.ndarray, method: str = "sift", num: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's SIFT (float descriptors) or ORB (binary, uint8) on a grey uint8 image: keypoints
    ``(N, 5)`` x, y, scale (half the keypoint's size), angle (radians), response, strongest
    first, ``N <= num``; one OpenCV thread (deterministic)."""
    cv2 = opencv()
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ShapeError(
            f"opencv_features: a grey uint8 (H, W) image expected, got {image.shape} {image.dtype}"
        )
    if method not in ("sift", "orb"):
        raise ConfigError(f"--method must be lift, sift or orb, got {method!r}")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        det = cv2.SIFT_create(nfeatures=num) if method == "sift" else cv2.ORB_create(nfeatures=num)
        kps, desc = det.detectAndCompute(image, None)
    finally:
        cv2.setNumThreads(threads)
    width = 128 if method == "sift" else 32
    if desc is None or not kps:
        return np.zeros((0, 5), np.float32), np.zeros(
            (0, width), np.float32 if method == "sift" else np.uint8
        )
    kp = np.float32([[k.pt[0], k.pt[1], k.size / 2, np.deg2rad(k.angle), k.response] for k in kps])
    order = np.argsort(-kp[:, 4], kind="stable")[:num]
    return kp[order], desc[order]


def graf_images(
    root: str | Path = DEFAULT_OPENCV_SAMPLES, image_size: int | None = 320
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``graf1``, ``graf3`` (grey uint8, long side ``image_size``; None: 800 x 640 as stored) and
    the true homography ``H1to3p`` between them (``DataError`` when the files are missing)."""
    cv2 = opencv()
    root = Path(root)
    files = [root / "graf1.png", root / "graf3.png", root / "H1to3p.xml"]
    for f in files:
        if not f.is_file():
            raise DataError(f"OpenCV sample {str(f)!r} is missing (apt-get install opencv-doc)")
    ims = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files[:2]]
    if any(im is None for im in ims):
        raise DataError(f"cannot read {files[0]} / {files[1]}")
    H = read_opencv_matrix(files[2], "H13")
    if image_size is not None:
        s = [image_size / max(im.shape) for im in ims]
        ims = [cv2.resize(im, (round(im.shape[1] * k), round(im.shape[0] * k)), interpolation=cv2.INTER_AREA)
               for im, k in zip(ims, s, strict=True)]  # fmt: skip
        H = resize_homography(H, s[0], s[1])
    return ims[0], ims[1], H


def compare_features(
    image1: np.ndarray,
    image2: np.ndarray,
    H: np.ndarray,
    extractors: dict[str, Extractor],
    num: int = 500,
    threshold: float = 3.0,
) -> list[dict[str, float | str | int]]:
    """One row per method: ``method``, ``keypoints`` (the fewest of the two images),
    ``repeatability`` and ``matching_score``, every method cut to the same ``num`` strongest
    keypoints; OpenCV's ``sift`` and ``orb`` are added when not given."""
    methods = {m: (lambda im, m=m: opencv_features(im, m, num)) for m in ("sift", "orb")}
    methods = {**extractors, **{k: v for k, v in methods.items() if k not in extractors}}
    size1, size2 = (image1.shape[1], image1.shape[0]), (image2.shape[1], image2.shape[0])
    rows: list[dict[str, float | str | int]] = []
    for name, extract in methods.items():
        k1, d1 = extract(image1)
        k2, d2 = extract(image2)
        k1, d1, k2, d2 = k1[:num], d1[:num], k2[:num], d2[:num]
        rows.append({
            "method": name,
            "keypoints": int(min(len(k1), len(k2))),
            "repeatability": repeatability(k1, k2, H, size1, size2, threshold),
            "matching_score": matching_score(k1, d1, k2, d2, H, size1, size2, threshold),
        })  # fmt: skip
    return rows
