"""Real calibrated stereo pairs with a known relative pose: essential-matrix pairs.

LIBRARY API FOR EVALUATION, reachable from Python only: no DataModule option or shipped config
serves these pairs (14 pairs of two rigs are a test set, not a training set; the CLI trains and
tests on homography pairs, :class:`~visrep.data.correspondence.HomographyPairsDataModule`). To
score an essential-matrix model on them, wrap them in a
:class:`~visrep.data.correspondence.MatchPairDataset` (samples carry ``essential`` and the true
``pose``) in a DataModule whose spec names ``essential``; :class:`~visrep.tasks.CorrespondenceTask`
then takes its ESSENTIAL branch (eight-point algorithm, five-point RANSAC, pose errors).

* The Middlebury 2014 "Motorcycle" pair that ships with scikit-image
  (``skimage.data.stereo_motorcycle``, 4x downsampled, rectified): camera 1 is camera 0 moved
  by the baseline along x, ``R = I``, ``t = (-1, 0, 0)`` (unit), focal 994.978 px, principal
  points ``(311.193, 254.877)`` and ``(311.193 + doffs, 254.877)`` with ``doffs = 31.086``
  (the calibration in scikit-image's docstring). Its inliers are known from the ground-truth
  disparity ``d`` (a match is right when ``|u2 - (u1 - d(u1, v1))|`` and ``|v2 - v1|`` are
  below 2 px): on a rectified pair the epipolar test alone accepts every wrong match along the
  same row (19% of the ratio-test matches are such).
* The 13 chessboard pairs of OpenCV's ``stereo_calib`` sample (``left01.jpg`` /
  ``right01.jpg`` ...): one fixed stereo rig, calibrated here with ``cv2.stereoCalibrate`` from
  the 9 x 6 inner corners of the board (common focal length, two radial coefficients); the
  matches are undistorted, so ``pixels = K x_normalised`` holds exactly.

The chessboard pairs' inliers are the matches whose squared symmetric epipolar distance under
the true ``E`` is below 1e-4 (normalised coordinates), Yi et al.'s labelling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.data.correspondence.pairs import MatchPair
from visrep.data.correspondence.sift import SiftConfig, opencv, sift_matches
from visrep.errors import DataError

__all__ = ["MOTORCYCLE", "chessboard_stereo_pairs", "motorcycle_pair", "stereo_calibration"]

MOTORCYCLE = {"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_mm": 193.001}
CHESSBOARD_PAIRS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14)


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]], np.float64)


def _grey(image: np.ndarray) -> np.ndarray:
    cv2 = opencv()
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image.astype(np.uint8))


def motorcycle_pair(
    sift: SiftConfig = SiftConfig(),
    threshold: float = 2.0,
) -> MatchPair:
    """The rectified Middlebury Motorcycle pair (scikit-image) with its calibration (module
    docstring) and SIFT matches: an essential-matrix pair, ``E = [t]_x`` with ``t = (-1, 0, 0)``,
    labelled by the ground-truth disparity (``threshold`` pixels)."""
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    im1, im2 = _grey(left), _grey(right)
    c = MOTORCYCLE
    K1 = np.array([[c["f"], 0, c["cx"]], [0, c["f"], c["cy"]], [0, 0, 1.0]])
    K2 = K1.copy()
    K2[0, 2] += c["doffs"]
    E = _skew(np.array([-1.0, 0.0, 0.0]))  # R = I
    size = (im1.shape[1], im1.shape[0])
    m = sift_matches(im1, im2, sift)
    u = np.clip(np.rint(m[:, 0]).astype(int), 0, disparity.shape[1] - 1)
    v = np.clip(np.rint(m[:, 1]).astype(int), 0, disparity.shape[0] - 1)
    d = disparity[v, u]  # +inf where unknown
    with np.errstate(invalid="ignore"):
        labels = (np.abs(m[:, 2] - (m[:, 0] - d)) < threshold) & (
            np.abs(m[:, 3] - m[:, 1]) < threshold
        )
    pose = np.concatenate([np.eye(3), [[-1.0], [0.0], [0.0]]], 1)
    return MatchPair(
        "skimage:motorcycle", m, E, "essential", K1, K2, size,
        labels=labels & np.isfinite(d), pose=pose,
    )  # fmt: skip


def stereo_calibration(
    folder: str | Path, board: tuple[int, int] = (9, 6)
) -> dict[str, np.ndarray]:
    """``cv2.stereoCalibrate`` of OpenCV's chessboard pairs in ``folder`` (``leftNN.jpg`` /
    ``rightNN.jpg``): ``K1, D1, K2, D2, R, T`` (``X2 = R X1 + T``, in board squares) and the
    RMS reprojection error ``rms`` (``DataError`` when the images or corners are missing)."""
    cv2 = opencv()
    folder = Path(folder)
    obj = np.zeros((board[0] * board[1], 3), np.float32)
    obj[:, :2] = np.mgrid[0 : board[0], 0 : board[1]].T.reshape(-1, 2)
    objects, left, right, size = [], [], [], None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    for i in CHESSBOARD_PAIRS:
        corners = []
        for side in ("left", "right"):
            path = folder / f"{side}{i:02d}.jpg"
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise DataError(
                    f"chessboard stereo pair image {str(path)!r} is missing or unreadable"
                )
            size = image.shape[::-1]
            found, c = cv2.findChessboardCorners(image, board)
            corners.append(
                cv2.cornerSubPix(image, c, (11, 11), (-1, -1), criteria) if found else None
            )
        if corners[0] is not None and corners[1] is not None:
            objects.append(obj)
            left.append(corners[0])
            right.append(corners[1])
    if len(objects) < 3:
        raise DataError(
            f"{str(folder)!r}: the {board} chessboard is found in {len(objects)} pairs, need 3"
        )
    flags = (
        cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_SAME_FOCAL_LENGTH
        | cv2.CALIB_FIX_K3
    )  # fmt: skip
    rms, K1, D1, K2, D2, R, T, _, _ = cv2.stereoCalibrate(
        objects, left, right, None, None, None, None, size, flags=flags,
        criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-5),
    )  # fmt: skip
    return {"K1": K1, "D1": D1, "K2": K2, "D2": D2, "R": R, "T": T[:, 0], "rms": np.float64(rms)}


def chessboard_stereo_pairs(
    folder: str | Path,
    sift: SiftConfig = SiftConfig(),
) -> list[MatchPair]:
    """OpenCV's 13 chessboard stereo pairs as essential-matrix pairs: the rig calibrated with
    :func:`stereo_calibration`, SIFT matches undistorted (pixels = ``K`` times the undistorted
    normalised point), ``E = [T]_x R``."""
    cv2 = opencv()
    folder = Path(folder)
    cal = stereo_calibration(folder)
    E = _skew(cal["T"]) @ cal["R"]
    pose = np.concatenate([cal["R"], cal["T"][:, None] / np.linalg.norm(cal["T"])], 1)
    pairs = []
    for i in CHESSBOARD_PAIRS:
        im1 = cv2.imread(str(folder / f"left{i:02d}.jpg"), cv2.IMREAD_GRAYSCALE)
        im2 = cv2.imread(str(folder / f"right{i:02d}.jpg"), cv2.IMREAD_GRAYSCALE)
        m = sift_matches(im1, im2, sift).astype(np.float64)
        cols = []
        for k, K, D in ((0, cal["K1"], cal["D1"]), (2, cal["K2"], cal["D2"])):
            x = cv2.undistortPoints(m[:, None, k : k + 2], K, D)[:, 0]  # normalised
            cols.append(x * np.diag(K)[:2] + K[:2, 2])
        pixels = np.concatenate(cols, 1).astype(np.float32)
        size = (im1.shape[1], im1.shape[0])
        pairs.append(MatchPair(f"opencv:stereo{i:02d}", pixels, E / np.linalg.norm(E), "essential",
                               cal["K1"], cal["K2"], size, files=(str(folder / f"left{i:02d}.jpg"),
                               str(folder / f"right{i:02d}.jpg")), pose=pose))  # fmt: skip
    return pairs
