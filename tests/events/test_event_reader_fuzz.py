"""Seeded fuzz of every event reader: corrupt, foreign and hand-made versions of tiny files.

Each format's sample is written here (by the project's writers, or by numpy for the formats
they do not write; AEDAT 4 is cut from the shared sample), then read back truncated,
zero-length, bit-flipped, overwritten, random and under every other extension. Every case must
end in a :class:`~visrep.errors.VisrepError` naming the file, or in a stream that keeps the
:class:`~visrep.events.EventStream` contract; ``.npz`` and ``.h5`` reads must also equal the
arrays stored in the file.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_reader_fuzz import byte_cases, file_cases, run_cases
from tests.events import conftest as c
from tests.events.conftest import random_stream
from visrep.events import EventStream, write_events
from visrep.events.io import read_events, write_npz

EXTENSIONS = (".bin", ".bs2", ".dat", ".raw", ".aedat4", ".es", ".npz", ".h5", "", ".txt")


def check_stream(s: object) -> str | None:
    """The EventStream contract: one length, dtypes, ranges, sorted int64 time, p in {0, 1}."""
    if not isinstance(s, EventStream):
        return f"not an EventStream: {type(s).__name__}"
    w, h = s.sensor_size
    n = len(s.t)
    if any(len(a) != n for a in (s.x, s.y, s.p)):
        return "arrays of different lengths"
    if s.x.dtype not in (np.int16, np.int32) or s.y.dtype not in (np.int16, np.int32):
        return f"coordinate dtypes {s.x.dtype}, {s.y.dtype}"
    if s.t.dtype != np.int64 or s.p.dtype != np.int8:
        return f"t {s.t.dtype} / p {s.p.dtype}"
    if n and not (s.x.min() >= 0 and s.x.max() < w and s.y.min() >= 0 and s.y.max() < h):
        return f"coordinates outside the sensor {s.sensor_size}"
    if n > 1 and (np.diff(s.t) < 0).any():
        return "t not sorted"
    if n and not np.isin(s.p, (0, 1)).all():
        return "p not in {0, 1}"
    return None


def same_as_stored(path: Path, s: EventStream) -> str | None:
    """A read of an array container must equal the arrays in it (no silent wrap)."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            stored = {k: z[k] for k in "xytp"}
    else:
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "r") as f:
            g = f.get("events", f)
            stored = {k: np.asarray(g[k]) for k in "xytp"}
    for k, a in stored.items():
        if not np.array_equal(a.astype(object), getattr(s, k).astype(object)):
            return f"{k} differs from the stored array"
    return None


def read(path: Path) -> EventStream:
    return read_events(path)


def read_container(path: Path) -> EventStream:
    """Read an ``.npz`` / ``.h5`` file; a stream that differs from its arrays is a bad case."""
    s = read_events(path)
    problem = check_stream(s) or same_as_stored(path, s)
    if problem:
        raise AssertionError(problem)  # run_cases reports it
    return s


# -- samples --------------------------------------------------------------------------------------
def evt2_bytes() -> bytes:
    rng = np.random.default_rng(21)
    words = [0x80000003]
    for _ in range(30):
        x, y, dt, on = (
            rng.integers(0, 32),
            rng.integers(0, 24),
            rng.integers(0, 64),
            rng.integers(2),
        )
        words.append((int(on) << 28) | (int(dt) << 22) | (int(x) << 11) | int(y))
    words[5:5] = [0x80000004, 0xA0000000]
    body = np.array(words, "<u4").tobytes()
    return b"% evt 2.0\n% geometry 32x24\n% end\n" + body


def evt3_bytes() -> bytes:
    words = [0x8001, 0x600A, 0x0003, 0x2804, 0x3014, 0x4805, 0x5081, 0x600B, 0x0005, 0x3800]
    words += [0x5003, 0x8002, 0x2002, 0x0007, 0x2810, 0x6FFF]
    body = np.array(words, "<u2").tobytes()
    return b"% evt 3.0\n% format EVT3;height=8;width=48\n% end\n" + body


def dat_bytes() -> bytes:
    rng = np.random.default_rng(22)
    ts = np.sort(rng.integers(0, 10_000, 30)).astype("<u4")
    x, y, p = rng.integers(0, 30, 30), rng.integers(0, 20, 30), rng.integers(0, 2, 30)
    addr = (x | (y << 14) | (p << 28)).astype("<u4")
    body = np.stack([ts, addr], 1).astype("<u4").tobytes()
    return b"% Version 2\n% Width 30\n% Height 20\n" + bytes([0, 8]) + body


def es_bytes() -> bytes:
    head = b"Event Stream" + bytes([2, 0, 0, 1]) + np.array([40, 30], "<u2").tobytes()
    rng = np.random.default_rng(23)
    body = b""
    for _ in range(20):
        dt, on = int(rng.integers(0, 120)), int(rng.integers(2))
        xy = np.array([rng.integers(0, 40), rng.integers(0, 30)], "<u2").tobytes()
        body += bytes([(dt << 1) | on]) + xy
        if rng.random() < 0.2:
            body += bytes([0xFF])
    return head + body


def aedat4_bytes() -> bytes:
    """The header and first four packets of the shared AEDAT 4 sample (its data table dropped)."""
    data = bytearray(c.sample(c.AEDAT4_TONIC).read_bytes())
    pos = 18 + struct.unpack("<I", data[14:18])[0]
    for _ in range(4):
        pos += 8 + struct.unpack("<I", data[pos + 4 : pos + 8])[0]
    data[54:62] = struct.pack("<q", -1)  # IOHeader.dataTablePosition: none, read to the end
    return bytes(data[:pos])


