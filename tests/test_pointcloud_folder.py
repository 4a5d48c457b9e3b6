"""PointCloudFolderDataModule on a tiny ModelNet-layout tree written here (OFF, PCD, PLY, npy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.pointcloud.folder import PointCloudFolderDataModule, scan_class_folders
from visrep.data.pointcloud.modelnet import PointAugmentConfig
from visrep.data.samples import LABEL, POINTS
from visrep.errors import ConfigError, DataError

NO_AUG = PointAugmentConfig(scale_low=1.0, scale_high=1.0, translate=0.0, jitter=0.0)


def _box_off(path: Path, sx: float, sy: float, sz: float) -> None:
    v = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]
    ) * [sx, sy, sz]
    faces = ["4 0 3 2 1", "4 4 5 6 7", "4 0 1 5 4", "4 2 3 7 6", "4 1 2 6 5", "4 0 4 7 3"]
    path.write_text(
        "OFF\n8 6 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v) + "\n".join(faces) + "\n"
    )


def _pcd(path: Path, xyz: np.ndarray) -> None:
    head = f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {len(xyz)}\nHEIGHT 1\nPOINTS {len(xyz)}\nDATA binary\n"
    path.write_bytes(head.encode() + xyz.astype("<f4").tobytes())


def _ply(path: Path, xyz: np.ndarray) -> None:
    head = f"ply\nformat ascii 1.0\nelement vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_text(head + "".join(f"{a} {b} {c}\n" for a, b, c in xyz))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two classes: flat boxes ("plate") and tall boxes ("tower"), 6 train and 2 test files each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ModelNet2"
    for name, shape in (("plate", (4, 4, 0.2)), ("tower", (0.5, 0.5, 5))):
        for split, n in (("train", 6), ("test", 2)):
            d = root / name / split
            d.mkdir(parents=True)
            for i in range(n):
                kind = ("off", "pcd", "ply", "npy")[i % 4]
                f = d / f"{name}_{split}_{i}.{kind}"
                if kind == "off":
                    _box_off(f, *shape)
                    continue
                xyz = rng.random((int(rng.integers(40, 120)), 3)) * shape
                {"pcd": _pcd, "ply": _ply, "npy": lambda p, a: np.save(p, a)}[kind](f, xyz)
    (root / "README.txt").write_text("not a class")
    return root


def _module(root: Path, **kw) -> PointCloudFolderDataModule:
    kw.setdefault("augment", NO_AUG)
    dm = PointCloudFolderDataModule(
        str(root),
        loader=LoaderConfig(batch_size=4),
        split=SplitConfig(val_fraction=0.25, seed=0),
        **kw,
    )
    dm.setup()
    return dm


def test_folder_splits_spec_and_samples(tree):
    dm = _module(tree, num_points=64)
    spec = dm.spec()
    assert (
        spec.family == "pointcloud"
        and spec.class_names == ("plate", "tower")
        and spec.point_dim == 3
    )
    assert spec.num_classes == 2 and set(spec.keys) == {POINTS, LABEL}
    assert (
        len(dm.train_set) + len(dm.val_set) == 12 and len(dm.val_set) == 3 and len(dm.test_set) == 4
    )
    labels = [dm.test_set[i][LABEL] for i in range(4)]
    assert sorted(labels) == [0, 0, 1, 1]
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        for i in range(len(ds)):
            p = ds[i][POINTS]
            assert p.shape == (64, 3) and p.dtype == torch.float32
            norms = p.double().norm(dim=1)
            assert norms.max() <= 1 + 1e-5  # centred and scaled to the unit sphere when loaded
    # the classes are told apart by shape: plates are flat in z, towers long in z
    for i in range(4):
        s = dm.test_set[i]
        spread = s[POINTS].std(0)
        assert (spread[2] < spread[0]) == (s[LABEL] == 0)
    batch = next(iter(dm.train_dataloader()))
    assert len(batch[POINTS]) == 4 and batch[LABEL].shape == (4,)


def test_meshes_sampled_once_and_eval_sets_repeatable(tree):
    a, b = _module(tree, num_points=64), _module(tree, num_points=64)
    for i in range(len(a.test_set)):
        assert torch.equal(a.test_set[i][POINTS], b.test_set[i][POINTS])
        assert torch.equal(a.test_set[i][POINTS], a.test_set[i][POINTS])
    # meshes only: 64 surface points each, sampled once when loaded; draws give them unchanged
    for f in tree.rglob("*"):
        if f.is_file() and f.suffix != ".off":
            f.unlink()
    c = _module(tree, num_points=64)
    first = [c.train_set[i][POINTS] for i in range(len(c.train_set))]
    assert all(p.shape == (64, 3) for p in first)
    assert all(torch.equal(p, c.train_set[i][POINTS]) for i, p in enumerate(first))
    assert not torch.equal(first[0], first[1])  # two meshes of a class: two different samplings


def test_keep_all_points_and_errors(tree, tmp_path):
    with pytest.raises(ConfigError, match="num_points must be set to sample the mesh"):
        _module(tree, num_points=None)
    for f in tree.rglob("*.off"):
        f.unlink()
    dm = _module(tree, num_points=None)
    sizes = {len(dm.train_set[i][POINTS]) for i in range(len(dm.train_set))}
    assert len(sizes) > 1  # clouds kept at their own sizes (batched as lists)
    np.save(tree / "plate" / "train" / "wide.npy", np.zeros((50, 4)) + np.arange(50)[:, None])
    with pytest.raises(DataError, match=r"different columns: 3 .*, 4 \(wide\.npy\)"):
        _module(tree, num_points=32)
    with pytest.raises(DataError, match="is not a folder"):
        _module(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no <class>/train folders"):
        _module(tmp_path / "empty")
    with pytest.raises(ConfigError, match="nonfinite"):
        PointCloudFolderDataModule(str(tree), nonfinite="keep")


def test_bad_file_names_the_file(tree):
    bad = tree / "tower" / "train" / "broken.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(DataError, match=r"broken\.off: fewer vertices than declared"):
        _module(tree, num_points=32)


def test_scan_class_folders_order(tree):
    classes, files = scan_class_folders(tree)
    assert classes == ["plate", "tower"] and len(files["train"]) == 12 and len(files["test"]) == 4
    assert [c for _, c in files["train"]] == [0] * 6 + [1] * 6


def test_without_test_folders_the_held_out_test_set_is_evaluated_unaugmented(tree):
    import shutil

    for d in tree.glob("*/test"):
        shutil.rmtree(d)
    aug = PointAugmentConfig(jitter=0.05, translate=0.3)  # every training read is random
    dm = PointCloudFolderDataModule(
        str(tree), num_points=32, augment=aug, split=SplitConfig(val_fraction=0.2, seed=0)
    )
    dm.setup()
    n = len(dm.test_set)
    assert n == 3 and len(dm.train_set) + len(dm.val_set) + n == 12  # ceil(0.2 * 12) held out
    assert sorted(dm.test_set[i][LABEL] for i in range(n)) in ([0, 0, 1], [0, 1, 1])
    for i in range(n):  # no FixedSize draw, no jitter: the same points on every read
        assert torch.equal(dm.test_set[i][POINTS], dm.test_set[i][POINTS])
        assert dm.test_set[i][POINTS].shape == (32, 3)
    assert not torch.equal(dm.train_set[0][POINTS], dm.train_set[0][POINTS])
