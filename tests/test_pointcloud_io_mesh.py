"""PLY and OFF readers and mesh-surface sampling on tiny files written here (every format, every
error); parity with plyfile where installed (a test-only reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_pointcloud_io import _raises
from visrep.data.pointcloud.io import read_off, read_ply, read_ply_mesh, read_points
from visrep.data.pointcloud.sampling import sample_mesh_surface, surface_samples, triangulate_fan
from visrep.errors import ConfigError, DataError

# -- PLY -----------------------------------------------------------------------------------------
VERTS = np.array(
    [(0, 0, 0, 1, 255, 1), (1, 0, 0, 3, 0, 2), (1, 1, 0, 6, 3, 3), (0, 1, 0, 4, 4, 4), (0, 0, 1, 0, 1, 5)],
    dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f8"), ("red", "u1"), ("label", "i4")],
)  # fmt: skip
FACES = [[0, 1, 2, 3], [0, 1, 4], [1, 2, 4]]
PLY_HEAD = (
    "ply\nformat {fmt} 1.0\ncomment tiny\nelement vertex 5\nproperty float x\nproperty float y\n"
    "property float z\nproperty double nx\nproperty uchar red\nproperty int label\n"
    "element face 3\nproperty list uchar int vertex_indices\nend_header\n"
)


def _write_ply(path: Path, fmt: str) -> None:
    if fmt == "ascii":
        rows = "".join(f"{v[0]} {v[1]} {v[2]} {v[3]} {v[4]} {v[5]}\n" for v in VERTS)
        faces = "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in FACES)
        path.write_bytes((PLY_HEAD.format(fmt=fmt) + rows + faces).encode())
        return
    e = "<" if fmt == "binary_little_endian" else ">"
    body = VERTS.astype(VERTS.dtype.newbyteorder(e)).tobytes()
    for f in FACES:
        body += np.uint8(len(f)).tobytes() + np.array(f, dtype=e + "i4").tobytes()
    path.write_bytes(PLY_HEAD.format(fmt=fmt).encode() + body)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_vertices_faces_and_sampling(tmp_path, fmt):
    p = tmp_path / f"{fmt}.ply"
    _write_ply(p, fmt)
    cloud = read_points(p)
    assert cloud.meta["format"] == f"ply {fmt}"
    assert np.array_equal(cloud.xyz, np.stack([VERTS[a] for a in "xyz"], 1))
    assert cloud.feature_names == ("nx", "red")
    assert np.allclose(cloud.features, np.stack([VERTS["nx"], VERTS["red"]], 1))
    assert cloud.labels.tolist() == [1, 2, 3, 4, 5]
    mesh = read_ply_mesh(p)
    assert (
        mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4]] and mesh.polygons == 3
    )
    s = read_ply(p, num_points=400, generator=torch.Generator().manual_seed(0))
    assert len(s) == 400 and s.labels is not None and np.isfinite(s.xyz).all()
    # every sample lies on a face: the square z = 0, the triangle y = 0, or x + y + z = 1 ... (x = 1 - z)
    on = (
        (np.abs(s.xyz[:, 2]) < 1e-6)
        | (np.abs(s.xyz[:, 1]) < 1e-6)
        | (np.abs(s.xyz[:, 0] + s.xyz[:, 2] - 1) < 1e-5)
    )
    assert on.all()
    # features are interpolated with the point's barycentric weights: nx = 2x + 3y - z + 1 at
    # the corners, so at every sample too; the label is that of the nearest corner
    x, y, z = s.xyz.T.astype(np.float64)
    assert np.allclose(s.features[:, 0], 2 * x + 3 * y - z + 1, atol=1e-5)
    corner = np.linalg.norm(s.xyz[:, None] - cloud.xyz[None], axis=2)
    near = np.sort(corner, axis=1)
    clear = near[:, 1] - near[:, 0] > 0.05  # not on a tie between two corners
    assert np.array_equal(s.labels[clear], cloud.labels[corner.argmin(1)][clear])
    ref = read_ply(
        tmp_path / f"{fmt}.ply", num_points=400, generator=torch.Generator().manual_seed(0)
    )
    assert np.array_equal(ref.xyz, s.xyz)


def test_ply_formats_agree_and_match_plyfile(tmp_path):
    clouds = []
    for fmt in ("ascii", "binary_little_endian", "binary_big_endian"):
        _write_ply(tmp_path / f"{fmt}.ply", fmt)
        clouds.append(
            read_ply(
                tmp_path / f"{fmt}.ply", num_points=50, generator=torch.Generator().manual_seed(3)
            )
        )
    for c in clouds[1:]:
        assert np.allclose(c.xyz, clouds[0].xyz) and np.array_equal(c.labels, clouds[0].labels)
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(0)
    v = np.zeros(
        300, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"), ("green", "u1")]
    )
    for k in ("x", "y", "z", "intensity"):
        v[k] = rng.normal(size=300)
    v["green"] = rng.integers(0, 255, 300)
    faces = np.empty(200, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [
        rng.integers(0, 300, int(k)).astype("i4") for k in rng.integers(3, 6, 200)
    ]
    for text, order in ((True, "="), (False, "<"), (False, ">")):
        p = tmp_path / "pf.ply"
        plyfile.PlyData(
            [plyfile.PlyElement.describe(v, "vertex"), plyfile.PlyElement.describe(faces, "face")],
            text=text,
            byte_order=order,
        ).write(p)
        ref = plyfile.PlyData.read(p)
        cloud = read_ply(p)
        assert np.array_equal(cloud.xyz, np.stack([ref["vertex"][a] for a in "xyz"], 1))
        assert np.array_equal(cloud.features[:, 1], ref["vertex"]["green"])
        tri = triangulate_fan([np.asarray(f)[None] for f in ref["face"]["vertex_indices"]])
        assert np.array_equal(read_ply_mesh(p).faces, tri)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("plx\nformat ascii 1.0\nend_header\n", ["line 1", "not a PLY file"]),
        ("ply\nformat binary_middle_endian 1.0\nend_header\n", ["line 2", "unsupported PLY format"]),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n", ["line 4", "property 'x'", "unsupported type 'float128'"]),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n0 0\n", ["no 'z' property"]),
        ("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n", ["fewer vertex lines than declared", "element vertex 2, found 1"]),
        ("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n1 1\n", ["line 9", "has 2 values, expected 3"]),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 inf 0\n", ["line 8", "non-finite coordinate y=inf"]),
        ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n", ["fewer vertex lines"]),
        ("ply\nformat ascii 1.0\nelemnt vertex 1\nend_header\n", ["line 3", "unknown PLY header entry 'elemnt'"]),
        ("ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n", ["no 'element vertex'"]),
        ("ply\nformat ascii 1.0\nelement vertex 1\n", ["no end_header line"]),
    ],
)  # fmt: skip
def test_ply_errors(tmp_path, text, words):
    p = tmp_path / "bad.ply"
    p.write_bytes(text.encode())
    _raises(lambda: read_points(p), p, *words)


def test_ply_binary_and_face_errors(tmp_path):
    p = tmp_path / "b.ply"
    _write_ply(p, "binary_little_endian")
    data = p.read_bytes()
    head = len(PLY_HEAD.format(fmt="binary_little_endian"))
    p.write_bytes(data[: head + 3 * VERTS.itemsize])
    _raises(lambda: read_points(p), p, "fewer vertex records than declared", "element vertex 5")
    p.write_bytes(data[:-6])
    _raises(lambda: read_points(p, num_points=10), p, "fewer face records than declared")
    assert len(read_points(p)) == 5  # faces are not read when not sampled
    ascii_ = tmp_path / "a.ply"
    _write_ply(ascii_, "ascii")
    lines = ascii_.read_text().splitlines()
    lines[-1] = "3 1 2 9"
    ascii_.write_text("\n".join(lines) + "\n")
    _raises(
        lambda: read_points(ascii_, num_points=10), ascii_, "vertex index 9 out of range [0, 5)"
    )
    lines[-1] = "4 1 2 4"
    ascii_.write_text("\n".join(lines) + "\n")
    _raises(lambda: read_points(ascii_, num_points=10), ascii_, "line 21", "has 4 values")
    no_faces = tmp_path / "nf.ply"
    no_faces.write_text(
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n"
    )
    _raises(lambda: read_points(no_faces, num_points=10), no_faces, "no faces")


# -- OFF and mesh sampling -----------------------------------------------------------------------
CUBE = """OFF
# unit cube
8 6 12
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""


