"""Readers and writers on tiny files written by the tests, including corrupt and truncated ones."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tests.events.conftest import random_stream
from visrep.errors import DataError
from visrep.events import EventStream, read_events, write_events
from visrep.events.io import read_atis_bin, read_raw


def same(a: EventStream, b: EventStream) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "xytp") and (
        a.sensor_size == b.sensor_size
    )


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".bin"])
def test_write_read_round_trip(tmp_path: Path, suffix: str) -> None:
    if suffix == ".h5":
        pytest.importorskip("h5py")
    s = random_stream(300, sensor_size=(34, 34), seed=3)
    write_events(s, tmp_path / f"s{suffix}")
    assert same(read_events(tmp_path / f"s{suffix}", sensor_size=(34, 34)), s)


def test_bin_overflow_markers_round_trip(tmp_path: Path) -> None:
    # timestamps past 2**23 us need overflow rows (y == 240), each worth 2**13 us
    t = np.array([0, 5, 2**23 - 1, 2**23, 2**23 + 70_000, 3 * 2**23])
    s = EventStream(x=np.arange(6), y=np.arange(6), t=t, p=[0, 1] * 3, sensor_size=(34, 34))
    path = tmp_path / "long.bin"
    write_events(s, path)
    rows = np.fromfile(path, np.uint8).reshape(-1, 5)
    assert (rows[:, 1] == 240).sum() > 0
    assert same(read_atis_bin(path, sensor_size=(34, 34)), s)


def test_bin_fields(tmp_path: Path) -> None:
    # x=3, y=7, p=1, t=0x000345; then an overflow row; then x=1, y=2, p=0, t=5
    data = bytes([3, 7, 0x80, 0x03, 0x45, 0, 240, 0, 0, 0, 1, 2, 0x00, 0x00, 0x05])
    (tmp_path / "a.bin").write_bytes(data)
    s = read_events(tmp_path / "a.bin")
    assert s.x.tolist() == [3, 1] and s.y.tolist() == [7, 2] and s.p.tolist() == [1, 0]
    assert s.t.tolist() == [0x0345, 5 + 2**13] and s.sensor_size == (304, 240)


def test_npz_keeps_sensor_size(tmp_path: Path) -> None:
    s = random_stream(20, sensor_size=(40, 30))
    write_events(s, tmp_path / "a.npz")
    assert read_events(tmp_path / "a.npz").sensor_size == (40, 30)


def evt2_word(kind: int, payload: int) -> int:
    return (kind << 28) | payload


def test_evt2_synthetic(tmp_path: Path) -> None:
    words = [
        evt2_word(0x1, (1 << 22) | (5 << 11) | 6),  # before any TIME_HIGH: dropped
        evt2_word(0x8, 3),  # t[33:6] = 3
        evt2_word(0x1, (2 << 22) | (5 << 11) | 6),  # ON, t = 3*64+2, x=5, y=6
        evt2_word(0xA, 0),  # trigger: skipped
        evt2_word(0x0, (9 << 22) | (7 << 11) | 1),  # OFF, t = 201, x=7, y=1
    ]
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 8x8\n" + np.array(words, "<u4").tobytes())
    s = read_events(path)
    assert s.t.tolist() == [194, 201] and s.x.tolist() == [5, 7] and s.y.tolist() == [6, 1]
    assert s.p.tolist() == [1, 0] and s.sensor_size == (8, 8)


def evt3_word(kind: int, payload: int) -> int:
    return (kind << 12) | payload


def test_evt3_synthetic_vectors(tmp_path: Path) -> None:
    words = [
        evt3_word(0x8, 1),  # TIME_HIGH: t = 1 << 12
        evt3_word(0x6, 10),  # TIME_LOW: t = 4106
        evt3_word(0x0, 3),  # y = 3
        evt3_word(0x2, (1 << 11) | 4),  # single ON event at x = 4
        evt3_word(0x3, 20),  # VECT_BASE_X x = 20, OFF
        evt3_word(0x4, 0b100000000101),  # VECT_12: x = 20, 22, 31; base -> 32
        evt3_word(0x5, 0b10000001),  # VECT_8: x = 32, 39; base -> 40
        evt3_word(0x6, 11),  # t = 4107
        evt3_word(0x0, 5),  # y = 5
        evt3_word(0x3, (1 << 11) | 0),  # base 0, ON
        evt3_word(0x5, 0b11),  # x = 0, 1
        evt3_word(0x8, 0),  # TIME_HIGH wraps 1 -> 0: + 2**24
        evt3_word(0x2, 2),  # t = 2**24 (TIME_HIGH resets low bits)
    ]
    path = tmp_path / "a.raw"
    path.write_bytes(
        b"% evt 3.0\n% format EVT3;height=8;width=48\n" + np.array(words, "<u2").tobytes()
    )
    s = read_events(path)
    assert s.sensor_size == (48, 8)
    assert s.x.tolist() == [4, 20, 22, 31, 32, 39, 0, 1, 2]
    assert s.y.tolist() == [3] * 6 + [5] * 3
    assert s.p.tolist() == [1, 0, 0, 0, 0, 0, 1, 1, 0]
    assert s.t.tolist() == [4106] * 6 + [4107] * 2 + [2**24]


def test_dat_synthetic(tmp_path: Path) -> None:
    ts = np.array([10, 20, 5], "<u4")  # 5 < 20: 32-bit wrap
    x, y, p = np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([1, 0, 1])
    addr = (x | (y << 14) | (p << 28)).astype("<u4")
    body = np.stack([ts, addr], 1).astype("<u4").tobytes()
    path = tmp_path / "a.dat"
    path.write_bytes(b"% Version 2\n% Width 10\n% Height 8\n" + bytes([0, 8]) + body)
    s = read_events(path)
    assert s.t.tolist() == [10, 20, 5 + 2**32] and s.x.tolist() == [1, 2, 3]
    assert s.y.tolist() == [4, 5, 6] and s.p.tolist() == [1, 0, 1] and s.sensor_size == (10, 8)


def test_es_dvs_synthetic(tmp_path: Path) -> None:
    head = b"Event Stream" + bytes([2, 0, 0, 1]) + np.array([300, 260], "<u2").tobytes()
    ev1 = bytes([(3 << 1) | 1]) + np.array([258, 7], "<u2").tobytes()  # dt 3, ON, x=258, y=7
    ev2 = bytes([(1 << 1) | 0]) + np.array([0xFF, 0xFE], "<u2").tobytes()  # bytes that look special
    path = tmp_path / "a.es"
    path.write_bytes(head + ev1 + bytes([0xFF, 0xFE]) + ev2)  # overflow (+127), reset
    s = read_events(path)
    assert s.sensor_size == (300, 260)
    assert s.t.tolist() == [3, 131] and s.x.tolist() == [258, 255] and s.y.tolist() == [7, 254]
    assert s.p.tolist() == [1, 0]
    path.write_bytes(head + ev1 + ev2[:3])
    with pytest.raises(DataError, match="incomplete"):
        read_events(path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("t.bin", bytes(12), "multiple of 5"),
        ("e.bin", b"", "empty"),
        ("t.dat", b"% Version 2\n" + bytes([0, 8]) + bytes(12), "multiple of 8"),
        ("s.dat", b"% Version 2\n" + bytes([0, 16]) + bytes(16), "event size"),
        ("n.dat", bytes(16), "'%' text header"),
        ("t2.raw", b"% evt 2.0\n" + bytes(6), "multiple of 4"),
        ("t3.raw", b"% evt 3.0\n" + bytes(3), "multiple of 2"),
        ("u3.raw", b"% evt 3.0\n" + np.array([0x9000], "<u2").tobytes(), "word type 0x9"),
        ("u2.raw", b"% evt 2.0\n" + np.array([0x30000000], "<u4").tobytes(), "word type 0x3"),
        ("v.raw", b"% nothing\n" + bytes(8), "cannot tell"),
        ("m.es", b"Not a Stream" + bytes(8), "not an Event Stream"),
        ("v.es", b"Event Stream" + bytes([1, 0, 0, 1]), "version 1"),
        ("c.npz", b"PK\x03\x04garbage", "unreadable .npz"),
        ("x.xyz", b"hello", "unknown event file format"),
        ("c.aedat4", b"#!AER-DAT4.0\r\n" + bytes(10), "AEDAT4"),
    ],
)
def test_corrupt_files_raise_one_line(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    if name.endswith(".aedat4"):
        pytest.importorskip("aedat")
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_events(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_file_and_fields(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such event file"):
        read_events(tmp_path / "nope.bin")
    np.savez(tmp_path / "f.npz", x=np.zeros(2), y=np.zeros(2))
    with pytest.raises(DataError, match=r"lacks arrays \['t', 'p'\]"):
        read_events(tmp_path / "f.npz")
    with pytest.raises(DataError, match="cannot write"):
        write_events(random_stream(2), tmp_path / "a.raw")


def test_truncated_npz_and_out_of_sensor(tmp_path: Path) -> None:
    s = random_stream(50, sensor_size=(34, 34))
    write_events(s, tmp_path / "a.npz")
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "b.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"b\.npz"):
        read_events(tmp_path / "b.npz")
    with pytest.raises(DataError, match="x must lie in"):
        read_events(tmp_path / "a.npz", sensor_size=(2, 2))


def test_raw_sniffed_without_extension(tmp_path: Path) -> None:
    words = np.array([0x80000001, 0x10000000 | (1 << 11) | 2], "<u4")
    (tmp_path / "rec").write_bytes(b"% evt 2.0\n" + words.tobytes())
    s = read_events(tmp_path / "rec")
    assert s.t.tolist() == [64] and s.x.tolist() == [1] and s.y.tolist() == [2]
    assert read_raw(tmp_path / "rec", evt="2").sensor_size == (2, 3)


def test_npz_coordinates_past_int32_are_refused_not_wrapped(tmp_path: Path) -> None:
    n = 3
    base = {"y": np.zeros(n, np.int64), "t": np.arange(n), "p": np.ones(n, np.int64)}
    np.savez(tmp_path / "wrap.npz", x=np.arange(n) + 2**32, **base)
    with pytest.raises(DataError, match=r"wrap\.npz: field x holds values in \[4294967296"):
        read_events(tmp_path / "wrap.npz")
    np.savez(
        tmp_path / "t.npz", x=np.arange(n), **{**base, "t": np.arange(n, dtype=np.uint64) + 2**63}
    )
    with pytest.raises(DataError, match=r"t\.npz: field t holds values"):
        read_events(tmp_path / "t.npz")
    with pytest.raises(DataError, match="sensor_size must be positive"):
        EventStream(x=[2**31], y=[0], t=[0], p=[1], sensor_size=(2**32, 1))


def test_evt3_x_past_int16_is_read_exactly(tmp_path: Path) -> None:
    # empty VECT_12 words advance base_x by 12 each: 5462 of them put the event at x = 65544
    words = [evt3_word(0x8, 1), evt3_word(0x0, 3), evt3_word(0x3, 0)]
    words += [evt3_word(0x4, 0)] * 5462 + [evt3_word(0x4, 1)]
    path = tmp_path / "far.raw"
    path.write_bytes(b"% evt 3.0\n" + np.array(words, "<u2").tobytes())
    s = read_events(path)
    assert s.x.tolist() == [65544] and s.x.dtype == np.int32 and s.sensor_size == (65545, 4)
    path.write_bytes(b"% evt 3.0\n% geometry 640x480\n" + np.array(words, "<u2").tobytes())
    with pytest.raises(DataError, match=r"far\.raw: x must lie in \[0, 640\)"):
        read_events(path)


def test_long_headers_are_refused_in_linear_time(tmp_path: Path) -> None:
    words = np.array([0x80000001, 0x10000000 | (1 << 11) | 2], "<u4").tobytes()
    lines = b"".join(b"%% key%d value\n" % i for i in range(300_000))  # 5.3 MB
    path = tmp_path / "long.raw"
    path.write_bytes(b"% evt 2.0\n" + lines + words)
    with pytest.raises(DataError, match=r"long\.raw: '%' text header is longer than 1 MiB"):
        read_events(path)
    path.write_bytes(b"% evt 2.0\n" + lines[: lines.index(b"% key40000 ")] + words)  # 0.6 MB
    s = read_events(path)
    assert s.t.tolist() == [64] and s.x.tolist() == [1] and s.y.tolist() == [2]


def test_odd_header_values(tmp_path: Path) -> None:
    words = np.array([0x80000001, 0x10000000 | (1 << 11) | 2], "<u4").tobytes()
    path = tmp_path / "odd.raw"
    path.write_bytes(b"% evt 2.0\n% geometry " + b"9" * 5000 + b"x5\n" + words)
    assert read_events(path).sensor_size == (2, 3)  # an unreadable geometry is ignored
    path.write_bytes(b"% evt 2.0\n% width" + b" " * 50_000 + b"x\n% Width 8\n% height 4\n" + words)
    assert read_events(path).sensor_size == (8, 4)
    path.write_bytes(b"% evt 2.0\n% geometry 4294967296x5\n" + words)
    with pytest.raises(DataError, match=r"odd\.raw: sensor_size must be positive"):
        read_events(path)


def test_aedat4_lengths_past_the_end_are_refused_before_decoding(tmp_path: Path) -> None:
    pytest.importorskip("aedat")
    from tests.events import conftest as c

    data = bytearray(c.sample(c.AEDAT4_TONIC).read_bytes())
    first = 18 + struct.unpack("<I", data[14:18])[0]  # after the magic, length and IOHeader
    bad = bytearray(data)
    bad[first + 4 : first + 8] = struct.pack("<I", 0xFFFFFFF0)  # the decoder would allocate 4 GiB
    (tmp_path / "big.aedat4").write_bytes(bad)
    with pytest.raises(
        DataError, match=r"big\.aedat4: AEDAT4 packet at byte \d+ claims 4294967280"
    ):
        read_events(tmp_path / "big.aedat4")
    bad = bytearray(data)
    bad[18:22] = struct.pack("<I", 60_000)  # IOHeader root offset outside the header
    (tmp_path / "off.aedat4").write_bytes(bad)
    with pytest.raises(DataError, match=r"off\.aedat4: corrupt AEDAT4 header"):
        read_events(tmp_path / "off.aedat4")
    (tmp_path / "ok.aedat4").write_bytes(data)
    assert len(read_events(tmp_path / "ok.aedat4")) > 0
