"""PointSegmentationTask end to end through the CLI, and the per-point loss on packed batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.cli import main
from visrep.data.base import DataSpec
from visrep.data.pointcloud import PointSegmentationDataModule
from visrep.data.samples import META, POINT_LABELS, POINTS
from visrep.errors import ConfigError
from visrep.models.pointcloud import POINT_NETS
from visrep.tasks import PointSegmentationTask
from visrep.tasks.pointcloud_seg import mean_class_accuracy, point_cross_entropy


def plane_and_ball(
    rng: np.random.Generator, n_plane: int, n_ball: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points on the plane z = 0 (label 0) and on a sphere above it (label 1), shuffled."""
    plane = np.c_[rng.uniform(-2, 2, (n_plane, 2)), np.zeros(n_plane)]
    v = rng.normal(size=(n_ball, 3))
    r = rng.uniform(0.4, 0.8)
    ball = v / np.linalg.norm(v, axis=1, keepdims=True) * r + [*rng.uniform(-1, 1, 2), r + 0.3]
    pts = np.r_[plane, ball].astype(np.float32)
    lab = np.r_[np.zeros(n_plane), np.ones(n_ball)].astype(np.int64)
    order = rng.permutation(len(pts))
    return pts[order], lab[order]


def write_scenes(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``root/{train,val,test}/*.npz`` scenes of 70-130 plane and 40-70 sphere points."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        (root / split).mkdir(parents=True)
        for i in range(n):
            pts, lab = plane_and_ball(rng, int(rng.integers(70, 131)), int(rng.integers(40, 71)))
            np.savez(
                root / split / f"s{i}.npz",
                points=pts,
                point_labels=lab,
                class_names=np.array(["ground", "ball"]),
            )
    return root


CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 12
  accelerator: cpu
  devices: 1
  precision: 32-true
  enable_progress_bar: false
  log_every_n_steps: 1
model:
  class_path: visrep.tasks.PointSegmentationTask
  init_args:
    net:
      class_path: pointnet_seg
      init_args: {width: 64, feature_transform: false}
    optim: {optimizer: adam, lr: 0.003, schedule: cosine, weight_decay: 0.0}
data:
  class_path: visrep.data.PointSegmentationDataModule
  init_args:
    loader: {batch_size: 4}
"""


def test_fit_test_predict_from_the_cli(tmp_path: Path) -> None:
    root = write_scenes(tmp_path / "scenes", {"train": 16, "val": 2, "test": 4})
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(CONFIG)
    run = tmp_path / "run"
    args = ["--config", str(cfg), "--data.root", str(root), "--run_dir", str(run)]
    assert main(["fit", *args]) == 0
    m = json.loads((run / "metrics.json").read_text())
    # the sphere stands 0.3 above the plane: every point is separable by its height
    assert m["test/miou"] >= 0.9 and m["test/point_acc"] >= 0.95, m
    assert set(m["test/iou_per_class"]) == {"ground", "ball"}
    assert m["test/miou"] == pytest.approx(
        np.mean(list(m["test/iou_per_class"].values())), abs=1e-6
    )
    cm = np.loadtxt(run / "confusion_matrix.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    n_test = sum(len(np.load(f)["points"]) for f in (root / "test").glob("*.npz"))
    assert cm.sum() == n_test  # every test point scored once
    for plot in ("test_segmentations.png", "class_iou.png", "confusion_matrix.png"):
        assert (run / "plots" / plot).is_file()
    assert "train/reg" not in (run / "metrics.csv").read_text().splitlines()[0]  # no feature T-Net
    # predict writes per-point labels per source file, in the file's point order
    assert (
        main(
            [
                "predict",
                "--ckpt_path",
                str(run / "checkpoints" / "best.ckpt"),
                "--run_dir",
                str(run),
            ]
        )
        == 0
    )
    pred = np.load(run / "predictions" / "s0.npz")
    src = np.load(root / "test" / "s0.npz")
    assert pred["index"].tolist() == list(range(len(src["points"])))
    np.testing.assert_allclose(pred["points"], src["points"], atol=1e-6)
    assert (pred["point_labels"] == src["point_labels"]).mean() >= 0.95
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("file,points,classes,output") and len(rows) == 5


def test_packed_batches_give_the_loss_of_separate_clouds() -> None:
    torch.manual_seed(0)
    net = POINT_NETS.build({"class_path": "pointnet_seg", "init_args": {"width": 32}}, 4, 3).eval()
    clouds = [torch.randn(n, 4) for n in (5, 9, 2)]
    labels = [torch.randint(0, 3, (n,)) for n in (5, 9, 2)]
    labels[1][:3] = 255  # ignored points count in neither
    w = torch.tensor([0.5, 1.0, 2.0])
    with torch.no_grad():
        packed = point_cross_entropy(net(clouds), labels, w, 255)
        num = den = 0.0
        for x, y in zip(clouds, labels, strict=True):  # the weighted mean, cloud by cloud
            keep = y != 255
            ce = torch.nn.functional.cross_entropy(net([x])[0][keep], y[keep], reduction="none")
            num, den = num + float((w[y[keep]] * ce).sum()), den + float(w[y[keep]].sum())
        same = [torch.randn(6, 4) for _ in range(3)]
        stacked = point_cross_entropy(net(same), [labels[0][:5].repeat(2)[:6]] * 3, w, 255)
        one_by_one = [
            point_cross_entropy(net([x]), [labels[0][:5].repeat(2)[:6]], w, 255) for x in same
        ]
    assert float(packed) == pytest.approx(num / den, rel=1e-5)
    assert float(stacked) == pytest.approx(float(torch.stack(one_by_one).mean()), rel=1e-5)
    every = point_cross_entropy(
        torch.randn(4, 3, requires_grad=True), [torch.full((4,), 255)], None, 255
    )
    assert float(every.detach()) == 0.0 and every.requires_grad  # all ignored: 0, not NaN


def test_task_refuses_a_per_cloud_net_and_other_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="per-point outputs"):
        PointSegmentationTask(net={"class_path": "pointnet"})
    root = write_scenes(tmp_path / "s", {"train": 2, "test": 1})
    dm = PointSegmentationDataModule(str(root))
    dm.setup()
    spec = dm.spec()
    assert spec.family == "pointcloud_segmentation" and spec.class_names == ("ground", "ball")
    assert dm.val_set is not None and len(dm.train_set) == 1  # one of two training files held out
    s = dm.test_set[0]
    assert s[POINTS].shape[1] == 3 and s[POINT_LABELS].shape == s[POINTS].shape[:1]
    assert s[META]["index"].tolist() == list(range(len(s[POINTS])))


def test_mean_class_accuracy_skips_classes_only_predicted(monkeypatch) -> None:
    task = PointSegmentationTask(net={"class_path": "pointnet_seg", "init_args": {"width": 8}})
    spec = DataSpec(family="pointcloud_segmentation", keys=(POINTS, POINT_LABELS), num_classes=3,
                    class_names=("a", "b", "c"), ignore_index=255, point_dim=3)  # fmt: skip
    task.setup_spec(spec)
    truth, pred = torch.tensor([0, 0, 0, 1, 1, 255]), torch.tensor([0, 0, 2, 1, 1, 2])
    task.val_iou.update(pred, truth)
    task.val_acc.update(pred, truth)
    logged: dict[str, float] = {}
    monkeypatch.setattr(task, "log", lambda k, v, **kw: logged.__setitem__(k, float(v)))
    task._log_epoch("val")
    # recall of class 0: 2/3, of class 1: 1; class 2 is never true (only predicted): not averaged
    assert logged["val/mean_class_acc"] == pytest.approx((2 / 3 + 1) / 2)
    assert logged["val/point_acc"] == pytest.approx(4 / 5)  # the ignored point counts nowhere
    cm = torch.tensor([[5, 1, 0], [0, 0, 0], [2, 0, 2]])
    assert float(mean_class_accuracy(cm)) == pytest.approx((5 / 6 + 2 / 4) / 2)
    assert float(mean_class_accuracy(torch.zeros(3, 3))) == 0.0


def test_prediction_files_of_one_name_in_two_folders_do_not_overwrite(tmp_path: Path) -> None:
    task = PointSegmentationTask(net={"class_path": "pointnet_seg", "init_args": {"width": 8}})
    task.setup_spec(DataSpec(family="pointcloud_segmentation", keys=(POINTS, POINT_LABELS),
                             num_classes=2, class_names=("a", "b"), point_dim=3))  # fmt: skip

    class Run:
        root = tmp_path

        @staticmethod
        def write_bytes(path: Path, data: bytes) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    files = [str(tmp_path / "d" / s / "000001.bin") for s in ("train", "test")]
    out = {
        "file": files,
        "index": [torch.tensor([1, 0]), torch.tensor([0, 1, 2])],
        "point_labels": [torch.tensor([0, 1]), torch.tensor([1, 1, 0])],
        "xyz": [torch.zeros(2, 3), torch.zeros(3, 3)],
    }
    rows = task.write_prediction_files(Run, [out], ["x", "y"])  # type: ignore[arg-type]
    assert rows == ["predictions/train/000001.npz", "predictions/test/000001.npz"]
    train, test = (np.load(tmp_path / r) for r in rows)
    assert train["point_labels"].tolist() == [1, 0] and test["point_labels"].tolist() == [1, 1, 0]
