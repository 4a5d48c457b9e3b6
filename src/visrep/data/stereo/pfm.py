"""The Portable Float Map (PFM) format of Middlebury's ground-truth disparities.

A text header, ``PF`` (3 channels) or ``Pf`` (1 channel), then ``W H``, then a scale whose sign
gives the byte order (negative: little-endian), then float32 rows from the BOTTOM row up.
Middlebury 2014 stores unknown disparities as ``inf``. Hand-written: neither OpenCV nor Pillow
reads PFM headers with both byte orders, and the format is a few lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from visrep.errors import DataError

__all__ = ["read_pfm", "write_pfm"]


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM file as float32 ``(H, W)`` (``Pf``) or ``(H, W, 3)`` (``PF``), top row first.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.pfm")
    >>> a = np.array([[1.0, np.inf], [2.5, 3.0]], np.float32)
    >>> _ = write_pfm(p, a)
    >>> read_pfm(p).tolist()
    [[1.0, inf], [2.5, 3.0]]
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read PFM file {str(path)!r}: {e.strerror or e}") from e
    m = re.match(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s", data)
    if m is None:
        raise DataError(
            f"{str(path)!r} is not a PFM file: expected a 'PF' or 'Pf' header, 'W H' and a scale"
        )
    channels = 3 if m.group(1) == b"PF" else 1
    w, h, scale = int(m.group(2)), int(m.group(3)), float(m.group(4))
    count = w * h * channels
    body = data[m.end() :]
    if len(body) < 4 * count:
        raise DataError(
            f"PFM file {str(path)!r} is truncated: {w}x{h}x{channels} floats need {4 * count} "
            f"bytes, found {len(body)}"
        )
    dtype = "<f4" if scale < 0 else ">f4"
    a = np.frombuffer(body, dtype=dtype, count=count).astype(np.float32)
    a = a.reshape((h, w, 3) if channels == 3 else (h, w))
    return np.ascontiguousarray(a[::-1])


def write_pfm(path: str | Path, array: np.ndarray) -> Path:
    """Write float ``(H, W)`` or ``(H, W, 3)`` as a little-endian PFM (bottom row first)."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise DataError(f"write_pfm: array of shape {a.shape}, expected (H, W) or (H, W, 3)")
    path = Path(path)
    header = f"{'PF' if a.ndim == 3 else 'Pf'}\n{a.shape[1]} {a.shape[0]}\n-1.0\n".encode()
    path.write_bytes(header + np.ascontiguousarray(a[::-1]).astype("<f4").tobytes())
    return path
