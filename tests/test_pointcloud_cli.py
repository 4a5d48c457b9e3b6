"""``visrep points info|show`` (visrep.commands.points) and the point-cloud plots, in-process."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.errors import ShapeError
from visrep.plots.pointcloud import plot_critical_points, plot_point_cloud, plot_point_cloud_grid

MODELNET_NPZ = SHARED_DATA / "modelnet10" / "modelnet10_1024.npz"


def _pcd(path: Path, xyz: np.ndarray, labels: np.ndarray | None = None) -> Path:
    fields, sizes, types = "x y z", "4 4 4", "F F F"
    rec = xyz.astype("<f4")
    if labels is not None:
        fields, sizes, types = fields + " label", sizes + " 4", types + " U"
        rec = np.zeros(len(xyz), dtype=[("xyz", "<f4", (3,)), ("label", "<u4")])
        rec["xyz"], rec["label"] = xyz, labels
    n = len(xyz)
    head = f"VERSION 0.7\nFIELDS {fields}\nSIZE {sizes}\nTYPE {types}\nCOUNT {' '.join(['1'] * len(fields.split()))}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n"
    path.write_bytes(head.encode() + rec.tobytes())
    return path


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    xyz = np.array([[0, 0, 0], [2, 0, 0], [2, 4, 0], [0, 4, 6]], dtype=np.float32)
    return _pcd(tmp_path / "seg.pcd", xyz, np.array([0, 0, 1, 2]))


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_info_cloud(cli, labelled: Path) -> None:
    code, out, _ = cli("points", "info", labelled)
    assert code == 0
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.strip().splitlines())
    assert lines["format"] == "pcd binary" and lines["points"] == "4" and lines["fields"] == "x y z"
    assert lines["bbox min"] == "(0, 0, 0)" and lines["bbox max"] == "(2, 4, 6)"
    assert lines["centroid"] == "(1, 2, 1.5)" and lines["finite"].startswith("yes")
    assert lines["point labels"] == "0: 2, 1: 1, 2: 1"


def test_info_mesh_and_nonfinite(cli, tmp_path: Path) -> None:
    off = tmp_path / "tri.off"
    off.write_text("OFF\n4 2 0\n0 0 0\n3 0 0\n3 4 0\n0 4 0\n4 0 1 2 3\n3 0 1 2\n")
    code, out, _ = cli("points", "info", off)
    assert code == 0 and "faces                2 (3 triangles)" in out
    assert "surface area         18" in out  # the 3 x 4 rectangle (12) and half of it (6)
    nan = _pcd(tmp_path / "nan.pcd", np.array([[0, 0, 0], [np.nan, 1, 1], [1, 1, 1]]))
    code, out, _ = cli("points", "info", nan)
    assert code == 0 and "NO: 1 points with NaN / inf coordinates" in out and "points    3" in out


def test_show_colours(cli, labelled: Path, tmp_path: Path) -> None:
    code, out, _ = cli("points", "show", labelled, "-o", tmp_path / "a.png")
    assert code == 0 and "4 points coloured by label" in out  # labels where present
    w, h = _png(tmp_path / "a.png")
    assert w > 300 and h > 300
    code, out, _ = cli("points", "show", labelled, "-o", tmp_path / "z.png", "--color", "z")
    assert code == 0 and "coloured by z" in out
    scan = tmp_path / "000001.bin"
    np.random.default_rng(0).normal(size=(500, 4)).astype("<f4").tofile(scan)
    code, out, _ = cli("points", "show", scan, "-o", tmp_path / "r.png", "--color", "reflectance")
    assert code == 0 and "500 points coloured by reflectance" in out
    off = tmp_path / "tri.off"
    off.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    code, out, _ = cli("points", "show", off, "-o", tmp_path / "m.png", "--num_points", "300")
    assert code == 0 and "300 points" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["info", "{bad}"], ["error: ", "bad.pcd: line 4: field 'z': unsupported TYPE F with SIZE 2"]),
        (["info", "{missing}"], ["error: ", "missing.pcd: no such file"]),
        (["info", "{folder}"], ["error: ", "is a folder"]),
        (["show", "{good}", "-o", "{out_jpg}"], ["error: -o", "expected a .png file"]),
        (["show", "{good}", "-o", "{out}", "--color", "label"], ["error: --color label", "no per-point labels"]),
        (["show", "{good}", "-o", "{out}", "--color", "intensity"], ["error: --color must be label or one of x, y, z"]),
        (["info", "{good}", "--index", "3"], ["error: --index does not apply to .pcd files"]),
        (["info", "{txt}"], ["error: ", "unknown point-cloud format '.txt'"]),
    ],
)  # fmt: skip
def test_errors_are_one_line(cli, tmp_path: Path, args: list[str], words: list[str]) -> None:
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(
        b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 2\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA binary\n"
    )
    good = _pcd(tmp_path / "good.pcd", np.zeros((3, 3)))
    (tmp_path / "t.txt").write_text("0 0 0\n")
    names = {"bad": bad, "missing": tmp_path / "missing.pcd", "folder": tmp_path, "good": good,
             "out": tmp_path / "o.png", "out_jpg": tmp_path / "o.jpg", "txt": tmp_path / "t.txt"}  # fmt: skip
    code, out, err = cli("points", *[a.format(**names) for a in args])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    assert not (tmp_path / "o.png").exists()


def test_modelnet_npz(cli, tmp_path: Path) -> None:
    if not MODELNET_NPZ.is_file():
        pytest.skip("shared ModelNet10 npz absent")
    code, out, _ = cli("points", "info", MODELNET_NPZ)
    assert code == 0 and "3,991 clouds (3991 x 1024 x 3 float32)" in out and "908 clouds" in out
    assert "classes  10: bathtub bed chair" in out.replace("classes          ", "classes  ")
    assert "test per class   bathtub 50, bed 100" in out
    code, out, _ = cli("points", "info", MODELNET_NPZ, "--index", "0", "--split", "test")
    assert code == 0 and "class     0 (bathtub)" in out and "source    bathtub_0107.pcd" in out
    code, out, _ = cli("points", "show", MODELNET_NPZ, "--index", "5", "-o", tmp_path / "m.png")
    assert code == 0 and "1,024 points coloured by z" in out
    code, _, err = cli("points", "info", MODELNET_NPZ, "--index", "5000")
    assert code == 2 and "index 5000 is out of range for the 3991 clouds of split 'train'" in err


def test_plots(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    clouds = [torch.randn(int(n), 3, generator=g) for n in (50, 80, 120)]
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    path = plot_point_cloud_grid(
        clouds, torch.tensor([0, 0, 1]), probs, ["a", "b"], tmp_path / "g.png"
    )
    w, h = _png(path)
    assert w > 2 * h * 0.8  # one row of three clouds
    # scores of a bf16-autocast test (numpy has no bfloat16)
    _png(
        plot_point_cloud_grid(
            clouds, torch.tensor([0, 0, 1]), probs.bfloat16(), ["a", "b"], tmp_path / "b.png"
        )
    )
    xyz = torch.randn(200, 3, generator=g)
    mask = torch.zeros(200, dtype=torch.bool)
    mask[:30] = True
    _png(
        plot_critical_points(
            [(xyz, mask, "chair"), (xyz, torch.arange(10), "sofa")], tmp_path / "c.png"
        )
    )
    _png(
        plot_point_cloud(
            xyz, tmp_path / "p.png", labels=torch.arange(200) % 3, class_names=["a", "b", "c"]
        )
    )
    with pytest.raises(ShapeError, match=r"labels must be \(200,\)"):
        plot_point_cloud(xyz, tmp_path / "q.png", labels=torch.zeros(5))
    with pytest.raises(ShapeError, match="3 clouds need 3 targets"):
        plot_point_cloud_grid(clouds, torch.tensor([0]), probs, ["a", "b"], tmp_path / "g2.png")
