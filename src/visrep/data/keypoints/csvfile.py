"""Keypoints in a plain CSV: one row per image, ``file, x1, y1, v1, ..., xK, yK, vK``.

``file`` is relative to the image folder (or absolute); x, y are pixel-index coordinates (the
centre of the top-left pixel is (0, 0)) and v the visibility (0 unlabelled, 1 labelled but
hidden, 2 visible; x, y may be empty when v is 0). A first row starting with ``file`` is a
header and skipped. Every row must hold exactly ``3 K`` values after the file name for the
declared ``K`` keypoints.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visrep.data.keypoints.base import KeypointRecord
from visrep.errors import ConfigError, DataError


def keypoint_names(names: Sequence[str] | None, count: int | None) -> tuple[str, ...]:
    """The declared keypoints: ``names``, else ``kp0 .. kp{count-1}``; a count that disagrees
    with the names, or neither, is a ``ConfigError``."""
    if names is not None:
        if count is not None and count != len(names):
            raise ConfigError(
                f"data.num_keypoints is {count} but data.keypoint_names lists {len(names)}"
            )
        if not names:
            raise ConfigError("data.keypoint_names must name at least one keypoint")
        return tuple(names)
    if count is None or count < 1:
        raise ConfigError(f"give data.keypoint_names or data.num_keypoints >= 1 (got {count})")
    return tuple(f"kp{i}" for i in range(count))


def read_keypoint_csv(
    path: str, image_root: str, names: Sequence[str] | None = None, count: int | None = None
) -> tuple[list[KeypointRecord], tuple[str, ...]]:
    """The records of a keypoint CSV and the keypoint names.

    Raises:
        DataError: a missing file, a row whose value count is not ``3 K``, a value that is
            not a number, or a visibility outside {0, 1, 2}; the message names the file
            and the row (1-based, as an editor shows it).
    """
    kp_names = keypoint_names(names, count)
    k = len(kp_names)
    if not Path(path).is_file():
        raise DataError(f"keypoint file {path!r} does not exist")
    records = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or (line == 1 and row[0].strip().lower() == "file"):
                continue
            values = row[1:]
            if len(values) != 3 * k:
                raise DataError(
                    f"{path} row {line}: {len(values)} values after the file name, expected "
                    f"3 x {k} = {3 * k} (x, y, v per declared keypoint)"
                )
            try:
                arr = np.array(
                    [float(v) if v.strip() else np.nan for v in values], dtype=np.float32
                )
            except ValueError as e:
                raise DataError(f"{path} row {line}: {e}") from e
            kp = arr.reshape(k, 3)
            if not np.isin(kp[:, 2], (0, 1, 2)).all():
                raise DataError(
                    f"{path} row {line}: visibilities must be 0, 1 or 2, got {sorted(set(kp[:, 2].tolist()))}"
                )
            if np.isnan(kp[kp[:, 2] > 0, :2]).any():
                raise DataError(f"{path} row {line}: a labelled keypoint (v > 0) has no x or y")
            file = row[0].strip()
            full = file if Path(file).is_absolute() else str(Path(image_root) / file)
            records.append(KeypointRecord(full, kp, group=file))
    if not records:
        raise DataError(f"keypoint file {path!r} holds no rows")
    return records, kp_names


def write_keypoint_csv(
    path: str | Path, files: Sequence[str], keypoints: np.ndarray | Sequence[np.ndarray]
) -> None:
    """Write the CSV format :func:`read_keypoint_csv` reads (with a header ``file, x1, y1, v1 ...``).

    Args:
        path: the CSV to write.
        files: one image file per row (as the CSV should name it).
        keypoints: ``(N, K, 3)`` or one ``(K, 3)`` per file.
    """
    rows = [np.asarray(k, dtype=np.float64) for k in keypoints]
    if len(rows) != len(files):
        raise DataError(f"write_keypoint_csv: {len(files)} files but {len(rows)} keypoint sets")
    k = rows[0].shape[0] if rows else 0
    header = ["file"] + [f"{c}{i + 1}" for i in range(k) for c in ("x", "y", "v")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for file, kp in zip(files, rows, strict=True):
            w.writerow(
                [file]
                + [f"{v:.4f}" if j % 3 < 2 else str(int(v)) for j, v in enumerate(kp.ravel())]
            )
