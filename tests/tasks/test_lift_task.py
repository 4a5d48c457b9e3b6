"""LiftTask (visrep.tasks.lift): the paper's stages, what each trains, metrics, graf evaluation."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from visrep.data.base import DataSpec, LoaderConfig
from visrep.data.correspondence import PairConfig, PhotoSource
from visrep.data.correspondence.lift_patches import LiftPatchDataModule
from visrep.data.correspondence.opencv_samples import DEFAULT_OPENCV_SAMPLES
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks import LiftTask
from visrep.trainer.callbacks import MetricsFile, RunArtifacts

SPEC = DataSpec(family="lift", keys=("patches", "angle", "point"), in_chans=1, image_size=(32, 32))
TINY = {"crop_size": 20, "det_kernel": 5, "dim": 16, "ori_width": 4, "desc_width": 4}
HAS_GRAF = (Path(DEFAULT_OPENCV_SAMPLES) / "H1to3p.xml").is_file()


def _batch(n: int = 12) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "patches": torch.rand(n, 4, 1, 32, 32, generator=g),
        "angle": torch.rand(n, generator=g),
    }


class _Trainer:
    def __init__(self, epoch: int, max_epochs: int) -> None:
        self.current_epoch, self.max_epochs = epoch, max_epochs


@pytest.mark.parametrize(
    "stages,epochs,want",
    [(["desc", "ori", "det"], [2, 1, 3], ["desc", "desc", "ori", "det", "det", "det"]),
     (["desc", "ori", "det"], None, ["desc", "desc", "ori", "ori", "det", "det"]),
     (["joint"], None, ["joint"] * 6)],
)  # fmt: skip
def test_stages_follow_the_epochs_and_freeze_the_other_nets(stages, epochs, want, monkeypatch):
    task = LiftTask(**TINY, stages=stages, stage_epochs=epochs)
    task.setup_spec(SPEC)
    got = []
    for e in range(6):
        monkeypatch.setattr(LiftTask, "current_epoch", property(lambda self, e=e: e))
        monkeypatch.setattr(LiftTask, "trainer", property(lambda self, e=e: _Trainer(e, 6)))
        task._trainer = object()
        got.append(task.stage())
        task.on_train_epoch_start()
        trains = {
            n
            for n in ("det", "ori", "desc")
            if next(getattr(task.net, n).parameters()).requires_grad
        }
        assert trains == ({"det", "ori", "desc"} if got[-1] == "joint" else {got[-1]})
    assert got == want


@pytest.mark.parametrize("stage", ["desc", "ori", "det", "joint"])
def test_each_stage_gives_gradients_only_to_its_nets(stage, monkeypatch):
    torch.manual_seed(0)
    task = LiftTask(**TINY, stages=[stage])
    task.setup_spec(SPEC)
    monkeypatch.setattr(LiftTask, "stage", lambda self: stage)
    monkeypatch.setattr(LiftTask, "log", lambda self, *a, **k: None)
    task.on_train_epoch_start()
    loss = task.training_step(_batch(), 0)
    loss.backward()
    trains = {"desc": {"desc"}, "ori": {"ori"}, "det": {"det"}, "joint": {"det", "ori", "desc"}}[
        stage
    ]
    for name in ("det", "ori", "desc"):
        grads = [p.grad for p in getattr(task.net, name).parameters()]
        if name in trains:
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="stages"):
        LiftTask(stages=["detector"])
    with pytest.raises(ConfigError, match="stage_epochs"):
        LiftTask(stages=["desc", "ori"], stage_epochs=[3])
    with pytest.raises(ConfigError, match="crop_size"):
        LiftTask(crop_size=8)


def test_fit_and_test_write_metrics_and_the_graf_table(tmp_path):
    L.seed_everything(0)
    dm = LiftPatchDataModule(
        sources=[PhotoSource(builtin="skimage")], pairs_per_photo=1, pair=PairConfig(image_size=128),
        points_per_pair=8, patch_size=32, loader=LoaderConfig(batch_size=16),
    )  # fmt: skip
    graf = DEFAULT_OPENCV_SAMPLES if HAS_GRAF else None
    task = LiftTask(
        **TINY, stage_epochs=[1, 1, 1], graf_root=graf, eval_keypoints=100, eval_size=160
    )
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=1, limit_val_batches=1, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=run.root,
        callbacks=[MetricsFile(run.root), RunArtifacts(run.root)],
    )  # fmt: skip
    trainer.fit(task, dm)
    trainer.test(task, dm, verbose=False)
    m = run.read_metrics()
    for k in ("loss", "pair_dist", "match_acc", "match_acc_gt", "angle_err_deg", "class_acc"):
        assert k in [key.split("/")[1] for key in m if key.startswith("test/")]
    assert 0 <= m["test/match_acc"] <= 1 and 0 <= m["test/angle_err_deg"] <= 180
    if HAS_GRAF:
        assert 0 <= m["test/repeatability"] <= 1 and 0 < m["test/sift_repeatability"] <= 1
        rows = (run.root / "test_features.csv").read_text().splitlines()
        assert rows[0] == "method,keypoints,repeatability,matching_score"
        assert [r.split(",")[0] for r in rows[1:]] == ["lift", "sift", "orb"]
        assert (run.plots / "test_graf1_features.png").is_file()
