"""LZF decompression (Marc Lehmann's liblzf format), as PCL writes ``binary_compressed`` PCD.

An LZF stream is a sequence of tokens. A control byte ``c < 32`` starts a literal run of
``c + 1`` bytes copied from the input; otherwise ``L = c >> 5`` (``L == 7``: plus the next
byte) and the token copies ``L + 2`` bytes from ``((c & 31) << 8) + next + 1`` bytes back in
the output, possibly overlapping what it writes.

Decoding is vectorised in numpy, without a loop over tokens or bytes:

1. every input byte, read as a control byte, gives where the next token would start; the real
   token starts are the orbit of byte 0 under that map, found by pointer doubling
   (``O(log n)`` steps of ``O(n)`` array operations);
2. every output byte then comes either from an input offset (literals) or from an earlier
   output position (back references); chains of back references are resolved by pointer
   doubling as well, ``src = src[src]``.

>>> bytes(lzf_decompress(bytes([2]) + b"abc" + bytes([0b100_00000, 2]), 9))  # literal, back-ref
b'abcabcabc'
"""

from __future__ import annotations

import numpy as np

from visrep.errors import DataError

__all__ = ["LZF_MAX_BYTES", "LZF_MAX_RATIO", "lzf_decompress"]

# The most output one input byte can give: a long back reference (3 bytes: control, length,
# offset) copies at most 7 + 255 + 2 = 264 bytes, 88 per byte; a short one (2 bytes) at most 8,
# a literal run (c + 2 bytes) c + 1. So a stream of n bytes decompresses to at most 88 n bytes.
LZF_MAX_RATIO = 88
# Decoding takes about 25 bytes of working memory per output byte: a declared size above this
# is refused rather than attempted.
LZF_MAX_BYTES = 2**31


def _token_starts(u: np.ndarray, where: str) -> np.ndarray:
    """Input offsets of the tokens of the stream ``u``."""
    n = len(u)
    dt = np.int32 if n < 2**31 - 2 else np.int64
    c = u.astype(dt)
    at = np.arange(n, dtype=dt)
    # where the next token starts if a token started here; n: the end, n + 1: past the end
    jump = np.empty(n + 2, dtype=dt)
    jump[:n] = np.where(c < 32, at + c + 2, at + np.where(c >> 5 == 7, 3, 2).astype(dt))
    jump[:n][jump[:n] > n] = n + 1
    jump[n], jump[n + 1] = n, n + 1
    reached = np.zeros(n + 2, dtype=bool)
    reached[0] = True
    while True:  # reached: the orbit's first 2^s tokens; jump: 2^s tokens ahead
        reached[jump[reached]] = True
        jump = jump[jump]
        if jump[0] >= n:  # the orbit ends within 2^(s+1) tokens: all of it is reached
            reached[jump[reached]] = True
            break
    if reached[n + 1] or not reached[n]:
        raise DataError(f"{where}: corrupt LZF stream (a token runs past the end of the data)")
    return np.flatnonzero(reached[:n])


def lzf_decompress(data: bytes, size: int, where: str = "LZF data") -> np.ndarray:
    """Decompress an LZF stream to exactly ``size`` bytes.

    Args:
        data: the compressed bytes.
        size: the uncompressed size (PCD stores it before the stream).
        where: the file (and what it is), for error messages.

    Returns:
        ``(size,)`` uint8 array.

    Raises:
        DataError: a truncated or corrupt stream, one that does not decompress to ``size``, a
            ``size`` above what ``len(data)`` bytes of LZF can hold (``88 len(data)``) or above
            :data:`LZF_MAX_BYTES`.
    """
    if size > LZF_MAX_RATIO * len(data):
        raise DataError(
            f"{where}: {size} uncompressed bytes declared, more than {len(data)} bytes of LZF can "
            f"hold (at most {LZF_MAX_RATIO} per byte): a corrupt size"
        )
    if size > LZF_MAX_BYTES:
        raise DataError(
            f"{where}: {size} uncompressed bytes declared; this reader decompresses at most "
            f"{LZF_MAX_BYTES} bytes (2 GiB; about 25 bytes of memory each): split the file"
        )
    u = np.frombuffer(data, dtype=np.uint8)
    if not len(u):
        if size:
            raise DataError(f"{where}: empty LZF stream, expected {size} bytes")
        return np.zeros(0, dtype=np.uint8)
    starts = _token_starts(u, where)
    c = u[starts].astype(np.int64)
    literal = c < 32
    long_ref = ~literal & (c >> 5 == 7)
    nxt = u[np.minimum(starts + 1, len(u) - 1)].astype(np.int64)
    off_byte = np.where(long_ref, u[np.minimum(starts + 2, len(u) - 1)], nxt)
    length = np.where(literal, c + 1, (c >> 5) + np.where(long_ref, nxt, 0) + 2)
    dist = ((c & 31) << 8) + off_byte + 1
    out_start = np.cumsum(length) - length
    total = int(length.sum())
    if total != size:
        raise DataError(f"{where}: LZF stream decompresses to {total} bytes, expected {size}")
    if (~literal & (dist > out_start)).any():
        raise DataError(f"{where}: corrupt LZF stream (back reference before the start)")
    dt = np.int32 if size < 2**31 else np.int64
    # an output byte's source is pos + base[token]: an input offset for a literal, an earlier
    # output position for a back reference
    base = np.where(literal, starts + 1 - out_start, -dist).astype(dt)
    tok = np.repeat(np.arange(len(starts), dtype=dt), length)
    pos = np.arange(size, dtype=dt)
    src = pos + base[tok]
    ptr = np.where(literal[tok], pos, src)  # literal positions point at themselves
    while True:
        nxt_ptr = ptr[ptr]
        if np.array_equal(nxt_ptr, ptr):
            break
        ptr = nxt_ptr
    return u[src[ptr]]