def test_off_cube_sampling_is_on_the_surface_and_uniform(tmp_path):
    p = tmp_path / "cube.off"
    p.write_text(CUBE)
    mesh = read_off(p)
    assert mesh.faces.shape == (12, 3) and mesh.polygons == 6 and mesh.vertices.shape == (8, 3)
    cloud = read_points(p, num_points=6000, generator=torch.Generator().manual_seed(0))
    xyz = cloud.xyz.astype(np.float64)
    assert len(cloud) == 6000 and cloud.meta["format"] == "off (OFF)"
    on_face = (np.abs(xyz) < 1e-6) | (np.abs(xyz - 1) < 1e-6)
    assert on_face.any(axis=1).all() and ((xyz >= -1e-6) & (xyz <= 1 + 1e-6)).all()
    face_of = np.argmax(np.concatenate([np.abs(xyz) < 1e-6, np.abs(xyz - 1) < 1e-6], 1), 1)
    counts = np.bincount(face_of, minlength=6)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 expected on each face
    assert np.allclose(xyz.mean(0), 0.5, atol=0.02)
    # ModelNet's run-on header "OFF8 6 12" reads the same; the generator makes it repeatable
    q = tmp_path / "runon.off"
    q.write_text(CUBE.replace("OFF\n# unit cube\n8 6 12", "OFF8 6 12"))
    a = read_points(q, num_points=100, generator=torch.Generator().manual_seed(1))
    b = read_points(p, num_points=100, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(a.xyz, b.xyz)


def test_mesh_sampling_is_area_weighted_and_uniform_in_a_triangle():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]])
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    g = torch.Generator().manual_seed(0)
    fid, w = surface_samples(v, f, 40000, g)
    assert abs((fid == 1).double().mean().item() - 3 / 3.5) < 0.01
    assert torch.allclose(w.sum(1), torch.ones(40000, dtype=torch.float64)) and (w >= 0).all()
    # uniform: each barycentric weight has mean 1/3 and the share below w0 < 0.5 is 1 - 0.25
    assert torch.allclose(w.mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)
    assert abs((w[:, 0] > 0.5).double().mean().item() - 0.25) < 0.01
    quad = sample_mesh_surface(
        v[:4], torch.tensor([[0, 1, 3, 2]]), 10, torch.Generator().manual_seed(5)
    )
    tri = sample_mesh_surface(
        v[:4],
        torch.tensor(triangulate_fan([np.array([[0, 1, 3, 2]])])),
        10,
        torch.Generator().manual_seed(5),
    )
    assert torch.equal(quad, tri) and quad.dtype == torch.float32
    with pytest.raises(DataError, match="no surface area"):
        sample_mesh_surface(v[:3], torch.tensor([[0, 0, 1]]), 5)
    with pytest.raises(ConfigError, match="num_points"):
        sample_mesh_surface(v[:3], torch.tensor([[0, 1, 2]]), 0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("PLY\n3 1 0\n", ["line 1", "not an OFF file"]),
        ("OFF BINARY\n", ["binary OFF is not supported"]),
        ("OFF\n3\n", ["line 2", "expected the counts"]),
        (
            "OFF\n3 1 0\n0 0 0\n1 0 0\n",
            ["fewer vertices than declared", "3 declared, 2 vertex lines"],
        ),
        (
            "OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
            ["fewer faces than declared", "2 declared, 1 face lines"],
        ),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", ["line 4", "vertex line has 2 values"]),
        ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", ["line 4", "non-finite"]),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", ["line 6", "at least 3 vertices, got 2"]),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", ["line 6", "2 vertex ids for 3 vertices"]),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", ["line 6", "vertex id 3 is not in [0, 3)"]),
        ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", ["line 4", "'x' is not a number"]),
        ("OFF\n3 1.5 0\n", ["line 2", "counts must be integers"]),
    ],
)
def test_off_errors(tmp_path, text, words):
    p = tmp_path / "bad.off"
    p.write_text(text)
    _raises(lambda: read_points(p), p, *words)


