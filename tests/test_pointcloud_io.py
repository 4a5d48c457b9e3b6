"""Point-cloud readers on tiny files written here (every format, every error) and on the shared
samples; parity with plyfile / pypcd4 / python-lzf where installed (test-only references)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from visrep.data.pointcloud.io import (
    describe_npz,
    lzf_decompress,
    read_pcd,
    read_points,
    read_scan_bin,
)
from visrep.errors import ConfigError, DataError

PCD_SAMPLES = SHARED_DATA / "modelnet10" / "pcd-samples"
MODELNET_NPZ = SHARED_DATA / "modelnet10" / "modelnet10_1024.npz"
SCANS = SHARED_DATA / "pointclouds" / "mmdetection3d" / "demo" / "data"


def _raises(fn, path, *words):
    """``fn()`` raises DataError with one line naming ``path`` and each of ``words``."""
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# -- PCD -----------------------------------------------------------------------------------------
def _pcd_header(fields, sizes, types, counts, n, data, extra=""):
    return (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\n"
        f"TYPE {' '.join(types)}\nCOUNT {' '.join(map(str, counts))}\n"
        f"WIDTH {n}\nHEIGHT 1\n{extra}VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    ).encode()


def _lzf_compress(raw: bytes) -> bytes:
    """A small greedy LZF encoder (liblzf's token format): literal runs and back references."""
    out, lit, i, last = bytearray(), bytearray(), 0, {}

    def flush():
        while lit:
            chunk = lit[:32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
            del lit[:32]

    while i < len(raw):
        ref = last.get(raw[i : i + 3]) if i + 3 <= len(raw) else None
        if ref is not None and 0 < i - ref <= 8192:
            n = 3
            while i + n < len(raw) and n < 264 and raw[ref + n] == raw[i + n]:
                n += 1
            flush()
            d, length = i - ref - 1, n - 2
            if length < 7:
                out += bytes([(length << 5) | (d >> 8), d & 255])
            else:
                out += bytes([(7 << 5) | (d >> 8), length - 7, d & 255])
            for j in range(i, i + n):
                last[raw[j : j + 3]] = j
            i += n
        else:
            last[raw[i : i + 3]] = i
            lit.append(raw[i])
            i += 1
    flush()
    return bytes(out)


@pytest.fixture
def pcd_records():
    rng = np.random.default_rng(0)
    n = 50
    rec = np.zeros(
        n,
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("_", "u1", (3,)), ("intensity", "<f8"),
               ("label", "<u2"), ("hist", "<i2", (3,)), ("rgb", "<f4")],
    )  # fmt: skip
    for a in "xyz":
        rec[a] = rng.normal(size=n)
    rec["intensity"] = rng.random(n)
    rec["label"] = rng.integers(0, 7, n)
    rec["hist"] = rng.integers(-5, 5, (n, 3))
    rgb = (np.uint32(10) << 16) | (np.uint32(20) << 8) | rng.integers(0, 255, n).astype(np.uint32)
    rec["rgb"] = rgb.view(np.float32)
    return rec


PCD_FIELDS = (["x", "y", "z", "_", "intensity", "label", "hist", "rgb"], [4, 4, 4, 1, 8, 2, 2, 4],
              ["F", "F", "F", "U", "F", "U", "I", "F"], [1, 1, 1, 3, 1, 1, 3, 1])  # fmt: skip


def _check_pcd(cloud, rec):
    assert np.array_equal(cloud.xyz, np.stack([rec[a] for a in "xyz"], 1))
    assert cloud.feature_names == ("intensity", "hist_0", "hist_1", "hist_2", "r", "g", "b")
    assert np.allclose(cloud.features[:, 0], rec["intensity"].astype(np.float32))
    assert np.array_equal(cloud.features[:, 1:4], rec["hist"])
    assert (cloud.features[:, 4] == 10).all() and (cloud.features[:, 5] == 20).all()
    assert np.array_equal(cloud.features[:, 6], rec["rgb"].view(np.uint32) & 255)
    assert np.array_equal(cloud.labels, rec["label"])


def test_pcd_binary(tmp_path, pcd_records):
    p = tmp_path / "a.pcd"
    p.write_bytes(_pcd_header(*PCD_FIELDS, len(pcd_records), "binary") + pcd_records.tobytes())
    cloud = read_points(p)
    _check_pcd(cloud, pcd_records)
    assert cloud.meta["format"] == "pcd binary" and cloud.meta["viewpoint"] == [0, 0, 0, 1, 0, 0, 0]


def test_pcd_binary_compressed(tmp_path, pcd_records):
    # structure of arrays: all values of one field, then the next field
    soa = b"".join(pcd_records[name].tobytes() for name in pcd_records.dtype.names)
    comp = _lzf_compress(soa)
    assert len(comp) < len(soa) * 1.05
    p = tmp_path / "c.pcd"
    sizes = np.array([len(comp), len(soa)], dtype="<u4").tobytes()
    p.write_bytes(_pcd_header(*PCD_FIELDS, len(pcd_records), "binary_compressed") + sizes + comp)
    _check_pcd(read_pcd(p), pcd_records)
    # the declared uncompressed size must fit POINTS; a truncated stream is refused
    bad = np.array([len(comp), len(soa) - 1], dtype="<u4").tobytes()
    p.write_bytes(_pcd_header(*PCD_FIELDS, len(pcd_records), "binary_compressed") + bad + comp)
    _raises(lambda: read_pcd(p), p, "fewer points than declared")
    p.write_bytes(
        _pcd_header(*PCD_FIELDS, len(pcd_records), "binary_compressed") + sizes + comp[:-9]
    )
    _raises(lambda: read_pcd(p), p, "truncated")


def test_pcd_ascii(tmp_path, pcd_records):
    p = tmp_path / "t.pcd"
    fields = ["x", "y", "z", "intensity", "label"]
    body = "".join(
        f"{float(r['x'])!r} {float(r['y'])!r} {float(r['z'])!r} {float(r['intensity'])!r} {r['label']}\n"
        for r in pcd_records
    )
    p.write_bytes(
        _pcd_header(fields, [4, 4, 4, 8, 4], list("FFFFU"), [1] * 5, len(pcd_records), "ascii")
        + body.encode()
    )
    cloud = read_pcd(p)
    assert np.array_equal(cloud.xyz, np.stack([pcd_records[a] for a in "xyz"], 1))
    assert np.array_equal(cloud.labels, pcd_records["label"]) and cloud.feature_names == (
        "intensity",
    )
    assert cloud.meta["format"] == "pcd ascii"
    assert read_pcd(p, label_field=None).feature_names == ("intensity", "label")


def test_pcd_nonfinite_policies(tmp_path):
    p = tmp_path / "n.pcd"
    p.write_bytes(
        _pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 3, "ascii")
        + b"0 0 0\n1 nan 1\n2 2 2\n"
    )
    _raises(lambda: read_pcd(p), p, "line 13", "non-finite", "y=nan")
    assert len(read_pcd(p, nonfinite="drop")) == 2
    assert len(read_points(p, nonfinite="keep")) == 3


