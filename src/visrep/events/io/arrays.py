"""Plain array containers: ``.npz`` (numpy) and ``.h5`` (HDF5, needs ``h5py``) with x, y, t, p.

An HDF5 file may keep the four datasets at its root or in an ``events`` group (as DSEC does);
the sensor size is read from a ``sensor_size`` attribute or ``width`` / ``height`` attributes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import DataError
from visrep.events.io._common import make_stream
from visrep.events.types import EventStream

__all__ = ["read_h5", "read_npz", "write_h5", "write_npz"]

FIELDS = ("x", "y", "t", "p")


def read_npz(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read arrays ``x, y, t, p`` (and optional ``sensor_size``) from an ``.npz`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in FIELDS if k not in z.files]
            if missing:
                raise DataError(f"{path}: .npz lacks arrays {missing}, expected x, y, t, p")
            arrs = [z[k] for k in FIELDS]
            stored = tuple(int(v) for v in z["sensor_size"]) if "sensor_size" in z.files else None
    except DataError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError on truncation
        raise DataError(f"{path}: unreadable .npz file ({type(err).__name__}: {err})") from None
    return make_stream(path, *arrs, sensor_size or stored)


def write_npz(stream: EventStream, path: str | Path, compress: bool = False) -> None:
    """Write ``x, y, t, p, sensor_size`` to ``path`` (``np.savez``, or compressed)."""
    save = np.savez_compressed if compress else np.savez
    with open(path, "wb") as f:  # a file object keeps numpy from appending '.npz'
        save(f, **{k: getattr(stream, k) for k in FIELDS}, sensor_size=np.array(stream.sensor_size))


def _h5py(path: str | Path):
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading HDF5 events needs the 'h5py' package") from None
    return h5py


def read_h5(path: str | Path, sensor_size: tuple[int, int] | None = None) -> EventStream:
    """Read datasets ``x, y, t, p`` from the root or the ``events`` group of an HDF5 file."""
    h5py = _h5py(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event file")
    try:
        with h5py.File(path, "r") as f:
            group = f["events"] if "events" in f and isinstance(f["events"], h5py.Group) else f
            missing = [k for k in FIELDS if k not in group]
            if missing:
                raise DataError(f"{path}: HDF5 file lacks datasets {missing}, expected x, y, t, p")
            arrs = [np.asarray(group[k]) for k in FIELDS]
            stored = None
            for obj in (group, f):
                if "sensor_size" in obj.attrs:
                    stored = tuple(int(v) for v in obj.attrs["sensor_size"])
                elif "width" in obj.attrs and "height" in obj.attrs:
                    stored = (int(obj.attrs["width"]), int(obj.attrs["height"]))
                if stored:
                    break
    except DataError:
        raise
    except Exception as err:  # OSError on truncated / non-HDF5 files
        raise DataError(f"{path}: unreadable HDF5 file ({type(err).__name__}: {err})") from None
    return make_stream(path, *arrs, sensor_size or stored)


def write_h5(stream: EventStream, path: str | Path) -> None:
    """Write ``stream`` as an ``events`` group with a ``sensor_size`` attribute."""
    h5py = _h5py(path)
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for k in FIELDS:
            g.create_dataset(k, data=getattr(stream, k))
        g.attrs["sensor_size"] = np.array(stream.sensor_size)
