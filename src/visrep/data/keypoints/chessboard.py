"""Chessboard inner corners as keypoints: ground truth from OpenCV's detector on real photos
(the OpenCV samples ``left01..14.jpg`` / ``right01..14.jpg``, a 9 x 6 pattern).

``cv2.findChessboardCorners`` then ``cv2.cornerSubPix`` (11 x 11 window, 30 iterations or
0.001 px) give the ``cols x rows`` corners row by row. The detector may start from either end
of the pattern (the order of two photos of the same board can differ by a 180 degree turn),
so the corners are made identifiable by a canonical order: of the two orders (OpenCV's and
its reverse, which is the pattern turned by 180 degrees and keeps its handedness), the one
whose FIRST corner has the smaller ``x + y`` (the top-left-most end) is kept. The ``K =
cols x rows`` keypoints are then "corner (row r, column c) of the pattern counted from that
end". On the 26 sample photos the detector's handedness agrees everywhere, so no mirrored
order is needed. Boards turned by about 45 degrees would make the rule ambiguous; the
samples have none.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.keypoints.base import KeypointAugment, KeypointDataModule, KeypointRecord
from visrep.data.keypoints.csvfile import write_keypoint_csv
from visrep.errors import ConfigError, DataError

OPENCV_SAMPLES = "/usr/share/doc/opencv-doc/examples/data"


def chessboard_corners(gray: np.ndarray, pattern: tuple[int, int] = (9, 6)) -> np.ndarray | None:
    """The canonically ordered inner corners ``(cols * rows, 2)`` (x, y) of a grey uint8 image,
    sub-pixel refined, or None when OpenCV finds no full pattern."""
    import cv2

    found, corners = cv2.findChessboardCorners(
        gray, tuple(pattern), flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    )
    if not found:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001)
    corners = cv2.cornerSubPix(gray, corners, (11, 11), (-1, -1), criteria).reshape(-1, 2)
    if corners[0].sum() > corners[-1].sum():  # start from the top-left-most end
        corners = corners[::-1]
    return np.ascontiguousarray(corners, dtype=np.float32)


def chessboard_records(
    image_dir: str | Path, files: str = "*[0-9][0-9].jpg", pattern: tuple[int, int] = (9, 6)
) -> tuple[list[KeypointRecord], list[str]]:
    """One record per photo in ``image_dir`` matching ``files`` whose pattern OpenCV finds
    (all corners visible, v = 2), and the names of the photos where it does not. A photo's
    group is the number in its name (``left03`` and ``right03`` show one scene)."""
    import cv2

    folder = Path(image_dir)
    if not folder.is_dir():
        raise DataError(
            f"chessboard folder {str(folder)!r} does not exist (apt-get install opencv-doc)"
        )
    paths = sorted(folder.glob(files))
    if not paths:
        raise DataError(f"chessboard folder {str(folder)!r} holds no files matching {files!r}")
    records, missed = [], []
    for p in paths:
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DataError(f"cannot read image {str(p)!r}")
        corners = chessboard_corners(gray, pattern)
        if corners is None:
            missed.append(p.name)
            continue
        kp = np.concatenate((corners, np.full((len(corners), 1), 2.0, np.float32)), 1)
        digits = re.findall(r"\d+", p.stem)
        records.append(KeypointRecord(str(p), kp, group=digits[-1] if digits else p.stem))
    return records, missed


def write_chessboard_csv(
    image_dir: str | Path,
    out_csv: str | Path,
    pattern: tuple[int, int] = (9, 6),
    files: str = "*[0-9][0-9].jpg",
) -> list[str]:
    """Detect the chessboard corners of the photos in ``image_dir`` and write them as a keypoint
    CSV (``file, x1, y1, v1, ...``, file names relative to ``image_dir``); returns the photos
    where no full pattern was found (left out)."""
    records, missed = chessboard_records(image_dir, files, pattern)
    if not records:
        raise DataError(f"no {pattern[0]}x{pattern[1]} chessboard found in {str(image_dir)!r}")
    write_keypoint_csv(
        out_csv, [Path(r.file).name for r in records], [r.keypoints for r in records]
    )
    return missed


class ChessboardDataModule(KeypointDataModule):
    """The chessboard photos of a folder with their OpenCV corners as ``cols x rows`` keypoints
    (see the module's docstring for their order), no annotation file needed.

    Args:
        image_dir: the photos (default: the OpenCV samples).
        files: glob of the photos in ``image_dir``.
        pattern: inner corners ``(cols, rows)``.
        test_files: globs of the held-out photos; the default holds out the three scenes
            12-14 seen from both cameras (6 photos), so no test scene is seen in training.
        image_size, channels, augment, cache, loader, split: as in :class:`KeypointDataModule`.
    """

    def __init__(
        self,
        image_dir: str = OPENCV_SAMPLES,
        files: str = "*[0-9][0-9].jpg",
        pattern: tuple[int, int] = (9, 6),
        test_files: list[str] | None = None,
        image_size: tuple[int, int] | None = (120, 160),
        channels: int = 1,
        augment: KeypointAugment | None = None,
        cache: bool = True,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        if len(pattern) != 2 or min(pattern) < 2:
            raise ConfigError(
                f"data.pattern must be (cols, rows) inner corners >= 2, got {pattern}"
            )
        cols, rows = pattern
        names = [f"r{r}c{c}" for r in range(rows) for c in range(cols)]
        test = ["left1[234].jpg", "right1[234].jpg"] if test_files is None else test_files
        super().__init__(
            image_dir, keypoint_names=names, image_size=image_size, channels=channels, test_files=test,
            augment=augment, cache=cache, loader=loader, split=split,
        )  # fmt: skip
        self.files, self.pattern = files, (int(cols), int(rows))

    def read(self, path: str) -> tuple[list[KeypointRecord], tuple[str, ...]]:
        records, _ = chessboard_records(path, self.files, self.pattern)
        if not records:
            raise DataError(
                f"no {self.pattern[0]}x{self.pattern[1]} chessboard found in {path!r} ({self.files})"
            )
        return records, tuple(self.keypoint_names)
