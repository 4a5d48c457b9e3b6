"""Prophesee EVT 2.0 ``.raw`` files (docs.prophesee.ai, "EVT 2.0 Format").

32-bit little-endian words, type in bits 31-28: ``CD_OFF`` (0) and ``CD_ON`` (1) carry
``t[5:0]`` (27-22), ``x`` (21-11) and ``y`` (10-0); ``EVT_TIME_HIGH`` (8) carries ``t[33:6]``
(27-0). Triggers (0xA), ``OTHERS`` (0xE) and ``CONTINUED`` (0xF) are skipped. Stateful only
through the last TIME_HIGH, which is forward-filled with ``maximum.accumulate`` of indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream

__all__ = ["decode_evt2"]

_KNOWN = np.zeros(16, dtype=bool)
_KNOWN[[0x0, 0x1, 0x8, 0xA, 0xE, 0xF]] = True


def forward_fill_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the last ``True`` at or before it (-1 if none)."""
    idx = np.where(mask, np.arange(mask.size), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def decode_evt2(path: str | Path, body: np.ndarray, sensor_size: tuple[int, int] | None):
    """Decode an EVT 2.0 payload (bytes after the '%' header).

    Events before the first TIME_HIGH word have no timestamp and are dropped, as Prophesee's
    decoder does.
    """
    if body.size % 4:
        raise DataError(
            f"{path}: truncated EVT 2.0 file, payload of {body.size} bytes is not a multiple of 4"
        )
    w = body.view("<u4")
    kind = (w >> 28).astype(np.int64)
    bad = ~_KNOWN[kind]
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: unknown EVT 2.0 word type {kind[i]:#x} at word {i}")
    last_high = forward_fill_index(kind == 0x8)
    cd = (kind <= 1) & (last_high >= 0)
    high = (w[last_high[cd]] & 0x0FFFFFFF).astype(np.int64)
    wc = w[cd]
    t = (high << 6) | ((wc >> 22) & 0x3F).astype(np.int64)
    x = ((wc >> 11) & 0x7FF).astype(np.int16)
    y = (wc & 0x7FF).astype(np.int16)
    p = kind[cd].astype(np.int8)
    return make_stream(path, x, y, t, p, sensor_size, sort=True)
