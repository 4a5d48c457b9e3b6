"""N-MNIST / N-Caltech101 ATIS ``.bin`` files (Orchard et al. 2015).

Each event is 5 bytes, big-endian bit fields: ``x`` (bits 39-32), ``y`` (31-24), polarity
(bit 23) and a 23-bit microsecond timestamp (22-0). A row with ``y == 240`` is a timestamp
overflow marker, not an event: every later timestamp is increased by ``2**13``. That is the
convention of the data set's reference readers (Orchard's ``Read_Ndataset.m``, ``event-Python``)
and of tonic's ``read_mnist_file``, followed here so timestamps match theirs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import ATIS_SIZE, make_stream, read_bytes
from visrep.events.types import EventStream

__all__ = ["read_atis_bin", "write_atis_bin"]

OVERFLOW_Y = 240
OVERFLOW_STEP = 2**13
_TS_MAX = 2**23 - 1


def read_atis_bin(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read an N-MNIST / N-Caltech101 ``.bin`` file.

    Args:
        path: The file.
        sensor_size: ``(W, H)``; default the full ATIS sensor ``(304, 240)``. N-MNIST users pass
            ``(34, 34)``.

    Returns:
        The stream, in file order (the format stores events sorted by time).

    Raises:
        DataError: missing, empty or truncated file (size not a multiple of 5 bytes).
    """
    raw = read_bytes(path)
    if raw.size % 5:
        raise DataError(
            f"{path}: truncated ATIS .bin file, expected a multiple of 5 bytes, got {raw.size}"
        )
    rows = raw.reshape(-1, 5).astype(np.int64)
    x, y = rows[:, 0], rows[:, 1]
    p = rows[:, 2] >> 7
    ts = ((rows[:, 2] & 0x7F) << 16) | (rows[:, 3] << 8) | rows[:, 4]
    overflow = y == OVERFLOW_Y
    ts = ts + OVERFLOW_STEP * np.cumsum(overflow)
    keep = ~overflow
    return make_stream(
        path,
        x[keep].astype(np.int16),
        y[keep].astype(np.int16),
        ts[keep],
        p[keep].astype(np.int8),
        sensor_size or ATIS_SIZE,
    )


def write_atis_bin(stream: EventStream, path: str | Path) -> None:
    """Write ``stream`` as an ATIS ``.bin`` file that :func:`read_atis_bin` reads back exactly.

    Timestamps past the 23-bit range are stored with overflow markers (``y == 240``), each worth
    ``2**13`` microseconds, as in the format's convention.

    Raises:
        DataError: coordinates that do not fit one byte, ``y >= 240``, or negative timestamps.
    """
    x, y, t, p = (np.asarray(a, np.int64) for a in (stream.x, stream.y, stream.t, stream.p))
    if x.size and (x.max() > 255 or y.max() >= OVERFLOW_Y):
        raise DataError(
            f"{path}: ATIS .bin needs x < 256 and y < 240, got max {x.max()}, {y.max()}"
        )
    if t.size and t.min() < 0:
        raise DataError(f"{path}: ATIS .bin needs timestamps >= 0, got {t.min()}")
    # markers needed before event i so that its stored timestamp fits 23 bits (non-decreasing)
    k = np.maximum(0, -(-(t - _TS_MAX) // OVERFLOW_STEP))
    stored = t - OVERFLOW_STEP * k
    n_rows = t.size + int(k[-1]) if t.size else 0
    rows = np.zeros((n_rows, 5), dtype=np.uint8)
    # position of event i = i + markers so far; markers fill the gaps before it
    pos = np.arange(t.size) + k
    is_marker = np.ones(n_rows, dtype=bool)
    is_marker[pos] = False
    rows[is_marker, 1] = OVERFLOW_Y
    rows[pos, 0] = x
    rows[pos, 1] = y
    rows[pos, 2] = (p << 7) | (stored >> 16)
    rows[pos, 3] = (stored >> 8) & 0xFF
    rows[pos, 4] = stored & 0xFF
    rows.tofile(str(path))
