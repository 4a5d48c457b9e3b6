"""Prophesee ``.raw`` files: '%' header, then an EVT 2.0 or EVT 3.0 payload."""

from __future__ import annotations

import re
from pathlib import Path

from visrep.errors import DataError
from visrep.events.io._common import header_sensor_size, read_bytes, split_percent_header
from visrep.events.io.evt2 import decode_evt2
from visrep.events.io.evt3 import decode_evt3
from visrep.events.types import EventStream

__all__ = ["read_raw"]


def _evt_version(lines: list[str]) -> str | None:
    text = "\n".join(lines).lower()
    m = re.search(r"^evt\s+([23])\.0", text, re.MULTILINE) or re.search(r"format\s+evt([23])", text)
    return m.group(1) if m else None


def read_raw(
    path: str | Path, sensor_size: tuple[int, int] | None = None, evt: str | None = None
) -> EventStream:
    """Read a Prophesee ``.raw`` recording.

    Args:
        path: The file.
        sensor_size: ``(W, H)``; default from the header ('% geometry', '% format ...;width=',
            or the camera plugin name), else ``(max x + 1, max y + 1)``.
        evt: ``"2"`` or ``"3"`` to override the encoding named in the header.

    Raises:
        DataError: unknown encoding, truncated payload or unknown word types.
    """
    raw = read_bytes(path)
    lines, start = split_percent_header(raw, path)
    version = evt or _evt_version(lines)
    size = sensor_size or header_sensor_size(lines)
    body = raw[start:]
    if version == "2":
        return decode_evt2(path, body, size)
    if version == "3":
        return decode_evt3(path, body, size)
    raise DataError(
        f"{path}: cannot tell the .raw encoding, expected '% evt 2.0' or '% evt 3.0' in the "
        "header (or pass evt='2' / evt='3')"
    )
