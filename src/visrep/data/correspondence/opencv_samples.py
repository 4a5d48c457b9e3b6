"""Real image pairs with ground-truth geometry from the OpenCV sample data (Debian's
``opencv-doc``: ``/usr/share/doc/opencv-doc/examples/data``).

``graf1.png`` / ``graf3.png`` are views 1 and 3 of the Graffiti sequence of Mikolajczyk et al.
2005 (a planar wall seen from two viewpoints), with the ground-truth homography ``H1to3p``
(view 1 pixels -> view 3 pixels) in OpenCV's XML storage format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.data.correspondence.pairs import MatchPair, intrinsics_of_size
from visrep.data.correspondence.sift import SiftConfig, opencv, sift_matches
from visrep.errors import DataError

__all__ = ["DEFAULT_OPENCV_SAMPLES", "graf_pair", "read_opencv_matrix", "resize_homography"]

DEFAULT_OPENCV_SAMPLES = "/usr/share/doc/opencv-doc/examples/data"


def read_opencv_matrix(path: str | Path, name: str) -> np.ndarray:
    """The matrix ``name`` of an OpenCV ``FileStorage`` file (XML / YAML), float64 (``DataError``
    when the file or the node is missing or not a matrix)."""
    cv2 = opencv()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"OpenCV matrix file {str(p)!r} does not exist")
    try:
        fs = cv2.FileStorage(str(p), cv2.FILE_STORAGE_READ)
    except cv2.error as e:
        raise DataError(
            f"{str(p)!r} is not an OpenCV storage file: {str(e).splitlines()[0]}"
        ) from None
    try:
        node = fs.getNode(name)
        m = None if node.empty() else node.mat()
    finally:
        fs.release()
    if m is None:
        raise DataError(f"{str(p)!r} has no matrix named {name!r}")
    return np.asarray(m, np.float64)


def resize_homography(H: np.ndarray, s1: float, s2: float) -> np.ndarray:
    """``H`` between images resized by ``s1`` and ``s2`` (``cv2.resize``'s pixel-centre
    convention: ``x' = (x + 0.5) s - 0.5``)."""

    def scaling(s: float) -> np.ndarray:
        return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1.0]])

    out = scaling(s2) @ H @ np.linalg.inv(scaling(s1))
    return out / out[2, 2]


def _read_grey(path: Path) -> np.ndarray:
    cv2 = opencv()
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(f"cannot read image {str(path)!r}")
    return image


def graf_pair(
    root: str | Path = DEFAULT_OPENCV_SAMPLES,
    image_size: int | None = 320,
    sift: SiftConfig = SiftConfig(),
) -> MatchPair:
    """The ``graf1`` -> ``graf3`` pair with its true homography, both images resized so their
    long side is ``image_size`` (None: as they are), matched with :func:`sift_matches`."""
    cv2 = opencv()
    root = Path(root)
    f1, f3, fh = root / "graf1.png", root / "graf3.png", root / "H1to3p.xml"
    for f in (f1, f3, fh):
        if not f.is_file():
            raise DataError(f"OpenCV sample {str(f)!r} is missing (apt-get install opencv-doc)")
    im1, im3 = _read_grey(f1), _read_grey(f3)
    H = read_opencv_matrix(fh, "H13")
    if image_size is not None:
        s1, s3 = image_size / max(im1.shape), image_size / max(im3.shape)
        im1 = cv2.resize(
            im1, (round(im1.shape[1] * s1), round(im1.shape[0] * s1)), interpolation=cv2.INTER_AREA
        )
        im3 = cv2.resize(
            im3, (round(im3.shape[1] * s3), round(im3.shape[0] * s3)), interpolation=cv2.INTER_AREA
        )
        H = resize_homography(H, s1, s3)
    pixels = sift_matches(im1, im3, sift)
    size = (im1.shape[1], im1.shape[0])
    K1, K2 = intrinsics_of_size(*size), intrinsics_of_size(im3.shape[1], im3.shape[0])
    return MatchPair("opencv:graf1-graf3", pixels, H, "homography", K1, K2, size,
                     files=(str(f1), str(f3)))  # fmt: skip
