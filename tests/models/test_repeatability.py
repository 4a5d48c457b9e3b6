"""Repeatability and matching score (visrep.models.correspondence.repeatability), and OpenCV's
SIFT / ORB on graf1 -> graf3 with the true homography."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visrep.data.correspondence.opencv_samples import DEFAULT_OPENCV_SAMPLES
from visrep.errors import DataError
from visrep.models.correspondence.repeatability import (
    compare_features,
    graf_images,
    matching_score,
    repeatability,
)

GRAF = Path(DEFAULT_OPENCV_SAMPLES)
needs_graf = pytest.mark.skipif(
    not (GRAF / "H1to3p.xml").is_file(), reason="opencv-doc samples absent"
)


def test_repeatability_and_matching_score_by_hand():
    H = np.array([[1.0, 0, 5], [0, 1, 0], [0, 0, 1]])  # image 2 = image 1 shifted 5 px right
    kp1 = np.array([[2.0, 2], [10, 10], [20, 4], [29, 5]])  # (29, 5) -> (34, 5): outside image 2
    kp2 = np.array([[7.5, 2], [15, 10], [3, 3], [40, 8]])  # (3, 3) -> (-2, 3): outside image 1
    size = (32, 16)
    # shared: kp1[:3] and kp2[:2] ((40, 8) maps back outside image 1); kp1[0], kp1[1] repeat
    assert repeatability(kp1, kp2, H, size, size) == pytest.approx((2 + 2) / (3 + 2))
    d1 = np.eye(4, dtype=np.float32)
    d2 = np.eye(4, dtype=np.float32)[[0, 2, 3, 1]]  # kp2[0] looks like kp1[0], kp2[1] like kp1[2]
    # mutual nearest neighbours among the shared ones: (kp1[0], kp2[0]) correct, (kp1[2], kp2[1])
    # wrong place
    assert matching_score(kp1, d1, kp2, d2, H, size, size) == pytest.approx(1 / 2.5)
    assert np.isnan(repeatability(kp1[:0], kp2[:0], H, size, size))


def test_binary_descriptors_match_by_hamming_distance():
    kp = np.array([[4.0, 4], [12, 12]])
    d = np.array([[0b11110000], [0b00001111]], np.uint8)
    assert matching_score(kp, d, kp, d[::-1].copy(), np.eye(3), (16, 16), (16, 16)) == 0.0
    assert matching_score(kp, d, kp, d, np.eye(3), (16, 16), (16, 16)) == 1.0


@needs_graf
def test_sift_and_orb_on_graf1_graf3():
    im1, im3, H = graf_images(GRAF, 320)
    assert im1.shape == (256, 320) and H.shape == (3, 3)
    rows = {r["method"]: r for r in compare_features(im1, im3, H, {}, num=300)}
    assert set(rows) == {"sift", "orb"}
    for r in rows.values():
        assert 0 < r["repeatability"] <= 1 and 0 < r["matching_score"] <= 1
        assert 0 < r["keypoints"] <= 300
    # the true homography matters: a wrong one ruins the repeatability
    wrong = compare_features(im1, im3, np.eye(3) @ np.diag([1.0, 1.0, 1.0]), {}, num=300)
    assert wrong[0]["repeatability"] < rows["sift"]["repeatability"]


def test_graf_images_missing(tmp_path):
    with pytest.raises(DataError, match="opencv-doc"):
        graf_images(tmp_path)