def test_off_comments_colours_and_mixed_polygons(tmp_path):
    p = tmp_path / "c.off"
    p.write_text(
        "COFF\n# c\n5 2 0\n0 0 0 255 0 0 255\n2 0 0 1 1 1 1  # trailing\n2 2 0 1 1 1 1\n0 2 0 1 1 1 1\n1 1 5 1 1 1 1\n4 0 1 2 3 9 9 9\n3 0 1 4\n"
    )
    mesh = read_off(p)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]
    assert mesh.vertices[1].tolist() == [2, 0, 0] and mesh.meta["format"] == "off (COFF)"


ASCII_INT = (
    "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
    "property float z\nproperty uchar red\nelement face 1\n"
    "property list uchar int vertex_indices\nend_header\n0 0 0 {a}\n1 0 0 {b}\n{face}\n"
)


@pytest.mark.parametrize(
    ("a", "b", "face", "words"),
    [
        (300, 0, "3 0 1 1", ["line 11", "property 'red' (uint8) got 300", "0..255"]),
        (0, -1, "3 0 1 1", ["line 12", "property 'red' (uint8) got -1"]),
        (0, 2.5, "3 0 1 1", ["line 12", "got 2.5"]),
        (0, 0, "3 0 1.5 1", ["line 13", "list 'vertex_indices' (int32) got 1.5"]),
        (0, 0, "3 0 1 3000000000", ["line 13", "(int32) got 3e+09"]),
    ],
)
def test_ply_ascii_integers_are_range_checked(tmp_path, a, b, face, words):
    p = tmp_path / "i.ply"
    p.write_text(ASCII_INT.format(a=a, b=b, face=face))
    _raises(lambda: read_ply_mesh(p), p, *words)


