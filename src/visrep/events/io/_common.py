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


MAX_HEADER_BYTES = 1 << 20  # real '%' headers are a few hundred bytes; refuse runaway ones
_NL, _PERCENT = ord("\n"), ord("%")
_END = re.compile(r"^%[^\S\n]*+end[^\S\n]*+$", re.MULTILINE)


def _lines(text: str) -> list[str]:
    """The '%' lines of ``text`` (each ending in a newline) without '%' and outer whitespace."""
    return [line[1:].strip() for line in text.split("\n")[:-1]]


def split_percent_header(data: np.ndarray, path: str | Path = "") -> tuple[list[str], int]:
    """Split the '%'-prefixed text header (Prophesee .raw/.dat) from the binary payload.

    The header is the run of complete lines starting with '%' at the top of the file, up to and
    including a '% end' line. It is found in linear time, scanning a window that grows fourfold
    up to :data:`MAX_HEADER_BYTES`.

    Returns:
        The header lines without '%' and the byte offset of the payload.

    Raises:
        DataError: the header is longer than :data:`MAX_HEADER_BYTES`.
    """
    window = 4096
    while True:
        head = data[:window]
        nl = np.flatnonzero(head == _NL)
        starts = np.concatenate([[0], nl[:-1] + 1]) if nl.size else nl
        # line i spans starts[i] .. nl[i]; an empty line starts on its own '\n'
        not_header = np.flatnonzero(head[starts] != _PERCENT)
        count = int(not_header[0]) if not_header.size else int(nl.size)
        end = int(nl[count - 1]) + 1 if count else 0
        text = head[:end].tobytes().decode("latin-1")
        m = _END.search(text)
        if m:  # '% end' closes the header
            k = text.count("\n", 0, m.start())
            return _lines(text)[: k + 1], int(nl[k]) + 1
        # all lines seen so far are '%' lines and so is the next one: the header goes on
        goes_on = count == nl.size and end < data.size and data[end] == _PERCENT
        if not goes_on or head.size == data.size:
            return _lines(text), end
        if window > MAX_HEADER_BYTES:
            raise DataError(
                f"{path}: '%' text header is longer than {MAX_HEADER_BYTES >> 20} MiB; expected a "
                "header of a few lines before the event data"
            )
        window = min(4 * window, MAX_HEADER_BYTES + 1)


# Linear-time patterns: possessive quantifiers and bounded numbers (no catastrophic backtracking
# on long runs of spaces or digits in a corrupt header).
_GEOMETRY = re.compile(r"geometry\s++(\d{1,10})\s*+x\s*+(\d{1,10})(?!\d)")
_WIDTH = re.compile(r"(?<![^\s;])width(?:\s*+=|\s)\s*+(\d{1,10})(?!\d)", re.IGNORECASE)
_HEIGHT = re.compile(r"(?<![^\s;])height(?:\s*+=|\s)\s*+(\d{1,10})(?!\d)", re.IGNORECASE)
_PLUGIN = re.compile(r"plugin_name\s++(\S++)")


def header_sensor_size(lines: list[str]) -> tuple[int, int] | None:
    """``(W, H)`` from '% geometry WxH', '% Width/Height N' or '% format ...;width=;height='."""
    text = "\n".join(lines)
    m = _GEOMETRY.search(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    w, h = _WIDTH.search(text), _HEIGHT.search(text)
    if w and h:
        return int(w.group(1)), int(h.group(1))
    m = _PLUGIN.search(text)
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
    is re-raised as one :class:`DataError` line naming the file. Fields whose values do not fit
    the stream's dtypes (coordinates past int32, times past int64) are refused, not wrapped.
    """
    for name, a, dtype in (("x", x, np.int32), ("y", y, np.int32), ("t", t, np.int64)):
        a = np.asarray(a)
        if a.size and a.dtype.kind in "iu" and not np.can_cast(a.dtype, dtype):
            lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
            if a.min() < lo or a.max() > hi:
                raise DataError(
                    f"{path}: field {name} holds values in [{a.min()}, {a.max()}], outside "
                    f"the {np.dtype(dtype).name} range of event {name}"
                )
    if sort and t.size > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order], p[order]
    if sensor_size is None:
        sensor_size = (int(x.max()) + 1 if x.size else 1, int(y.max()) + 1 if y.size else 1)
    try:
        return EventStream(x, y, t, p, sensor_size)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
