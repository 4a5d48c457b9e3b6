"""CorrespondenceTask: a tiny fit through the CLI with the shipped config, the Task contract,
the essential-matrix evaluation against known poses, and bad input."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import numpy as np
import pytest
import torch

from tests.test_correspondence_geometry import two_views
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.correspondence import (
    ESSENTIAL,
    INLIERS,
    INTRINSICS,
    MATCHES,
    POSE,
    HomographyPairsDataModule,
    MatchPair,
    MatchPairDataset,
    PairConfig,
    PhotoSource,
    SiftConfig,
    collate_matches,
)
from visrep.errors import ConfigError, ShapeError
from visrep.losses.correspondence import estimate_geometry
from visrep.models.correspondence.geometry import essential_from_pose
from visrep.tasks import CorrespondenceTask

pytest.importorskip("cv2")

TINY = [
    "--data.sources", '[{"builtin": "skimage"}]', "--data.pairs_per_photo", "1",
    "--data.pair.image_size", "160", "--data.sift.max_keypoints", "200",
    "--data.opencv_samples", "null", "--data.loader.batch_size", "4",
    "--model.depth", "1", "--model.width", "8", "--model.geometry_after_steps", "1",
    "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
]  # fmt: skip


def test_a_tiny_fit_of_the_shipped_config_writes_test_metrics(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("fit", "--config", "correspondences_homography", "--run_dir", run,
                       "--data.cache_dir", tmp_path / "cache", *TINY)  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for method in ("learned_dlt", "learned_ransac", "ransac"):
        assert 0 <= metrics[f"test/{method}_acc@5px"] <= 1
        assert f"test/{method}_ms_per_pair" in metrics
    for method in ("learned", "learned_ransac", "ransac"):
        assert 0 <= metrics[f"test/{method}_f1"] <= 1
    # RANSAC on SIFT matches of a known homography finds it on most pairs
    assert metrics["test/ransac_acc@5px"] > 0.5 and metrics["test/ransac_f1"] > 0.8
    assert {"val/f1", "val/loss", "val/geometry_loss"} <= set(metrics)
    rows = list(csv.DictReader((run / "test_pairs.csv").open()))
    assert len(rows) == metrics["test/pairs"] and rows[0]["name"].startswith("skimage:")
    assert (run / "plots" / "test_matches.png").is_file()
    ransac_f1 = np.mean([float(r["ransac_f1"]) for r in rows])
    assert abs(ransac_f1 - metrics["test/ransac_f1"]) < 1e-5


def test_the_task_fulfils_the_task_contract(monkeypatch, tmp_path):
    from tests.tasks import test_contract

    cache = str(tmp_path / "cache")
    monkeypatch.setitem(
        test_contract.DATA,
        CorrespondenceTask,
        lambda: (
            CorrespondenceTask(depth=1, width=8, geometry_after_steps=0),
            HomographyPairsDataModule(
                sources=[PhotoSource(builtin="skimage")], pairs_per_photo=1,
                pair=PairConfig(image_size=128), sift=SiftConfig(max_keypoints=150),
                cache_dir=cache, loader=LoaderConfig(batch_size=4),
            ),
        ),
    )  # fmt: skip
    test_contract.test_task_contract(CorrespondenceTask, tmp_path)


class _EssentialPairs(SplitDataModule):
    """Calibrated two-view pairs with a known pose: 40 exact inliers and 20 random outliers;
    the last pair's pose is withheld (unknown)."""

    collate_fn = staticmethod(collate_matches)

    def load(self) -> Splits:
        K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
        pairs = []
        for seed in range(6):
            x1, x2, R, t = two_views(40, seed)
            g = np.random.default_rng(seed)
            x = np.concatenate([np.concatenate([x1, x2], 1), g.uniform(-0.5, 0.5, (20, 4))])
            px = np.concatenate([x[:, :2] * 500 + [320, 240], x[:, 2:] * 500 + [320, 240]], 1)
            E = essential_from_pose(R, t).numpy()
            pose = None if seed == 5 else torch.cat([R, 3 * t[:, None]], 1).numpy()  # any scale
            pairs.append(
                MatchPair(f"synthetic#{seed}", px.astype(np.float32), E, "essential", K, K,
                          (640, 480), pose=pose)
            )  # fmt: skip
        ds = MatchPairDataset(pairs)
        return Splits(ds, None, [], test=ds, val=ds)

    def spec(self) -> DataSpec:
        return DataSpec(
            family="correspondence", keys=(MATCHES, INLIERS, ESSENTIAL, INTRINSICS), point_dim=4
        )


