"""KeypointTask: targets and decoding agree through the stride, intermediate supervision, the
artifacts of a test run, a short fit that learns, bad options."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.data.test_keypoints_data import write_dot_images
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig
from visrep.data.keypoints import KeypointDataModule
from visrep.data.samples import IMAGE, KEYPOINTS
from visrep.errors import ConfigError
from visrep.models.layers.heatmaps import (
    gaussian_heatmaps,
    heatmap_mse,
    image_to_map,
    with_background,
)
from visrep.runs import RunDir
from visrep.tasks import KeypointTask
from visrep.trainer.callbacks import RunArtifacts

_SPEC = DataSpec(
    family="keypoints", keys=(IMAGE, KEYPOINTS), in_chans=1, image_size=(32, 48), num_classes=3,
    class_names=("a", "b", "c"), mean=(0.5,), std=(0.25,),
)  # fmt: skip


def _task(**kw) -> KeypointTask:
    torch.manual_seed(0)
    task = KeypointTask(**{"stages": 2, "width": 8, "pools": 2, "stage_depth": 1, **kw})
    task.setup_spec(_SPEC)
    return task


def test_perfect_maps_decode_to_the_true_keypoints_in_image_pixels():
    task = _task(sigma=1.0, beta=40.0)
    kp = torch.tensor([[[10.3, 7.6, 2.0], [30.0, 20.2, 2.0], [41.7, 12.1, 1.0]]])
    x = torch.zeros(1, 1, 32, 48)
    maps, _ = with_background(*gaussian_heatmaps(image_to_map(kp, (4.0, 4.0)), (8, 12), 1.0))
    pred = task.decode(x, maps)
    assert torch.allclose(pred["argmax"], kp[..., :2], atol=1e-4)
    # beta 40 on peaks of 1 is nearly the integer argmax: within half a map pixel (2 image px)
    assert (pred["softargmax"] - kp[..., :2]).abs().max() <= 2.0
    assert torch.allclose(pred["score"], maps[:, :3].flatten(2).amax(-1))


def test_loss_sums_every_stage_and_masks_unlabelled_points():
    task = _task(stages=3)
    x = torch.rand(2, 1, 32, 48)
    kp = torch.tensor([[[10.0, 7.0, 2.0], [30.0, 20.0, 0.0], [4.0, 4.0, 2.0]]]).repeat(2, 1, 1)
    loss, last = task._loss(x, kp)
    target, mask = with_background(*gaussian_heatmaps(image_to_map(kp, (4.0, 4.0)), (8, 12), 1.0))
    outs = task.net.stage_outputs(x)
    assert mask[0].tolist() == [1.0, 0.0, 1.0, 1.0]
    want = sum(heatmap_mse(b, target, mask) for b, _ in outs)
    assert torch.allclose(loss, want) and torch.equal(last, outs[-1][0]) and len(outs) == 3


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"sigma": 0.0}, "sigma > 0"),
        ({"refine": "cubic"}, "refine"),
        ({"limbs": [(0, 1, 2)]}, "limbs"),
    ],
)
def test_bad_options_raise(option, match):
    with pytest.raises(ConfigError, match=match):
        KeypointTask(**option)
    with pytest.raises(ConfigError, match=r"limbs \[\[0, 5\]\] name keypoints outside \[0, 3\)"):
        _task(limbs=[(0, 5)])


def test_short_fit_learns_and_test_writes_the_drawing_and_table(tmp_path: Path):
    L.seed_everything(0)
    dm = KeypointDataModule(
        str(write_dot_images(tmp_path / "dots", n=48)), num_keypoints=2, channels=1,
        test_files=["im0[0-7].png"], loader=LoaderConfig(batch_size=8),
        split=SplitConfig(val_fraction=0.2, stratify=False),
    )  # fmt: skip
    task = KeypointTask(
        stages=2,
        width=16,
        pools=1,
        stage_depth=2,
        sigma=1.0,
        optim={"optimizer": "adam", "lr": 3e-3},
    )
    run = RunDir(tmp_path / "run")
    trainer = L.Trainer(
        max_epochs=40, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=run.root, callbacks=[RunArtifacts(run.root)],
        num_sanity_val_steps=0, check_val_every_n_epoch=40,
    )  # fmt: skip
    trainer.fit(task, dm)
    trainer.test(task, dm, verbose=False)
    m = trainer.callback_metrics
    # 24x32 images, diagonal 40 px: PCK@0.05 is 2 px; the dots are learnt well within it
    assert float(m["test/pck_argmax"]) >= 0.75, dict(m)  # measured 0.846 (11 of 13 points)
    assert float(m["test/error_px_argmax"]) < 2.0
    assert (run.plots / "test_keypoints.png").is_file()
    rows = list(csv.DictReader((run.root / "test_keypoints.csv").open()))
    assert len(rows) == 8 * 2 - 3  # images 0, 3, 6 (every third) has its second point unlabelled
    assert {"x_argmax", "error_px_softargmax"} <= set(rows[0])
    # predictions are in the files' pixels: here the images are not resized, so they agree
    pred = trainer.predict(task, dm)
    assert pred[0]["argmax"].shape == (8, 2, 2)
    first = rows[0]
    assert float(first["x_argmax"]) == pytest.approx(float(pred[0]["argmax"][0, 0, 0]), abs=1e-3)
