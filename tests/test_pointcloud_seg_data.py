"""Per-point labelled data: points in rotated boxes, the restricted info unpickler, PointNet's
block grid, region splits, label files and their errors, and the label-boxes / seg-baseline
commands on the shared KITTI and nuScenes scans."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from visrep.data.base import SplitConfig
from visrep.data.pointcloud import (
    BlockConfig,
    PointSegmentationDataModule,
    RegionSplit,
    chunk_indices,
    grid_blocks,
    label_points_in_boxes,
    points_in_boxes,
    read_info_pickle,
    read_labelled_cloud,
    read_points,
    read_scene_boxes,
)
from visrep.data.samples import META, POINT_LABELS, POINTS
from visrep.errors import ConfigError, DataError

DEMO = SHARED_DATA / "pointclouds" / "mmdetection3d" / "demo" / "data"
KITTI_SCAN, KITTI_INFO = DEMO / "kitti" / "000008.bin", DEMO / "kitti" / "000008.pkl"
NUSC_INFO = DEMO / "nuscenes" / "n015-2018-07-24-11-22-45+0800.pkl"
NUSC_SCAN = DEMO / "nuscenes" / "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
needs_demo = pytest.mark.skipif(not KITTI_INFO.is_file(), reason="shared point-cloud demo absent")


# -- points in rotated boxes ---------------------------------------------------------------------
def _inside_brute_force(p: np.ndarray, box: np.ndarray) -> bool:
    """Inside the convex hull of the box's 8 corners: on the inner side of all 6 faces."""
    x, y, z, dx, dy, dz, yaw = box
    c, s = np.cos(yaw), np.sin(yaw)
    corners = []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for sz in (0.0, 1.0):
                u, v = sx * dx, sy * dy
                corners.append([x + c * u - s * v, y + s * u + c * v, z + sz * dz])
    corners = np.array(corners)
    centre = corners.mean(0)
    # faces: index sets of corners sharing one local coordinate
    faces = [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 4, 5], [2, 3, 6, 7], [0, 2, 4, 6], [1, 3, 5, 7]]
    for f in faces:
        a, b, d = corners[f[0]], corners[f[1]], corners[f[2]]
        n = np.cross(b - a, d - a)
        if np.dot(n, centre - a) < 0:
            n = -n
        if np.dot(n, p - a) <= 0:
            return False
    return True


def test_points_in_boxes_against_a_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    boxes = np.c_[
        rng.uniform(-3, 3, (7, 2)), rng.uniform(-1, 0, 7), rng.uniform(0.5, 4, (7, 3)),
        rng.uniform(-np.pi, np.pi, 7),
    ]  # fmt: skip
    pts = rng.uniform(-5, 5, (1500, 3))
    got = points_in_boxes(pts, boxes, chunk=256)  # several chunks
    want = np.array([[_inside_brute_force(p, b) for b in boxes] for p in pts])
    assert got.shape == (1500, 7) and got.sum() > 100
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(points_in_boxes(pts, boxes), want)  # chunk sized from B


