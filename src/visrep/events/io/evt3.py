"""Prophesee EVT 3.0 ``.raw`` files (docs.prophesee.ai, "EVT 3.0 Format"), decoded without loops.

16-bit little-endian words, type in bits 15-12:

======  ============  ====================================================================
0x0     EVT_ADDR_Y    ``y`` (10-0): state
0x2     EVT_ADDR_X    ``pol`` (11), ``x`` (10-0): one event at the current ``y, t``
0x3     VECT_BASE_X   ``pol`` (11), ``x`` (10-0): state for the next vector words
0x4     VECT_12       12-bit mask: events at ``base_x + i`` for set bits; ``base_x += 12``
0x5     VECT_8        8-bit mask: the same with ``base_x += 8``
0x6     TIME_LOW      ``t[11:0]``
0x8     TIME_HIGH     ``t[23:12]``; a decrease is a 24-bit wrap (+ ``2**24`` us)
0x7/A/E/F             continued / trigger / others: skipped
======  ============  ====================================================================

The format is stateful; each piece of state is the payload of the last word of some type, so
it is forward-filled by ``np.maximum.accumulate`` over the indices of those words. ``base_x`` of a
vector word is the last VECT_BASE_X plus the advances (12 or 8) of the vector words since then,
a difference of cumulative sums. Vector masks expand through a ``(M, 12)`` bit matrix. As in
Prophesee's decoder, a TIME_HIGH word resets the low 12 bits to 0, and events before the first
TIME_HIGH / ADDR_Y (unknown time or row) are dropped. Stray out-of-order TIME_LOW words
(seen in real Gen4.1 recordings) are tolerated: events are stably sorted by time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream
from visrep.events.io.evt2 import forward_fill_index

__all__ = ["decode_evt3"]

_KNOWN = np.zeros(16, dtype=bool)
_KNOWN[[0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF]] = True


def _time_per_word(w: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp in force at every word, and whether it is known (a TIME_HIGH came before)."""
    is_high = kind == 0x8
    hi_idx = forward_fill_index(is_high)
    lo_idx = forward_fill_index(kind == 0x6)
    high_vals = (w[is_high] & 0xFFF).astype(np.int64)
    loops = (
        np.concatenate([[0], np.cumsum(np.diff(high_vals) < 0)]) if high_vals.size else high_vals
    )
    base = np.zeros(w.size, dtype=np.int64)
    base[is_high] = (loops << 24) + (high_vals << 12)
    known = hi_idx >= 0
    low = np.where(lo_idx > hi_idx, w[np.maximum(lo_idx, 0)] & 0xFFF, 0).astype(np.int64)
    return base[np.maximum(hi_idx, 0)] + low, known


def decode_evt3(path: str | Path, body: np.ndarray, sensor_size: tuple[int, int] | None):
    """Decode an EVT 3.0 payload (bytes after the '%' header)."""
    if body.size % 2:
        raise DataError(
            f"{path}: truncated EVT 3.0 file, payload of {body.size} bytes is not a multiple of 2"
        )
    w = body.view("<u2").astype(np.int64)
    kind = w >> 12
    bad = ~_KNOWN[kind]
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: unknown EVT 3.0 word type {kind[i]:#x} at word {i}")
    t_word, t_known = _time_per_word(w, kind)
    y_idx = forward_fill_index(kind == 0x0)
    y_word = w[np.maximum(y_idx, 0)] & 0x7FF
    ok = t_known & (y_idx >= 0)

    # single events
    single = np.flatnonzero((kind == 0x2) & ok)
    s_x = w[single] & 0x7FF
    s_p = (w[single] >> 11) & 1

    # vector events
    is_base = kind == 0x3
    b_idx = forward_fill_index(is_base)
    advance = np.where(kind == 0x4, 12, np.where(kind == 0x5, 8, 0))
    seen = np.cumsum(advance) - advance  # advances strictly before each word
    vec = np.flatnonzero(((kind == 0x4) | (kind == 0x5)) & ok & (b_idx >= 0))
    vb = b_idx[vec]
    base_x = (w[vb] & 0x7FF) + seen[vec] - seen[vb]
    masks = np.where(kind[vec] == 0x4, w[vec] & 0xFFF, w[vec] & 0xFF)
    rows, bits = np.nonzero((masks[:, None] >> np.arange(12)) & 1)
    v_word = vec[rows]
    v_x = base_x[rows] + bits
    v_p = (w[vb[rows]] >> 11) & 1

    word = np.concatenate([single, v_word])
    order = np.argsort(word * 16 + np.concatenate([np.zeros_like(single), bits]), kind="stable")
    word = word[order]
    # base_x + advances can run past the 11-bit address range (and past int16) in a corrupt
    # file: x stays int64 here, EventStream checks it against the sensor and narrows it
    x = np.concatenate([s_x, v_x])[order]
    p = np.concatenate([s_p, v_p])[order].astype(np.int8)
    y = y_word[word].astype(np.int16)
    t = t_word[word]
    return make_stream(path, x, y, t, p, sensor_size, sort=True)
