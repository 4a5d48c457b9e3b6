"""Event Stream ``.es`` files, version 2 (neuromorphic-paris/event_stream), DVS and ATIS types.

Header: ``b"Event Stream"``, version (3 bytes, major 2), type (1 byte), then ``uint16`` width
and height. The payload is a byte state machine. In the idle state a byte is either special
(DVS: ``0xFF`` overflow, +127 us; ``0xFE`` reset. ATIS: ``0b111111xx``, +63 us times ``xx``) or
the first byte of a 5-byte event (time delta and polarity, then ``uint16`` x and y).

Which bytes are read in the idle state depends on all earlier bytes. That is a prefix
composition of per-byte state-transition functions, an associative scan, so it is vectorised
as a Hillis-Steele scan in ``log2(n)`` numpy rounds over integer codes of the 610 functions
the two byte kinds generate (one table lookup composes two), chunk by
chunk with the state carried across chunks. Colour and generic streams have no polarity and are
refused; ATIS exposure measurements are dropped, keeping its change-detection events.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream, read_bytes
from visrep.events.types import EventStream

__all__ = ["read_event_stream"]

MAGIC = b"Event Stream"
_CHUNK = 1 << 22
# transition tables over states 0 (idle) .. 4 (last byte of an event)
_SPECIAL = np.array([0, 2, 3, 4, 0], dtype=np.uint8)
_EVENT = np.array([1, 2, 3, 4, 0], dtype=np.uint8)


@functools.cache
def _composition_table() -> tuple[np.ndarray, np.ndarray]:
    """All compositions of the two byte functions, coded as small ints, and their product table.

    Returns ``(funcs, table)``: ``funcs[c]`` is the state map of code ``c`` (codes 0 and 1 are the
    special and event bytes) and ``table[a, b]`` the code of ``funcs[a] o funcs[b]``.
    """
    funcs = [tuple(_SPECIAL), tuple(_EVENT)]
    codes = {f: i for i, f in enumerate(funcs)}
    i = 0
    while i < len(funcs):  # every composition is a word in the two generators: BFS on words
        for g in (funcs[0], funcs[1]):
            c = tuple(funcs[i][s] for s in g)
            if c not in codes:
                codes[c] = len(funcs)
                funcs.append(c)
        i += 1
    f = np.array(funcs, dtype=np.int64)
    key = f @ (5 ** np.arange(5))
    lookup = np.full(5**5, -1, dtype=np.int64)
    lookup[key] = np.arange(len(funcs))
    composed = f[np.arange(len(f))[:, None, None], f[None, :, :]]  # [a, b, s] = f[a][f[b][s]]
    table = lookup[composed @ (5 ** np.arange(5))].astype(np.uint16)
    return f.astype(np.uint8), table


def _idle_states(is_special_if_idle: np.ndarray, state0: int) -> np.ndarray:
    """State before each byte, given the state before the first byte (Hillis-Steele scan)."""
    funcs, table = _composition_table()
    g = np.where(is_special_if_idle, 0, 1).astype(np.uint16)  # code of byte i's function
    d = 1
    while d < g.size:
        nxt = g.copy()
        nxt[d:] = table[g[d:], g[:-d]]  # (f_i o ... ) o (f_{i-d} o ...)
        g, d = nxt, d * 2
    after = funcs[g, state0]
    return np.concatenate([[state0], after[:-1]]).astype(np.uint8)


def read_event_stream(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read a DVS or ATIS Event Stream (``.es``) file, version 2.

    Args:
        path: The file.
        sensor_size: ``(W, H)``; default the header's width and height.

    Raises:
        DataError: bad magic, unsupported version or type, truncated header or payload.
    """
    raw = read_bytes(path)
    if raw[:12].tobytes() != MAGIC:
        raise DataError(f"{path}: not an Event Stream file, expected it to start with {MAGIC!r}")
    if raw.size < 16:
        raise DataError(f"{path}: truncated Event Stream header, got {raw.size} bytes")
    major, kind = int(raw[12]), int(raw[15])
    if major != 2:
        raise DataError(f"{path}: Event Stream version {major}.x not supported, expected 2.x")
    if kind not in (1, 2):
        name = {0: "generic", 3: "display", 4: "colour", 5: "liquid"}.get(kind, str(kind))
        raise DataError(
            f"{path}: Event Stream type {name} has no polarity events; expected DVS (1) or ATIS (2)"
        )
    if raw.size < 20:
        raise DataError(f"{path}: truncated Event Stream header, expected width and height")
    w, h = (int(v) for v in raw[16:20].view("<u2"))
    body = raw[20:]
    special = (body >= 0xFE) if kind == 1 else ((body & 0xFC) == 0xFC)
    state = np.empty(body.size, dtype=np.uint8)
    s0 = 0
    for lo in range(0, body.size, _CHUNK):  # a loop over 4 MiB chunks, not events
        hi = min(lo + _CHUNK, body.size)
        state[lo:hi] = _idle_states(special[lo:hi], s0)
        s0 = int((_SPECIAL if special[hi - 1] else _EVENT)[state[hi - 1]])
    if s0 != 0:
        raise DataError(f"{path}: truncated Event Stream payload, the last event is incomplete")
    idle = np.flatnonzero(state == 0)
    b = body[idle].astype(np.int64)
    spec = special[idle]
    if kind == 1:
        dt = np.where(spec, np.where(b == 0xFF, 127, 0), b >> 1)
        pol = b & 1
        keep = ~spec
    else:
        dt = np.where(spec, 63 * (b & 3), b >> 2)
        pol = (b & 3) >> 1
        keep = ~spec & ((b & 1) == 0)  # codes 0 (off) and 2 (on); 1 and 3 are exposures
    t = np.cumsum(dt)
    start = idle[keep]
    x = body[start + 1].astype(np.int32) | (body[start + 2].astype(np.int32) << 8)
    y = body[start + 3].astype(np.int32) | (body[start + 4].astype(np.int32) << 8)
    return make_stream(path, x, y, t[keep], pol[keep].astype(np.int8), sensor_size or (w, h))