def test_points_in_boxes_memory_is_bounded_by_max_bytes() -> None:
    import tracemalloc

    rng = np.random.default_rng(1)
    boxes = np.c_[rng.uniform(-3, 3, (100, 3)), rng.uniform(0.5, 2, (100, 3)), np.zeros(100)]
    pts = rng.uniform(-5, 5, (40_000, 3))
    budget = 1 << 22
    tracemalloc.start()
    try:
        out = points_in_boxes(pts, boxes, max_bytes=budget)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the (N, B) answer, the float64 points and about one step (a fixed 65,536-point chunk
    # took 40 x 65,536 x 100 bytes = 262 MB here)
    assert peak < out.nbytes + pts.nbytes + 2 * budget, peak


def test_label_points_takes_the_first_box_and_ignores_unkept_classes() -> None:
    from visrep.data.pointcloud import SceneBoxes

    boxes = np.array([[0, 0, 0, 2, 2, 2, 0], [1, 0, 0, 2, 2, 2, 0], [5, 5, 0, 1, 1, 1, 0.3]])
    scene = SceneBoxes(boxes, np.array([2, 0, 1]), ("Pedestrian", "Cyclist", "Car"),
                       np.full(3, -1), "kitti", "")  # fmt: skip
    pts = np.array([[0.5, 0, 1], [1.5, 0, 1], [5, 5, 0.5], [9, 9, 9]])
    r = label_points_in_boxes(pts, scene, ["car", "pedestrian"])
    assert r.class_names == ("background", "car", "pedestrian")
    assert r.labels.tolist() == [1, 2, 255, 0]  # point 0 is in boxes 0 and 1: the first wins
    assert r.box_points.tolist() == [1, 2, 1] and r.box_labels.tolist() == [1, 2, 255]
    assert label_points_in_boxes(pts, scene, mode="object").labels.tolist() == [1, 1, 1, 0]
    with pytest.raises(ConfigError, match="are not kitti classes"):
        label_points_in_boxes(pts, scene, ["truck_x"])


# -- the restricted unpickler --------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_info_unpickler_refuses_os_system_without_running_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"data_list": [_Evil()]}, protocol=2))
    with pytest.raises(DataError) as e:
        read_info_pickle(bad)
    msg = str(e.value)
    assert "evil.pkl" in msg and re.search(r"(posix|os)\.system", msg) and "\n" not in msg
    assert not (tmp_path / "pwned_by_pickle").exists()  # nothing ran
    good = tmp_path / "good.pkl"
    data = {"a": np.float64(1.5), "b": np.arange(6, dtype=np.int32).reshape(2, 3), "c": [np.True_]}
    good.write_bytes(pickle.dumps(data, protocol=2))
    back = read_info_pickle(good)
    assert back["a"] == 1.5 and back["b"].tolist() == [[0, 1, 2], [3, 4, 5]] and back["c"] == [True]
    (tmp_path / "broken.pkl").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(DataError, match=r"broken\.pkl: not a readable info pickle"):
        read_info_pickle(tmp_path / "broken.pkl")


# -- blocks --------------------------------------------------------------------------------------
def test_blocks_partition_the_points_when_stride_is_the_size() -> None:
    rng = np.random.default_rng(1)
    xy = np.r_[rng.uniform(0, 7.3, (3000, 2)), [[0, 0], [7.3, 7.3], [2.0, 3.0], [7.3, 0.0]]]
    idx, origins = grid_blocks(xy, 1.0, 1.0)
    allidx = np.concatenate(idx)
    assert np.array_equal(np.sort(allidx), np.arange(len(xy)))  # every point exactly once
    for i, o in zip(idx, origins, strict=True):
        assert (xy[i] >= o - 1e-12).all() and (xy[i] <= o + 1.0 + 1e-12).all()
    # exactly 8 x 8 blocks cover 7.3 m: the last one keeps its upper edge
    assert len(idx) == 64 and origins.max() == 7.0 - 0.0 and np.isclose(origins.max(), 7.0)


def test_overlapping_blocks_match_a_brute_force_window_test() -> None:
    rng = np.random.default_rng(2)
    xy = rng.uniform(-2, 3, (800, 2))
    size, stride = 1.5, 0.5
    idx, origins = grid_blocks(xy, size, stride, min_points=5)
    lo = xy.min(0)
    nx, ny = (np.ceil((xy.max(0) - lo - size) / stride).astype(int) + 1).tolist()
    want = {}
    for a in range(nx):
        for b in range(ny):
            o = lo + np.array([a, b]) * stride
            hi_ok = [(xy[:, k] < o[k] + size) | ((m == n - 1) & (xy[:, k] <= o[k] + size))
                     for k, m, n in ((0, a, nx), (1, b, ny))]  # fmt: skip
            m = (xy[:, 0] >= o[0]) & (xy[:, 1] >= o[1]) & hi_ok[0] & hi_ok[1]
            if m.sum() >= 5:
                want[(a, b)] = np.flatnonzero(m)
    assert len(idx) == len(want)
    for i, o in zip(idx, origins, strict=True):
        key = tuple(np.round((o - lo) / stride).astype(int).tolist())
        assert np.array_equal(i, want[key])
    assert len(np.unique(np.concatenate(idx))) == len(xy)  # every point in some block


def test_chunks_split_a_block_into_parts() -> None:
    parts = chunk_indices(1003, 250, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [201, 201, 201, 200, 200]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1003))


