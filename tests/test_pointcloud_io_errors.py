"""Bad point-cloud input gives one error line naming the file, not a traceback: broken and
object-array ``.npz`` archives, short PLY list rows and huge binary list lengths, empty and
mismatched ModelNet arrays, malformed mmdetection3d infos, degenerate meshes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from visrep.data.pointcloud import ModelNetDataModule, read_scene_boxes
from visrep.data.pointcloud.io import NpzArchive, describe_npz, read_points
from visrep.data.pointcloud.segmentation import PointSegmentationDataModule
from visrep.errors import DataError


def _one_line(fn, path: Path, *words: str) -> str:
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_npz_read_errors_are_data_errors(tmp_path: Path, cli) -> None:
    not_zip = tmp_path / "bad.npz"
    not_zip.write_bytes(b"this is not a zip archive at all")
    code, _, err = cli("points", "info", not_zip)
    assert code != 0 and err.count("\n") == 1 and err.startswith("error:") and "bad.npz" in err
    obj = tmp_path / "obj.npz"
    np.savez(obj, points=np.zeros((4, 3)), point_labels=np.array([1, "a", None, 2], dtype=object))
    _one_line(lambda: read_points(obj), obj, "cannot read array 'point_labels'", "allow_pickle")
    np.savez(obj, x_train=np.array([[1], "b"], dtype=object), y_train=np.zeros(2, int))
    _one_line(lambda: describe_npz(obj), obj, "cannot read array 'x_train'")
    code, _, err = cli("points", "info", obj)
    assert code != 0 and err.startswith("error:") and err.count("\n") == 1
    code, _, err = cli("points", "show", obj, "-o", tmp_path / "o.png")
    assert code != 0 and err.startswith("error:") and err.count("\n") == 1
    seg = tmp_path / "seg"
    seg.mkdir()
    np.savez(seg / "a.npz", points=np.zeros((4, 3), "f4"), point_labels=np.zeros(4, int),
             class_names=np.array(["x", None], dtype=object))  # fmt: skip
    with pytest.raises(DataError, match=r"a\.npz: cannot read array 'class_names'"):
        PointSegmentationDataModule(str(seg)).load()
    with NpzArchive(seg / "a.npz") as z:
        assert "points" in z and z["points"].shape == (4, 3)
    # a data set whose labels are fewer than its clouds
    short = tmp_path / "short.npz"
    np.savez(short, x_train=np.zeros((3, 5, 3), "f4"), y_train=np.zeros(2, np.int64))
    _one_line(lambda: read_points(short, index=2), short, "y_train must be integer (3,)")
    _one_line(lambda: describe_npz(short), short, "y_train must be integer (3,)")


def test_modelnet_empty_split_is_a_data_error(tmp_path: Path) -> None:
    p = tmp_path / "m.npz"
    np.savez(p, x_train=np.zeros((4, 8, 3), "f4"), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((0, 8, 3), "f4"), y_test=np.zeros(0, np.int64))  # fmt: skip
    with pytest.raises(DataError, match=r"x_test holds no clouds"):
        ModelNetDataModule(str(p)).setup()


PLY = "ply\nformat {fmt} 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty uchar red\nproperty list {count} int vertex_indices\nend_header\n"


def test_ply_short_list_rows_and_huge_list_lengths(tmp_path: Path) -> None:
    p = tmp_path / "a.ply"
    p.write_text(PLY.format(fmt="ascii", count="uchar") + "0 0 0\n1 0 0\n0 1 0\n7\n")
    _one_line(lambda: read_points(p, num_points=5), p, "line 14", "face line has 1 values")
    b = tmp_path / "b.ply"
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "<f4").tobytes()
    face = (
        np.uint8(7).tobytes() + np.uint32(2**31 + 5).tobytes() + np.arange(3, dtype="<i4").tobytes()
    )
    b.write_bytes(PLY.format(fmt="binary_little_endian", count="uint").encode() + verts + face)
    _one_line(lambda: read_points(b, num_points=5), b, "fewer face records than declared",
              "list of 2147483653 items")  # fmt: skip


def _info(path: Path, item: object, r0: object = None) -> Path:
    eye = np.eye(4).tolist()
    if isinstance(item, dict):
        item.setdefault("lidar_points", {"Tr_velo_to_cam": eye})
        item.setdefault("images", {"R0_rect": eye if r0 is None else r0})
    info = {"metainfo": {"DATASET": "KITTI"}, "data_list": [item]}
    path.write_bytes(pickle.dumps(info, protocol=2))
    return path


@pytest.mark.parametrize(
    ("item", "r0", "words"),
    [
        ([1, 2], None, ["data_list[0] must be a dict, got list"]),
        ({"instances": [{"bbox_3d": [0, 0, 0, 1, 1, 1, 0], "bbox_label_3d": "car"}]}, None,
         ["instance 0: bbox_label_3d must be an integer, got 'car'"]),
        ({"instances": ["box"]}, None, ["instance 0 must be a dict"]),
        ({"instances": [{"bbox_3d": ["a"] * 7}]}, None, ["instance 0: bbox_3d must be 7 finite"]),
        ({}, [["a"] * 4] * 4, ["R0_rect must be a finite 4x4 matrix"]),
        ({}, np.zeros((4, 4)).tolist(), ["singular"]),
    ],
)  # fmt: skip
def test_malformed_infos_name_the_file(tmp_path: Path, item, r0, words) -> None:
    p = _info(tmp_path / "info.pkl", item, r0)
    _one_line(lambda: read_scene_boxes(p), p, *words)


def test_degenerate_mesh_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "flat.off"
    p.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")  # collinear: no area
    _one_line(lambda: read_points(p, num_points=8), p, "no surface area to sample")