@pytest.mark.parametrize(
    ("header", "body", "words"),
    [
        (_pcd_header(list("xyz"), [4, 4], list("FFF"), [1] * 3, 1, "ascii"), b"0 0 0\n", ["SIZE has 2 entries"]),
        (_pcd_header(list("xyz"), [4, 4, 2], list("FFF"), [1] * 3, 1, "binary"), b"", ["field 'z'", "unsupported TYPE F with SIZE 2"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFX"), [1] * 3, 1, "binary"), b"", ["field 'z'", "unsupported TYPE X"]),
        (_pcd_header(list("xyw"), [4] * 3, list("FFF"), [1] * 3, 1, "ascii"), b"0 0 0\n", ["line 3", "no 'z' field"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 1, "ascii", "COLOR 3\n"), b"", ["line 9", "unknown PCD header entry 'COLOR'"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 1, "lzma"), b"", ["DATA 'lzma'"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 3, "ascii"), b"0 0 0\n1 1 1\n", ["fewer points than declared", "POINTS 3, found 2"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 1, "ascii"), b"0 0 0\n1 1 1\n", ["line 13", "more data lines"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 2, "ascii"), b"0 0 0\n1 1\n", ["line 13", "has 2 values, expected 3"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 2, "ascii"), b"0 0 0\n1 a 1\n", ["line 13", "'a' is not a number"]),
        (_pcd_header(list("xyzl"), [4] * 4, list("FFFU"), [1] * 4, 1, "ascii"), b"0 0 0 1.5\n", ["line 12", "field 'l'"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 4, "binary"), bytes(40), ["fewer points than declared", "needs 48 bytes", "has 40"]),
        (_pcd_header(list("xyz"), [4] * 3, list("FFF"), [1] * 3, 1, "binary_compressed"), b"\x01", ["no size words"]),
        (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nHEIGHT 1\nPOINTS 3\nDATA ascii\n", b"", ["line 7", "POINTS 3 does not equal WIDTH x HEIGHT = 2"]),
        (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n", b"", ["no data line"]),
        (b"VERSION 0.7\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nDATA ascii\n", b"0 0 0\n", ["no FIELDS line"]),
        (b"\xff\xfe\x00junk\n", b"", ["line 1", "not ASCII"]),
    ],
)  # fmt: skip
def test_pcd_errors(tmp_path, header, body, words):
    p = tmp_path / "bad.pcd"
    p.write_bytes(header + body)
    _raises(lambda: read_points(p), p, *words)


def test_pcd_parity_with_pypcd4_binary_compressed(tmp_path):
    pypcd4 = pytest.importorskip("pypcd4")
    rng = np.random.default_rng(1)
    arr = np.round(rng.normal(size=(3000, 4)), 2).astype(np.float32)  # compressible
    pc = pypcd4.PointCloud.from_xyzi_points(arr)
    for kind in ("ascii", "binary", "binary_compressed"):
        p = tmp_path / f"{kind}.pcd"
        pc.save(p, encoding=pypcd4.Encoding(kind))
        cloud = read_pcd(p)
        assert np.array_equal(cloud.xyz, arr[:, :3]) and np.array_equal(
            cloud.features[:, 0], arr[:, 3]
        )
        assert cloud.feature_names == ("intensity",)


def test_lzf_against_python_lzf_and_corruption():
    lzf = pytest.importorskip("lzf")
    rng = np.random.default_rng(2)
    for raw in (b"abc" * 500, bytes(5000), rng.integers(0, 3, 20000, dtype=np.uint8).tobytes()):
        comp = lzf.compress(raw)
        assert lzf_decompress(comp, len(raw)).tobytes() == raw
        assert lzf_decompress(_lzf_compress(raw), len(raw)).tobytes() == raw
    comp = lzf.compress(b"abc" * 500)
    for bad, size, word in (
        (comp[:-1], 1500, "LZF"),
        (comp, 1499, "expected 1499"),
        (b"\x40\x05", 4, "before the start"),
    ):
        with pytest.raises(DataError, match=word):
            lzf_decompress(bad, size)


def test_lzf_sizes_beyond_the_format_or_the_cap_are_refused(tmp_path, monkeypatch):
    from visrep.data.pointcloud.io import lzf as lzf_module

    k = 40  # a literal, then k longest back references: the most output LZF allows per byte
    stream = b"\x00a" + b"\xe0\xff\x00" * k
    assert lzf_decompress(stream, 1 + 264 * k).tobytes() == b"a" * (1 + 264 * k)
    assert 1 + 264 * k <= 88 * len(stream)
    with pytest.raises(DataError, match=r"^s: 10737 uncompressed bytes declared, more than 122"):
        lzf_decompress(stream, 88 * len(stream) + 1, "s")
    monkeypatch.setattr(lzf_module, "LZF_MAX_BYTES", 1000)
    with pytest.raises(DataError, match="decompresses at most 1000 bytes"):
        lzf_decompress(stream, 1 + 264 * k, "s")
    monkeypatch.undo()
    # a PCD header claiming 10^8 points over 4 bytes of data: refused before any allocation
    p = tmp_path / "huge.pcd"
    head = _pcd_header("xyz", [4] * 3, "FFF", [1] * 3, 10**8, "binary_compressed")
    size = np.array([4, 12 * 10**8], "<u4").tobytes()
    p.write_bytes(head + size + b"\x00abcd")
    _raises(lambda: read_points(p), p, "uncompressed bytes declared")


def test_shared_pcd_samples_match_the_modelnet_npz():
    files = sorted(PCD_SAMPLES.glob("*.pcd")) if PCD_SAMPLES.is_dir() else []
    if not files or not MODELNET_NPZ.is_file():
        pytest.skip("shared ModelNet10 samples absent")
    with np.load(MODELNET_NPZ) as z:
        x = {s: z[f"x_{s}"] for s in ("train", "test")}  # each access decompresses anew
        names = {str(n): ("train", i) for i, n in enumerate(z["names_train"])}
        names.update({str(n): ("test", i) for i, n in enumerate(z["names_test"])})
    for f in files:
        cloud = read_points(f)
        assert len(cloud) == 1024 and cloud.meta["format"] == "pcd binary"
        split, i = names[f.name]
        assert np.array_equal(cloud.xyz, x[split][i]), f


# -- scans and arrays ----------------------------------------------------------------------------
def test_scan_bin_columns_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    k = tmp_path / "000001.bin"
    kitti = rng.normal(size=(100, 4)).astype("<f4")
    kitti.tofile(k)
    c = read_points(k)
    assert np.array_equal(c.xyz, kitti[:, :3]) and c.feature_names == ("reflectance",)
    nu = tmp_path / "scan__LIDAR_TOP__1.pcd.bin"
    nus = rng.normal(size=(101, 5)).astype("<f4")
    nus.tofile(nu)
    c = read_points(nu)
    assert c.feature_names == ("intensity", "ring") and np.array_equal(c.features, nus[:, 3:])
    lab = kitti.copy()
    lab[:, 3] = rng.integers(0, 4, 100)
    lab.tofile(k)
    c = read_scan_bin(k, columns=["x", "y", "z", "label"])
    assert c.features is None and np.array_equal(c.labels, lab[:, 3].astype(np.int64))
    _raises(lambda: read_points(nu, columns=4), nu, "wrong column count", "2020 bytes", "columns=5")
    _raises(lambda: read_points(k, columns=("y", "x", "z", "i")), k, "starting x, y, z")
    bad = tmp_path / "nan.bin"
    arr = np.zeros((4, 4), "<f4")
    arr[2, 0] = np.nan
    arr.tofile(bad)
    _raises(lambda: read_points(bad), bad, "point 2", "non-finite coordinate x=nan")
    with pytest.raises(ConfigError, match=r"option 'num_points' does not apply to \.bin"):
        read_points(k, num_points=10)


def test_shared_scans():
    if not SCANS.is_dir():
        pytest.skip("shared point clouds absent")
    kitti = read_points(SCANS / "kitti" / "000008.bin")
    assert len(kitti) == 17238 and kitti.feature_names == ("reflectance",)
    nus = next((SCANS / "nuscenes").glob("*LIDAR_TOP*.pcd.bin"))
    assert len(read_points(nus)) == 34688
    assert len(read_points(SCANS / "scannet" / "scene0000_00.bin", columns=6)) == 40684
    sun = read_points(SCANS / "sunrgbd" / "000017.bin", columns=6)
    assert len(sun) == 50000 and sun.feature_names == ("r", "g", "b")
    for c in (kitti, sun):
        assert np.isfinite(c.xyz).all()


def test_npy_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.normal(size=(20, 5)).astype(np.float32)
    np.save(tmp_path / "one.npy", one)
    c = read_points(tmp_path / "one.npy")
    assert np.array_equal(c.points, one) and c.feature_names == ("f3", "f4")
    c = read_points(tmp_path / "one.npy", columns=["x", "y", "z", "nx", "ny"])
    assert c.fields == ("x", "y", "z", "nx", "ny")
    stack = rng.normal(size=(4, 10, 3))
    np.save(tmp_path / "stack.npy", stack)
    assert np.allclose(read_points(tmp_path / "stack.npy", index=2).xyz, stack[2])
    _raises(
        lambda: read_points(tmp_path / "stack.npy"),
        tmp_path / "stack.npy",
        "holds 4 clouds",
        "index",
    )
    _raises(
        lambda: read_points(tmp_path / "stack.npy", index=4),
        tmp_path / "stack.npy",
        "index 4 is out of range",
    )
    np.savez(
        tmp_path / "seg.npz",
        points=one,
        point_labels=np.arange(20),
        feature_names=np.array(["i", "j"]),
    )
    s = read_points(tmp_path / "seg.npz").to_sample()
    assert s["points"].shape == (20, 5) and s["point_labels"].tolist() == list(range(20))
    assert read_points(tmp_path / "seg.npz").feature_names == ("i", "j")
    np.savez(
        tmp_path / "set.npz",
        x_train=stack,
        y_train=np.array([0, 1, 1, 0]),
        x_test=stack[:2],
        y_test=np.array([1, 0]),
        classes=np.array(["a", "b"]),
    )
    c = read_points(tmp_path / "set.npz", index=1, split="test")
    assert c.label == 0 and c.meta["class_name"] == "a" and np.allclose(c.xyz, stack[1])
    assert c.to_sample()["label"] == 0
    info = describe_npz(tmp_path / "set.npz")
    assert info["splits"]["train"]["clouds"] == 4 and info["splits"]["train"]["per_class"] == {
        "a": 2,
        "b": 2,
    }
    _raises(
        lambda: read_points(tmp_path / "set.npz", index=0, split="val"),
        tmp_path / "set.npz",
        "no split 'val'",
    )
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises(lambda: read_points(tmp_path / "obj.npy"), tmp_path / "obj.npy", "cannot read")
    np.save(tmp_path / "flat.npy", np.zeros((5, 2)))
    _raises(lambda: read_points(tmp_path / "flat.npy"), tmp_path / "flat.npy", "(N, D >= 3)")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    _raises(
        lambda: read_points(tmp_path / "other.npz"),
        tmp_path / "other.npz",
        "expected an array 'points'",
    )


def test_shared_modelnet_npz():
    if not MODELNET_NPZ.is_file():
        pytest.skip("shared ModelNet10 npz absent")
    info = describe_npz(MODELNET_NPZ)
    assert info["splits"]["train"]["clouds"] == 3991 and info["splits"]["test"]["clouds"] == 908
    assert len(info["classes"]) == 10 and info["splits"]["test"]["per_class"]["bathtub"] == 50
    c = read_points(MODELNET_NPZ, index=0, split="test")
    assert len(c) == 1024 and c.meta["name"] == "bathtub_0107.pcd" and c.label == 0


def test_read_points_dispatch_errors(tmp_path):
    p = tmp_path / "x.xyz"
    p.write_text("0 0 0\n")
    _raises(lambda: read_points(p), p, "unknown point-cloud format '.xyz'")
    _raises(
        lambda: read_points(tmp_path / "missing.pcd"), tmp_path / "missing.pcd", "no such PCD file"
    )