# -- the data module -----------------------------------------------------------------------------
def _scene(path: Path, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(-20, 20, (n, 2)), rng.uniform(-2, 1, n)].astype(np.float32)
    lab = (xyz[:, 2] > 0).astype(np.int64)
    np.savez(path, points=np.c_[xyz, rng.uniform(0, 1, n)].astype(np.float32), point_labels=lab,
             feature_names=np.array(["intensity"]), class_names=np.array(["ground", "thing"]))  # fmt: skip
    return xyz, lab


def test_region_blocks_score_every_held_out_point_once(tmp_path: Path) -> None:
    xyz, lab = _scene(tmp_path / "scan.npz")
    region = RegionSplit("x", test=(10.0, 30.0), val=(-30.0, -12.0))
    dm = PointSegmentationDataModule(
        str(tmp_path / "scan.npz"), blocks=BlockConfig(4.0, 2.0, 64, 10, eval_points=50),
        region=region,
    )  # fmt: skip
    dm.setup()
    spec = dm.spec()
    assert spec.point_dim == 4 and spec.class_names == ("ground", "thing")
    masks = region.masks(xyz)
    for split, ds in (("test", dm.test_set), ("val", dm.val_set)):
        seen = np.concatenate([ds[i][META]["index"].numpy() for i in range(len(ds))])
        assert np.array_equal(np.sort(seen), np.flatnonzero(masks[split]))  # once each
        assert max(len(ds[i][POINTS]) for i in range(len(ds))) <= 50
    s = dm.test_set[0]
    offset = s[META]["offset"]
    np.testing.assert_allclose(
        (s[POINTS][:, :3] + offset).numpy(), xyz[s[META]["index"]], atol=1e-5
    )
    assert (s[POINT_LABELS].numpy() == lab[s[META]["index"]]).all()
    t = dm.train_set[0]
    assert t[POINTS].shape == (64, 4) and set(t[META]["index"].tolist()) <= set(
        np.flatnonzero(masks["train"])
    )
    assert abs(float(t[POINTS][:, :2].mean())) < 4  # centred on its block


def test_semantic_kitti_label_files_and_label_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scans = tmp_path / "seq" / "velodyne"
    scans.mkdir(parents=True)
    (tmp_path / "seq" / "labels").mkdir()
    pts = rng.normal(size=(50, 4)).astype("<f4")
    pts.tofile(scans / "000000.bin")
    raw = rng.choice([10, 40, 252], 50).astype("<u4") | (rng.integers(0, 9, 50).astype("<u4") << 16)
    raw.tofile(tmp_path / "seq" / "labels" / "000000.label")
    p, names, labels = read_labelled_cloud(scans / "000000.bin")
    assert p.shape == (50, 4) and names == ("reflectance",)
    assert np.array_equal(labels, raw & 0xFFFF)  # the instance id in the upper bits is dropped
    dm = PointSegmentationDataModule(str(scans), label_map={10: 0, 40: 1}, class_names=["car", "road"],
                                     region=RegionSplit("x", test=(0.0, 9.0)),
                                     split=SplitConfig(val_fraction=0.0))  # fmt: skip
    dm.setup()
    got = torch.cat([dm.test_set[i][POINT_LABELS] for i in range(len(dm.test_set))]).numpy()
    keep = pts[:, 0] >= 0
    want = np.select([(raw & 0xFFFF) == 10, (raw & 0xFFFF) == 40], [0, 1], 255)[keep]
    assert np.array_equal(np.sort(got), np.sort(want))  # 252 (moving car) unmapped -> ignored