def write_bytes(tmp: Path, fmt: str) -> bytes:
    """The sample of ``fmt`` as bytes, written by the project's writers where they exist."""
    s = random_stream(40, sensor_size=(34, 34), seed=24)
    if fmt in ("bin", "npz", "h5"):
        path = tmp / f"sample.{fmt}"
        write_events(s, path)
        return path.read_bytes()
    if fmt == "npzc":
        write_npz(s, tmp / "c.npz", compress=True)
        return (tmp / "c.npz").read_bytes()
    make = {"evt2": evt2_bytes, "evt3": evt3_bytes, "dat": dat_bytes, "es": es_bytes}
    return make.get(fmt, aedat4_bytes)()


FORMATS = {  # name: (extension, seed)
    "bin": (".bin", 31),
    "dat": (".dat", 32),
    "evt2": (".raw", 33),
    "evt3": (".raw", 34),
    "es": (".es", 35),
    "npz": (".npz", 36),
    "npzc": (".npz", 37),
    "h5": (".h5", 38),
    "aedat4": (".aedat4", 39),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fuzz_event_reader(tmp_path: Path, fmt: str) -> None:
    if fmt == "h5":
        pytest.importorskip("h5py")
    if fmt == "aedat4":
        pytest.importorskip("aedat")
    ext, seed = FORMATS[fmt]
    data = write_bytes(tmp_path, fmt)
    assert check_stream(read_sample(tmp_path, data, ext)) is None
    cases = byte_cases(tmp_path / "m", f"sample{ext}", data, seed, {})
    reader = read_container if fmt in ("npz", "npzc", "h5") else read
    run_cases(f"events {fmt}", cases, reader, check_stream)


def read_sample(tmp: Path, data: bytes, ext: str) -> EventStream:
    path = tmp / f"original{ext}"
    path.write_bytes(data)
    return read_events(path)


def test_fuzz_event_wrong_extension(tmp_path: Path) -> None:
    """Every sample's bytes under every extension (and none: the dispatcher sniffs them)."""
    contents = {}
    for fmt in FORMATS:
        if fmt == "aedat4" and not c.SAMPLES.joinpath(c.AEDAT4_TONIC).is_file():
            continue
        contents[fmt] = write_bytes(tmp_path, fmt)
    cases = []
    for fmt, content in contents.items():
        for ext in EXTENSIONS:
            case = f"{fmt}-as{ext or '-none'}"
            cases += file_cases(tmp_path / "w", f"rec{ext}", [(case, content)])
    run_cases("events wrong extension", cases, read, check_stream)


def test_fuzz_event_semantic(tmp_path: Path) -> None:
    """Hand-made files a byte fuzzer rarely builds: overflowing fields, odd headers."""
    n = 4
    t = np.arange(n, dtype=np.int64)
    base = {"y": np.zeros(n, np.int64), "t": t, "p": np.ones(n, np.int64)}
    # EVT 3.0: empty VECT_12 words advance base_x past 2**16, then one event at x = 65544
    vec = [0x8001, 0x0003, 0x3000] + [0x4000] * 5462 + [0x4001]
    items = {
        "x-int32-wrap.npz": _npz(x=np.arange(n) + 2**32, **base),
        "x-int32-wrap-sized.npz": _npz(
            x=np.arange(n) + 2**32, **base, sensor_size=np.array([2**33, 4])
        ),
        "x-negative.npz": _npz(x=np.arange(n) - 2, **base),
        "t-uint64.npz": _npz(x=np.arange(n), **{**base, "t": t.astype(np.uint64) + 2**63}),
        "t-float.npz": _npz(x=np.arange(n), **{**base, "t": t + 0.5}),
        "p-two.npz": _npz(x=np.arange(n), **{**base, "p": np.full(n, 2)}),
        "sensor-0d.npz": _npz(x=np.arange(n), **base, sensor_size=np.array(5)),
        "sensor-huge.npz": _npz(x=np.arange(n), **base, sensor_size=np.array([2**40, 9])),
        "x-2d.npz": _npz(x=np.zeros((n, 2), np.int64), **base),
        "evt3-x-past-int16.raw": b"% evt 3.0\n" + np.array(vec, "<u2").tobytes(),
        "geometry-digits.raw": b"% evt 2.0\n% geometry " + b"9" * 5000 + b"x5\n",
        "width-spaces.raw": b"% evt 2.0\n% width" + b" " * 60_000 + b"x\n",
        "header-no-newline.raw": b"% evt 2.0" + b"%" * 1000,
        "header-only.dat": b"% Width 4\n% Height 4\n",
        "dat-polarity.dat": b"% Width 4\n" + bytes([0, 8]) + struct.pack("<II", 1, 7 << 28),
    }

    def read_semantic(path: Path) -> EventStream:
        if path.suffix == ".npz":
            return read_container(path)
        s = read_events(path)
        if path.name.startswith("evt3-x") and s.x.tolist() != [65544]:
            raise AssertionError(f"x read as {s.x.tolist()}, expected [65544]")
        return s

    cases = file_cases(tmp_path, "", list(items.items()))
    run_cases("events semantic", cases, read_semantic, check_stream)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
