"""iniVation AEDAT 4 files (DV software): LZ4/Zstd-compressed flatbuffer packets.

Decoding uses the maintained ``aedat`` package (neuromorphicsystems/aedat, MIT, a Rust
extension on PyPI), the decoder tonic uses too; re-implementing flatbuffers + LZ4 + Zstd here
would not be worth its weight. The events of the lowest-numbered event stream are returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream
from visrep.events.types import EventStream

__all__ = ["read_aedat4"]


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