def test_bad_labels_give_one_line_errors(tmp_path: Path) -> None:
    pts = np.zeros((10, 4), "<f4")
    pts.tofile(tmp_path / "a.bin")
    np.arange(9, dtype="<u4").tofile(tmp_path / "a.label")
    with pytest.raises(DataError) as e:
        read_labelled_cloud(tmp_path / "a.bin")
    assert "a.label: 9 labels for the 10 points of a.bin" in str(e.value) and "\n" not in str(
        e.value
    )
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "b" / "s.npz", points=np.zeros((5, 3), np.float32), point_labels=np.array([0, 1, 5, 1, 0]),
             class_names=np.array(["x", "y"]))  # fmt: skip
    with pytest.raises(DataError) as e:
        PointSegmentationDataModule(
            str(tmp_path / "b"), region=RegionSplit("x", test=(-1.0, 1.0))
        ).setup()
    assert re.search(
        r"s\.npz: label 5 out of range 0\.\.1 \(1 points", str(e.value)
    ) and "\n" not in str(e.value)
    np.save(tmp_path / "c.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match=r"c\.npy: no per-point labels"):
        read_labelled_cloud(tmp_path / "c.npy")
    with pytest.raises(ConfigError, match="too few to split by file"):
        PointSegmentationDataModule(
            str(tmp_path / "b" / "s.npz"), class_names=["x", "y", "z", "w", "v", "u"]
        ).setup()
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"data\.region applies to a root without"):
        PointSegmentationDataModule(
            str(tmp_path / "d"), region=RegionSplit(test=(0.0, 1.0))
        ).setup()
    with pytest.raises(ConfigError, match=r"data.region.test must be \[low, high\)"):
        RegionSplit(test=(3.0, 1.0))
    with pytest.raises(ConfigError, match=r"data\.blocks"):
        BlockConfig(size=1.0, stride=2.0)


# -- the shared KITTI / nuScenes scans ------------------------------------------------------------
@needs_demo
def test_kitti_box_counts_equal_the_infos_num_lidar_pts() -> None:
    scene = read_scene_boxes(KITTI_INFO)
    cloud = read_points(KITTI_SCAN)
    r = label_points_in_boxes(cloud.xyz, scene, ["Car", "Pedestrian", "Cyclist"])
    assert scene.dataset == "kitti" and len(scene.boxes) == 6  # 4 DontCare regions left out
    assert r.box_points.tolist() == scene.num_lidar_pts.tolist() == [1325, 1900, 881, 659, 55, 162]
    assert np.bincount(r.labels).tolist() == [12256, 4982]


@needs_demo
def test_nuscenes_boxes_are_gravity_centred() -> None:
    scene = read_scene_boxes(NUSC_INFO)
    r = label_points_in_boxes(read_points(NUSC_SCAN).xyz, scene)
    assert scene.dataset == "nuscenes" and len(scene.boxes) == 69 and scene.class_names[0] == "car"
    # the dataset's counts come from its own devkit on the annotation's box; bottom-centred
    # boxes match 61 of 69 exactly (994 points against 1009), gravity centres as bottoms 14
    assert int((r.box_points == scene.num_lidar_pts).sum()) == 61
    assert (r.box_points.sum(), scene.num_lidar_pts.sum()) == (994, 1009)


