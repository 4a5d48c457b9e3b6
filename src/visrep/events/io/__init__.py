"""Event file readers and writers, one module per format, all vectorised numpy.

:func:`read_events` picks the reader from the extension, or from the file's first bytes when
the extension is unknown; :func:`write_events` writes ``.npz``, ``.h5`` and ATIS ``.bin``.

=====================  ===========================================  ======================
extension              format                                       reader
=====================  ===========================================  ======================
``.bin``               N-MNIST / N-Caltech101 ATIS (5 bytes/event)  :func:`read_atis_bin`
``.dat``               Prophesee / Chronocam Event2d (N-Cars)       :func:`read_dat`
``.raw``               Prophesee EVT 2.0 / EVT 3.0                  :func:`read_raw`
``.aedat4``            iniVation AEDAT 4 (needs ``aedat``)          :func:`read_aedat4`
``.es``                Event Stream v2, DVS / ATIS                  :func:`read_event_stream`
``.npz``               numpy arrays x, y, t, p                      :func:`read_npz`
``.h5`` / ``.hdf5``    HDF5 datasets x, y, t, p (needs ``h5py``)    :func:`read_h5`
=====================  ===========================================  ======================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from visrep.errors import DataError
from visrep.events.io.aedat4 import read_aedat4
from visrep.events.io.arrays import read_h5, read_npz, write_h5, write_npz
from visrep.events.io.atis_bin import read_atis_bin, write_atis_bin
from visrep.events.io.dat import read_dat
from visrep.events.io.event_stream import read_event_stream
from visrep.events.io.raw import read_raw
from visrep.events.types import EventStream

__all__ = [
    "read_aedat4",
    "read_atis_bin",
    "read_dat",
    "read_event_stream",
    "read_events",
    "read_h5",
    "read_npz",
    "read_raw",
    "write_atis_bin",
    "write_events",
    "write_h5",
    "write_npz",
]

Reader = Callable[..., EventStream]
READERS: dict[str, Reader] = {
    ".bin": read_atis_bin,
    ".bs2": read_atis_bin,  # SLAYER's N-MNIST subset: the ATIS .bin layout
    ".dat": read_dat,
    ".raw": read_raw,
    ".aedat4": read_aedat4,
    ".es": read_event_stream,
    ".npz": read_npz,
    ".h5": read_h5,
    ".hdf5": read_h5,
}
WRITERS = {".npz": write_npz, ".h5": write_h5, ".hdf5": write_h5, ".bin": write_atis_bin}


def _sniff(path: Path) -> Reader | None:
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"Event Stream"):
        return read_event_stream
    if head.startswith(b"#!AER-DAT4"):
        return read_aedat4
    if head.startswith(b"PK"):
        return read_npz
    if head.startswith(b"\x89HDF"):
        return read_h5
    if head.startswith(b"%"):
        lower = head.lower()
        return read_raw if (b"evt 2.0" in lower or b"evt 3.0" in lower) else read_dat
    return None


def read_events(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read an event file in any supported format.

    Args:
        path: The file; its extension picks the reader, else its first bytes do.
        sensor_size: ``(W, H)`` overriding what the file says or the reader's default.

    Returns:
        The file's events as an :class:`~visrep.events.EventStream`.

    Raises:
        DataError: missing file, unknown format, or a corrupt / truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    reader = READERS.get(path.suffix.lower()) or _sniff(path)
    if reader is None:
        raise DataError(f"{path}: unknown event file format, expected one of {', '.join(READERS)}")
    return reader(path, sensor_size=sensor_size)


def write_events(stream: EventStream, path: str | Path) -> None:
    """Write ``stream`` to ``path``; the extension picks the format (.npz, .h5, .bin)."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise DataError(f"{path}: cannot write this format, expected one of {', '.join(WRITERS)}")
    writer(stream, path)
