"""StereoDepthTask: metrics, training without labels, artifacts, baselines, bad options."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import SHARED_DATA
from tests.data.test_stereo_data import write_synthetic_pairs
from visrep.data.base import LoaderConfig
from visrep.data.stereo import StereoAugment, StereoDataModule
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks import StereoDepthTask
from visrep.tasks.depth import disparity_errors
from visrep.trainer.callbacks import MetricsFile, RunArtifacts

STEREO = SHARED_DATA / "stereo"


def test_disparity_errors_analytic():
    inf = float("inf")
    pred = torch.tensor([[1.0, 4.0, 7.0], [0.0, 0.0, 3.5]])
    gt = torch.tensor([[1.0, 1.0, inf], [0.5, inf, 1.0]])
    epe, bad, n = disparity_errors(pred, gt)
    assert n == 4 and float(epe) == pytest.approx((0 + 3 + 0.5 + 2.5) / 4)
    assert float(bad) == pytest.approx(2 / 4)  # 3 and 2.5 exceed 2 px
    epe, bad, n = disparity_errors(pred, torch.full_like(gt, inf))
    assert n == 0 and torch.isnan(epe) and torch.isnan(bad)


def _fit(tmp_path: Path, steps: int, **task_options) -> tuple[StereoDepthTask, RunDir, dict]:
    L.seed_everything(0)
    root = write_synthetic_pairs(tmp_path / "pairs", n=3, size=(24, 48))
    dm = StereoDataModule(str(root), size=(24, 48), augment=StereoAugment(crop=(24, 40)),
                          crops_per_pair=4, train_on_eval=True,
                          loader=LoaderConfig(batch_size=4))  # fmt: skip
    task = StereoDepthTask(encoder_channels=(8, 16, 16, 16), decoder_channels=(16, 16, 8, 8),
                           optim={"optimizer": "adam", "lr": 3e-3, "schedule": "none"},
                           **task_options)  # fmt: skip
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(max_steps=steps, max_epochs=1000, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=1000, default_root_dir=run.root,
                        callbacks=[MetricsFile(run.root), RunArtifacts(run.root)])  # fmt: skip
    trainer.fit(task, dm)
    trainer.test(task, dm, verbose=False)
    return task, run, run.read_metrics()


def test_training_without_labels_learns_the_disparity(tmp_path: Path):
    """Three pairs at constant 1, 2, 3 px: a zero prediction's EPE is 2 px; after 150
    self-supervised steps the network's is well below it. The textures' blobs are ~4 px wide,
    so the photometric loss only guides within a few pixels of the truth: the disparity range
    (0.1 of the 48-px width, starting at 2.4 px) keeps the start inside that basin."""
    _, run, m = _fit(tmp_path, 150, baselines=(), max_disparity=0.1)
    assert m["test/epe"] < 1.0, m
    assert m["test/bad2"] < 0.2
    assert (run.plots / "test_disparities.png").is_file()
    per_pair = m["test/per_pair"]
    assert set(per_pair) == {"p0", "p1", "p2"} and "epe" in per_pair["p0"]


def test_baselines_are_scored_beside_the_network(tmp_path: Path):
    _, _, m = _fit(tmp_path, 1)
    for b in ("stereo_bm", "stereo_sgbm"):
        assert {f"test/epe_{b}", f"test/bad2_{b}", f"test/density_{b}"} <= set(m)
        assert 0 <= m[f"test/density_{b}"] <= 1


def test_bad_options():
    with pytest.raises(ConfigError, match="baselines"):
        StereoDepthTask(baselines=("census",))
    with pytest.raises(ConfigError, match="alpha"):
        StereoDepthTask(alpha=2.0)
    with pytest.raises(ConfigError, match="bad_threshold"):
        StereoDepthTask(bad_threshold=0)


def test_wrong_family_is_refused():
    from visrep.data.base import DataSpec

    with pytest.raises(ConfigError, match="trains on stereo data"):
        StereoDepthTask().setup_spec(DataSpec(family="classification", in_chans=3,
                                              image_size=(8, 8)))  # fmt: skip


@pytest.mark.skipif(not STEREO.is_dir(), reason="shared stereo data absent")
def test_classical_baselines_on_the_middlebury_pairs_at_full_resolution():
    """StereoSGBM on Motorcycle and Aloe at the files' resolution: prints EPE / bad-2px."""
    from visrep.data.stereo import read_disparity, read_view, scan_stereo
    from visrep.models.depth import MatcherConfig, classical_disparity

    pairs = scan_stereo(STEREO / "skimage-middlebury2014-motorcycle") + scan_stereo(
        STEREO / "opencv-samples"
    )
    for p in pairs:
        left, right = read_view(p.left)[None], read_view(p.right)[None]
        gt = read_disparity(p.disparity)
        for method in ("stereo_bm", "stereo_sgbm"):
            cfg = MatcherConfig(num_disparities=int(gt[torch.isfinite(gt)].max()) + 16)
            d, valid = classical_disparity(left, right, method, cfg)
            epe, bad, _ = disparity_errors(d[0], gt)
            print(p.name, method, f"epe {float(epe):.4f} bad2 {float(bad):.4f} "
                  f"density {float(valid.float().mean()):.4f}")  # fmt: skip
            if method == "stereo_sgbm":
                assert float(bad) < 0.35