@needs_demo
def test_label_boxes_and_seg_baseline_commands(cli, tmp_path: Path) -> None:
    out = tmp_path / "k.npz"
    code, text, _ = cli("points", "label-boxes", KITTI_SCAN, KITTI_INFO, "-o", out)
    assert code == 0 and "box 4 (Car -> car): 55 points (info num_lidar_pts 55)" in text
    z = np.load(out)
    assert z["points"].shape == (17238, 4) and z["class_names"].tolist()[:2] == [
        "background",
        "car",
    ]
    code, text, _ = cli("points", "seg-baseline", out, "--test", "[-45,-20]", "--val", "[25,45]")
    assert code == 0
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.strip().splitlines())
    assert lines["test points"] == "4,018 (1,043 object)"
    assert lines["all background"].startswith(
        "background IoU 0.7404, object IoU 0.0000, mIoU 0.3702"
    )
    code, _, err = cli("points", "label-boxes", KITTI_SCAN, tmp_path / "nope.pkl", "-o", out)
    assert code == 2 and "nope.pkl: no such info file" in err


def test_labels_from_a_pcd_field_and_an_npy_column(tmp_path: Path) -> None:
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    rec = np.zeros(3, dtype=[("xyz", "<f4", (3,)), ("label", "<u4")])
    rec["xyz"], rec["label"] = xyz, [2, 0, 1]
    head = (
        "VERSION 0.7\nFIELDS x y z label\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\nWIDTH 3\n"
        "HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary\n"
    )
    (tmp_path / "a.pcd").write_bytes(head.encode() + rec.tobytes())
    p, names, labels = read_labelled_cloud(tmp_path / "a.pcd")
    assert p.shape == (3, 3) and names == () and labels.tolist() == [2, 0, 1]
    np.save(tmp_path / "b.npy", np.c_[xyz, [7, 7, 7], [1, 0, 1]].astype(np.float32))
    p, names, labels = read_labelled_cloud(
        tmp_path / "b.npy", columns=["x", "y", "z", "i", "label"]
    )
    assert p.shape == (3, 4) and names == ("i",) and labels.tolist() == [1, 0, 1]
    np.save(tmp_path / "c.npy", np.c_[xyz, [0.5, 0, 1]].astype(np.float32))
    with pytest.raises(DataError, match="labels must be integers"):
        read_labelled_cloud(tmp_path / "c.npy", columns=["x", "y", "z", "label"])


def test_validation_is_never_carved_from_the_training_blocks(tmp_path: Path) -> None:
    xyz, _ = _scene(tmp_path / "scan.npz")
    blocks = BlockConfig(4.0, 2.0, 64, 10)
    with pytest.raises(
        ConfigError, match=r"data\.region has no val interval: set data\.region\.val"
    ):
        PointSegmentationDataModule(
            str(tmp_path / "scan.npz"), blocks=blocks, region=RegionSplit("x", test=(10.0, 30.0))
        ).setup()
    (tmp_path / "f" / "train").mkdir(parents=True)
    (tmp_path / "f" / "test").mkdir()
    for s in ("train", "test"):
        os.link(tmp_path / "scan.npz", tmp_path / "f" / s / "scan.npz")
    with pytest.raises(ConfigError, match=r"no val/ folder and 1 training file\(s\)"):
        PointSegmentationDataModule(str(tmp_path / "f"), blocks=blocks).setup()
    # without validation: the class weights are those of every training block, nothing held out
    dm = PointSegmentationDataModule(str(tmp_path / "f"), blocks=blocks,
                                     split=SplitConfig(val_fraction=0.0))  # fmt: skip
    dm.setup()
    assert dm.val_set is None and len(dm.train_set) == len(dm.load().train)
    # two training files and no val/: one whole file is validated, every point once, unaugmented
    os.link(tmp_path / "scan.npz", tmp_path / "f" / "train" / "scan2.npz")
    dm = PointSegmentationDataModule(str(tmp_path / "f"), blocks=blocks)
    dm.setup()
    seen = np.concatenate([dm.val_set[i][META]["index"].numpy() for i in range(len(dm.val_set))])
    assert np.array_equal(np.sort(seen), np.arange(len(xyz)))
    files = {dm.train_set[i][META]["file"] for i in range(len(dm.train_set))}
    assert len(files) == 1 and files != {dm.val_set[0][META]["file"]}
