"""ModelNet-layout npz data and PointCloudClassificationTask, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.cli import main
from visrep.data.pointcloud import ModelNetDataModule, PointAugmentConfig, normalize_unit_sphere
from visrep.data.samples import LABEL, POINTS
from visrep.errors import ConfigError, DataError

MODELNET = Path(__file__).resolve().parents[2] / "shared" / "data" / "modelnet10"


def _shapes(n: int, points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of clouds a symmetric function tells apart: sphere surfaces and cube
    surfaces, at random scales and offsets (which the unit-sphere normalisation removes)."""
    y = np.arange(n) % 2
    v = rng.normal(size=(n, points, 3))
    sphere = v / np.linalg.norm(v, axis=2, keepdims=True)
    cube = v / np.abs(v).max(axis=2, keepdims=True)
    x = np.where(y[:, None, None] == 0, sphere, cube)
    x = x * rng.uniform(1, 50, (n, 1, 1)) + rng.uniform(-20, 20, (n, 1, 3))
    return x.astype(np.float32), y.astype(np.int64)


def _write(path: Path, n_train: int = 40, n_test: int = 12, points: int = 64) -> Path:
    rng = np.random.default_rng(0)
    x_tr, y_tr = _shapes(n_train, points, rng)
    x_te, y_te = _shapes(n_test, points, rng)
    np.savez(
        path,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        classes=np.array(["sphere", "cube"]),
    )
    return path


def test_datamodule_splits_normalises_and_subsamples(tmp_path: Path) -> None:
    f = _write(tmp_path / "shapes.npz")
    dm = ModelNetDataModule(
        str(tmp_path),
        num_points=32,
        augment=PointAugmentConfig(jitter=0.0, translate=0.0, scale_low=1.0, scale_high=1.0),
    )
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (36, 4, 12)
    spec = dm.spec()
    assert (
        spec.family == "pointcloud"
        and spec.point_dim == 3
        and spec.class_names == ("sphere", "cube")
    )
    s = dm.train_set[0]
    assert s[POINTS].shape == (32, 3) and s[LABEL] in (0, 1)
    t = dm.test_set[0][POINTS]
    assert t.shape == (32, 3) and float(t.norm(dim=1).max()) <= 1.0 + 1e-6
    # the validation clouds are training clouds: stratified, disjoint from what is trained on
    assert sorted(int(dm.val_set[i][LABEL]) for i in range(4)) == [0, 0, 1, 1]
    # all points of a full-size test cloud: centroid 0, farthest point at norm 1
    full = ModelNetDataModule(str(f))
    full.setup()
    p = full.test_set[3][POINTS].double()
    assert p.mean(0).abs().max() < 1e-6 and abs(float(p.norm(dim=1).max()) - 1) < 1e-6


def test_normalize_unit_sphere_keeps_features_and_degenerate_clouds() -> None:
    x = torch.tensor([[[1.0, 1, 1, 7], [1, 1, 1, 8]], [[0, 0, 0, 1], [0, 0, 2, 2]]])
    out = normalize_unit_sphere(x)
    assert torch.equal(out[0, :, :3], torch.zeros(2, 3)) and torch.equal(out[:, :, 3], x[:, :, 3])
    assert out[1, :, 2].tolist() == [-1.0, 1.0]


def test_bad_npz_files_give_one_line_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y = _shapes(6, 8, rng)
    cases = {
        "nokey.npz": dict(x_train=x, y_train=y, x_test=x),
        "shape.npz": dict(x_train=x[:, :, :2], y_train=y, x_test=x, y_test=y),
        "nan.npz": dict(
            x_train=np.where(np.arange(6)[:, None, None] == 4, np.nan, x),
            y_train=y,
            x_test=x,
            y_test=y,
        ),
        "labels.npz": dict(
            x_train=x, y_train=y + 5, x_test=x, y_test=y, classes=np.array(["a", "b"])
        ),
    }
    expect = {
        "nokey.npz": "no array 'y_test'",
        "shape.npz": "D>=3",
        "nan.npz": "first: index 4",
        "labels.npz": "labels must be in 0..1",
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=expect[name]) as e:
            ModelNetDataModule(str(tmp_path / name)).setup()
        assert name in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="cannot read"):
        ModelNetDataModule(str(tmp_path / "broken.npz")).setup()
    with pytest.raises(DataError, match=r"expected one \.npz"):
        ModelNetDataModule(str(tmp_path)).setup()
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(ConfigError, match="exceeds the 8 points"):
        ModelNetDataModule(str(tmp_path / "ok.npz"), num_points=9).setup()


def test_fit_and_test_from_the_cli(tmp_path: Path) -> None:
    f = _write(tmp_path / "shapes.npz", n_train=96, n_test=16)
    run = tmp_path / "run"
    rc = main(
        [
            "fit", "--config", "modelnet10_pointnet", "--data.root", str(f),
            "--run_dir", str(run), "--trainer.max_epochs", "8", "--trainer.precision", "32-true",
            "--data.loader.batch_size", "8", "--data.split.val_fraction", "0.25",
            "--trainer.enable_progress_bar", "false",
        ]
    )  # fmt: skip
    assert rc == 0
    m = json.loads((run / "metrics.json").read_text())
    # spheres against cubes: an easy task once the set function has learnt anything
    assert m["test/acc"] >= 0.8, m
    assert set(m["test/acc_per_class"]) == {"sphere", "cube"}
    assert m["test/acc_mean_class"] == pytest.approx(
        np.mean(list(m["test/acc_per_class"].values()))
    )
    assert (run / "plots" / "test_predictions.png").is_file()
    assert (run / "confusion_matrix.csv").is_file() or any(run.rglob("confusion*"))
    assert (run / "plots" / "tsne.png").is_file() and (
        run / "plots" / "critical_points.png"
    ).is_file()
    assert 1 <= m["test/critical_points_mean"] <= 64  # distinct max-pool winners of 64 points
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/reg" in header  # the feature-transform regulariser is part of the loss
    # visrep embed reads the points of a point-cloud run: the global features of the test clouds
    assert main(["embed", str(run), "--split", "test"]) == 0
    z = np.load(run / "embeddings_test.npz")
    assert z["embeddings"].shape == (16, 1024) and z["labels"].tolist() == [0, 1] * 8


@pytest.mark.skipif(
    not (MODELNET / "modelnet10_1024.npz").is_file(), reason="shared ModelNet10 absent"
)
def test_shared_modelnet10_splits() -> None:
    dm = ModelNetDataModule(str(MODELNET))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3591, 400, 908)
    assert dm.spec().num_classes == 10 and dm.train_set[0][POINTS].shape == (1024, 3)
