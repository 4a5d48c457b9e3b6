"""iniVation AEDAT 4 files (DV software): LZ4/Zstd-compressed flatbuffer packets.

Decoding uses the maintained ``aedat`` package (neuromorphicsystems/aedat, MIT, a Rust
extension on PyPI), the decoder tonic uses too; re-implementing flatbuffers + LZ4 + Zstd here
would not be worth its weight. The events of the lowest-numbered event stream are returned.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream
from visrep.events.types import EventStream

__all__ = ["read_aedat4"]

MAGIC = b"#!AER-DAT4.0\r\n"


def _u32(buf: bytes | mmap.mmap, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _data_table_position(path: Path, header: bytes) -> int:
    """``file_data_position`` of the IOHeader flatbuffer, every offset checked against its size.

    The ``aedat`` decoder reads this table unchecked (``root_as_ioheader_unchecked``): a corrupt
    offset must be refused here, before it can read out of bounds.
    """
    n = len(header)

    def need(ok: bool) -> None:
        if not ok:
            raise DataError(f"{path}: corrupt AEDAT4 header (an offset points outside it)")

    need(n >= 8)
    table = _u32(header, 0)
    need(table + 4 <= n)
    vtable = table - struct.unpack_from("<i", header, table)[0]
    need(vtable >= 0 and vtable + 4 <= n)
    vlen = struct.unpack_from("<H", header, vtable)[0]
    need(vtable + vlen <= n)

    def field(i: int, size: int) -> int | None:
        at = vtable + 4 + 2 * i
        off = struct.unpack_from("<H", header, at)[0] if at + 2 <= vtable + vlen else 0
        if off == 0:
            return None
        need(table + off + size <= n)
        return table + off

    field(0, 4)  # compression
    position = field(1, 8)
    text = field(2, 4)
    need(text is not None)
    start = text + _u32(header, text)
    need(start + 4 <= n and start + 4 + _u32(header, start) <= n)
    return -1 if position is None else struct.unpack_from("<q", header, position)[0]


def _check_layout(path: Path) -> None:
    """Refuse a header or packet whose length runs past the end of the file.

    The decoder allocates what a length field says before reading: a flipped bit there asks for
    gigabytes. This walks the packet headers only (a loop over packets, not events).
    """
    size = path.stat().st_size
    if size < len(MAGIC) + 4:
        raise DataError(f"{path}: truncated AEDAT4 file ({size} bytes)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[: len(MAGIC)] != MAGIC:
            raise DataError(f"{path}: not an AEDAT4 file, expected it to start with {MAGIC!r}")
        pos = len(MAGIC) + 4
        length = _u32(m, len(MAGIC))
        if pos + length > size:
            raise DataError(f"{path}: AEDAT4 header of {length} bytes runs past the file's end")
        end = _data_table_position(path, m[pos : pos + length])
        end = size if end < 0 else min(end, size)
        pos += length
        while pos + 8 <= end:
            length = _u32(m, pos + 4)
            if pos + 8 + length > size:
                raise DataError(
                    f"{path}: AEDAT4 packet at byte {pos} claims {length} bytes, past the file's end"
                )
            pos += 8 + length


def read_aedat4(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read the events of an ``.aedat4`` file.

    Args:
        path: The file.
        sensor_size: ``(W, H)``; default the width and height of the event stream's header.

    Raises:
        DataError: missing ``aedat`` package, unreadable file, or no event stream in it.
    """
    try:
        import aedat
    except ImportError:
        raise DataError(
            f"{path}: reading .aedat4 needs the 'aedat' package (pip install aedat)"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    _check_layout(path)
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not ids:
            raise DataError(f"{path}: AEDAT4 file has no event stream, found {streams}")
        sid = ids[0]
        chunks = [pk["events"] for pk in decoder if pk["stream_id"] == sid and "events" in pk]
    except DataError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # the Rust decoder raises OSError, or a pyo3 PanicException
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: unreadable AEDAT4 file ({reason})") from None
    dtype = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    ev = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
    size = sensor_size or (int(streams[sid]["width"]), int(streams[sid]["height"]))
    return make_stream(
        path,
        ev["x"],  # uint16: EventStream checks it against the sensor, then narrows it
        ev["y"],
        ev["t"].astype(np.int64),
        ev["on"].astype(np.int8),
        size,
    )