def test_ply_ascii_integers_in_range_are_kept(tmp_path):
    p = tmp_path / "i.ply"
    p.write_text(ASCII_INT.format(a=255, b=0, face="3 0 1 1"))
    cloud = read_ply(p)
    assert cloud.features[:, 0].tolist() == [255.0, 0.0]


def test_ply_binary_lists_of_mixed_lengths_across_windows(tmp_path, monkeypatch):
    import struct

    from visrep.data.pointcloud.io import ply as ply_module

    rng = np.random.default_rng(5)
    n_faces = 300
    k = rng.choice([3, 4, 5], n_faces)
    head = (
        "ply\nformat binary_big_endian 1.0\nelement vertex 6\nproperty float x\nproperty float y\n"
        "property float z\nelement face {n}\nproperty short tag\nproperty list uchar int "
        "vertex_indices\nproperty uchar flag\nelement extra 1\nproperty int z\nend_header\n"
    )
    verts = rng.random((6, 3)).astype(">f4").tobytes()
    rows = [
        (int(rng.integers(-9, 9)), rng.integers(0, 6, int(m)), int(rng.integers(0, 255))) for m in k
    ]
    body = b"".join(
        struct.pack(">hB", t, len(f)) + f.astype(">i4").tobytes() + struct.pack(">B", g)
        for t, f, g in rows
    )
    p = tmp_path / "mixed.ply"
    p.write_bytes(head.format(n=n_faces).encode() + verts + body + struct.pack(">i", 7))
    monkeypatch.setattr(ply_module._list_rows, "__defaults__", (64,))  # many small windows
    tri = read_ply_mesh(p).faces
    want = triangulate_fan([f[None] for _, f, _ in rows])
    assert np.array_equal(tri, want)
    monkeypatch.undo()
    # 100,000 alternating triangles and quads: one vectorised pass, not one run per length
    n_faces = 100_000
    quad = struct.pack(">hB", 1, 4) + np.arange(4, dtype=">i4").tobytes() + b"\x00"
    tri3 = struct.pack(">hB", 1, 3) + np.arange(3, dtype=">i4").tobytes() + b"\x00"
    p.write_bytes(
        head.format(n=n_faces).encode() + verts + (tri3 + quad) * (n_faces // 2) + b"\0\0\0\7"
    )
    faces = read_ply_mesh(p).faces
    assert len(faces) == 3 * n_faces // 2
