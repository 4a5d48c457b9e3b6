"""Prophesee / Chronocam ``.dat`` files (N-Cars, Gen1 and 1Mpx automotive data sets).

Layout: '%' text header lines, then one byte of event type and one byte of event size (8),
then little-endian records of ``uint32 t`` and ``uint32 addr`` with ``x = addr[13:0]``,
``y = addr[27:14]``, ``p = addr[31:28]``. A decreasing 32-bit timestamp is a wrap-around and adds
``2**32`` to the rest (as expelliarmus does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import (
    ATIS_SIZE,
    header_sensor_size,
    make_stream,
    read_bytes,
    split_percent_header,
)
from visrep.events.types import EventStream

__all__ = ["read_dat"]


def read_dat(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read a Prophesee ``.dat`` (Event2d / CD) file.

    Args:
        path: The file.
        sensor_size: ``(W, H)``; default from the header ('% Width', '% Height', '% geometry'),
            else the Gen1/ATIS sensor ``(304, 240)`` that N-Cars was recorded with.

    Raises:
        DataError: missing header, bad event size, truncated records, bad polarity.
    """
    raw = read_bytes(path)
    lines, start = split_percent_header(raw, path)
    if not lines:
        raise DataError(f"{path}: not a Prophesee .dat file, expected a '%' text header")
    if raw.size < start + 2:
        raise DataError(f"{path}: truncated .dat file, expected event type and size after header")
    ev_size = int(raw[start + 1])
    if ev_size != 8:
        raise DataError(f"{path}: unsupported .dat event size {ev_size}, expected 8 bytes")
    body = raw[start + 2 :]
    if body.size % 8:
        raise DataError(
            f"{path}: truncated .dat file, payload of {body.size} bytes is not a multiple of 8"
        )
    words = body.view("<u4").reshape(-1, 2)
    ts = words[:, 0].astype(np.int64)
    addr = words[:, 1]
    wraps = np.concatenate([[0], np.cumsum(np.diff(ts) < 0)])
    ts = ts + (wraps << 32)
    x = (addr & 0x3FFF).astype(np.int16)
    y = ((addr >> 14) & 0x3FFF).astype(np.int16)
    p = ((addr >> 28) & 0xF).astype(np.int8)
    size = sensor_size or header_sensor_size(lines) or ATIS_SIZE
    return make_stream(path, x, y, ts, p, size)