def test_essential_pairs_are_scored_by_pose_error(tmp_path):
    dm = _EssentialPairs(LoaderConfig(batch_size=3), SplitConfig(val_fraction=0.0))
    dm.setup()
    labels = dm.test_set[0][INLIERS]
    assert labels[:40].all() and labels[40:].float().mean() < 0.2
    task = CorrespondenceTask(depth=1, width=8, ransac_threshold=1.0, plot_pairs=0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(task, dm)
    out = trainer.test(task, dm, verbose=False)[0]
    assert task.kind == ESSENTIAL
    # five-point RANSAC on exact inliers recovers the pose of the 5 pairs with a known one
    assert out["test/pairs_without_true_pose"] == 1.0 and out["test/ransac_failed"] == 0.0
    assert out["test/ransac_acc@5deg"] == 1.0 and out["test/ransac_pose_error_deg_median"] < 0.5
    assert out["test/ransac_recall"] > 0.95
    # the truth is the pair's pose from two_views, not anything recomputed from the matches:
    # the eight-point algorithm on true-inlier weights is scored against it ...
    batch = next(iter(dm.test_dataloader()))
    w = batch[INLIERS].float()
    E = estimate_geometry(batch[MATCHES].double(), w.double(), "essential", batch["match_mask"])
    _, _, R, t = two_views(40, 0)
    assert torch.allclose(batch[POSE][0].double(), torch.cat([R, t[:, None] / t.norm()], 1),
                          atol=1e-6)  # fmt: skip
    args = (batch[MATCHES][0].double(), batch[INLIERS][0], batch[INLIERS][0], E[0],
            batch[ESSENTIAL][0].double(), batch[INTRINSICS][0].double(), batch["meta"][0])  # fmt: skip
    assert task._evaluate_pair(*args, batch[POSE][0].double())["learned_8pt_error"] < 1e-3
    # ... a wrong truth (the rotation's inverse; the translation reversed, which is not an
    # error) gives the rotation's angle, twice its own
    wrong = torch.cat([R.T, -t[:, None]], 1)
    angle = float(torch.rad2deg(torch.arccos((torch.trace(R) - 1) / 2)))
    err = task._evaluate_pair(*args, wrong)["learned_8pt_error"]
    assert abs(err - 2 * angle) < 1e-2 < angle
    # and no truth gives NaN, not a pose recovered from the labels
    assert math.isnan(task._evaluate_pair(*args, None)["learned_8pt_error"])


def test_bad_input_is_one_error(cli, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.ransac_threshold must be > 0"):
        CorrespondenceTask(ransac_threshold=0.0)
    with pytest.raises(ConfigError, match="alpha and beta must be >= 0"):
        CorrespondenceTask(beta=-1.0)
    task = CorrespondenceTask(depth=1, width=4)
    task.setup_spec(
        DataSpec(family="correspondence", keys=(MATCHES, INLIERS, "homography"), point_dim=4)
    )
    with pytest.raises(ShapeError, match=r"matches must be \(B, N, 4\)"):
        task(torch.zeros(2, 10, 2))
    with pytest.raises(ShapeError, match="needs at least 4 correspondences, got 3"):
        estimate_geometry(torch.zeros(1, 3, 4), torch.ones(1, 3), "homography")
    with pytest.raises(ShapeError, match="needs at least 8 correspondences, got 7"):
        estimate_geometry(torch.zeros(1, 7, 4), torch.ones(1, 7), "essential")
    with pytest.raises(ConfigError, match="one geometry key"):
        task.setup_spec(DataSpec(family="correspondence", keys=(MATCHES, INLIERS), point_dim=4))
    code, _, err = cli("fit", "--config", "correspondences_homography", "--run_dir", tmp_path / "r",
                       "--data.pairs_per_photo", "0")  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert "data.pairs_per_photo must be >= 1, got 0" in err
