"""Helpers shared by the readers: raw bytes, '%' headers, sensor sizes, error wording."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.types import EventStream

# Sensor resolutions (W, H) of the Prophesee plugins named in '%' headers that carry no geometry.
_PLUGIN_SIZES = {
    "gen41": (1280, 720),
    "gen4": (1280, 720),
    "imx636": (1280, 720),
    "genx320": (320, 320),
    "gen31": (640, 480),
    "gen3": (640, 480),
    "gen1": (304, 240),
}
ATIS_SIZE = (304, 240)  # ATIS / Gen1 sensor: N-MNIST, N-Caltech101 and N-Cars are crops of it.


def read_bytes(path: str | Path) -> np.ndarray:
    """The whole file as a uint8 array; a missing or empty file raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"{path}: file is empty, expected event data")
    return data


def split_percent_header(data: np.ndarray) -> tuple[list[str], int]:
    """Split the '%'-prefixed text header (Prophesee .raw/.dat) from the binary payload.

    Returns:
        The header lines without '%' and the byte offset of the payload.
    """
    lines: list[str] = []
    pos = 0
    n = data.size
    while pos < n and data[pos] == ord("%"):
        nl = np.flatnonzero(data[pos : pos + 65536] == ord("\n"))
        if nl.size == 0:
            break
        end = pos + int(nl[0]) + 1
        line = data[pos + 1 : end - 1].tobytes().decode("latin-1").strip()
        lines.append(line)
        pos = end
        if line == "end":
            break
    return lines, pos


def header_sensor_size(lines: list[str]) -> tuple[int, int] | None:
    """``(W, H)`` from '% geometry WxH', '% Width/Height N' or '% format ...;width=;height='."""
    text = "\n".join(lines)
    m = re.search(r"geometry\s+(\d+)\s*x\s*(\d+)", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    w = re.search(r"(?:^|[\s;])width\s*[=\s]\s*(\d+)", text, re.IGNORECASE | re.MULTILINE)
    h = re.search(r"(?:^|[\s;])height\s*[=\s]\s*(\d+)", text, re.IGNORECASE | re.MULTILINE)
    if w and h:
        return int(w.group(1)), int(h.group(1))
    m = re.search(r"plugin_name\s+(\S+)", text)
    if m:
        name = m.group(1).lower()
        for key, size in _PLUGIN_SIZES.items():
            if key in name:
                return size
    return None


def make_stream(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    sensor_size: tuple[int, int] | None,
    sort: bool = False,
) -> EventStream:
    """Build the stream; without a known sensor size use ``(max x + 1, max y + 1)``.

    With ``sort``, events out of time order (camera glitches, e.g. a stray EVT 3.0 TIME_LOW
    word) are put in order by a stable sort instead of being rejected. Any validation failure
    is re-raised as one :class:`DataError` line naming the file.
    """
    if sort and t.size > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order], p[order]
    if sensor_size is None:
        sensor_size = (int(x.max()) + 1 if x.size else 1, int(y.max()) + 1 if y.size else 1)
    try:
        return EventStream(x, y, t, p, sensor_size)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
