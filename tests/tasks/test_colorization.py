"""The colourisation task (Zhang et al. 2016) end to end through the CLI on a tiny class-folder
tree of RGB images, in both modes, then prediction (colourised PNGs); and its training-split
statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from visrep.data.base import DataSpec
from visrep.data.samples import collate, image_sample
from visrep.errors import ConfigError
from visrep.losses.colorization import smooth_distribution, split_lab
from visrep.tasks import ColorizationTask

_QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
_TINY = ["--model.model.width", "4", "--model.model.depth", "1", "--trainer.max_epochs", "1"]


def _colour_tree(root: Path) -> Path:
    """``train/`` and ``test/`` with 2 classes x 6 RGB 12x12 images: a colour per class, a
    random brightness per image (so the colour is predictable from nothing but the data)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, colour in enumerate(((220, 60, 40), (40, 90, 200))):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(6):
                img = np.clip(np.asarray(colour) * rng.uniform(0.4, 1.1), 0, 255)
                img = np.broadcast_to(img, (12, 12, 3)).astype(np.uint8)
                Image.fromarray(img).save(root / split / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("mode", ["regression", "classification"])
def test_config_fits_tests_and_predicts_colourised_images(tmp_path, cli, mode):
    data, run = _colour_tree(tmp_path / "data"), tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", f"colorize_cifar10_{mode}", "--data.root", data, "--run_dir", run,
        "--data.loader.batch_size", "4", "--data.split.val_fraction", "0.2", *_TINY, *_QUIET,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        for name in ("mse_ab", "psnr_ab", "psnr_rgb"):
            for suffix in ("", "_baseline"):
                assert np.isfinite(metrics[f"{stage}/{name}{suffix}"]), f"{stage}/{name}{suffix}"
    # the baseline is the training pixels' mean ab, and the metrics agree with it
    assert len(metrics["train/mean_ab"]) == 2
    assert metrics["test/psnr_ab_baseline"] == pytest.approx(
        10 * np.log10(200**2 / metrics["test/mse_ab_baseline"]), abs=3.0
    )
    assert (run / "plots" / "test_colorizations.png").is_file()
    code, _, err = cli(
        "predict", "--ckpt_path", run / "checkpoints" / "best.ckpt", "--data.path",
        data / "test", *_QUIET,
    )  # fmt: skip
    assert code == 0, err
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,mean_chroma,output" and len(rows) == 13
    out = Image.open(run / rows[1].split(",")[-1])
    assert out.mode == "RGB" and out.size == (12, 12)


def test_grey_data_is_refused_in_one_line(tmp_path, cli):
    data = _colour_tree(tmp_path / "data")
    code, _, err = cli(
        "fit", "--config", "colorize_cifar10_regression", "--data.root", data,
        "--data.channels", "1", "--run_dir", tmp_path / "run", *_TINY, *_QUIET,
    )  # fmt: skip
    assert code == 2 and "RGB images (3 channels)" in err and len(err.strip().splitlines()) == 1


def test_training_statistics_mean_chroma_and_rebalancing_weights():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 8, 8, generator=g) ** 2
    loader = DataLoader([image_sample(x, 0) for x in images], batch_size=4, collate_fn=collate)
    spec = DataSpec(
        family="classification", in_chans=3, image_size=(8, 8), num_classes=1,
        mean=(0.5,) * 3, std=(0.3,) * 3,
    )  # fmt: skip
    task = ColorizationTask(model={"class_path": "unet", "init_args": {"depth": 1, "width": 4}})
    task.setup_spec(spec)
    task.fit_statistics(loader)
    _, ab = split_lab(images)
    assert torch.allclose(task.mean_ab, ab.mean((0, 2, 3)), atol=1e-4)
    assert float(task.ab_counts.sum()) == 10 * 8 * 8
    pt = smooth_distribution(task.ab_counts, task.net.quantizer.centers, 5.0)
    assert float((pt * task.ab_weights.double()).sum()) == pytest.approx(1.0, abs=1e-5)
    # regression has no bins; its model outputs 2 channels, ab / 110
    reg = ColorizationTask(
        model={"class_path": "unet", "init_args": {"depth": 1, "width": 4}}, mode="regression"
    )
    reg.setup_spec(spec)
    assert reg(images).shape == (10, 2, 8, 8) and not hasattr(reg, "ab_counts")
    assert task(images).shape == (10, 262, 8, 8)
    assert task.net.colorize(images).shape == (10, 3, 8, 8)


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="mode"):
        ColorizationTask(mode="gan")
    with pytest.raises(ConfigError, match=r"bins\.lam"):
        ColorizationTask(bins={"lam": 0.0})


def test_predict_colours_each_image_at_its_own_size(tmp_path):
    """A list batch (images of different sizes) gives one colourised image per input, each at
    its input's size; the task asks ``visrep predict`` for native sizes."""
    assert ColorizationTask.predict_native_size
    task = ColorizationTask(
        model={"class_path": "unet", "init_args": {"depth": 1, "width": 4}}, mode="regression"
    )
    task.setup_spec(
        DataSpec(
            family="classification", in_chans=3, num_classes=1, mean=(0.5,) * 3, std=(0.3,) * 3
        )
    )
    torch.manual_seed(0)
    images = [torch.rand(3, 9, 13), torch.rand(3, 16, 8)]
    out = task.predict_step({"image": images}, 0)
    assert [tuple(im.shape) for im in out["rgb"]] == [(3, 9, 13), (3, 16, 8)]
    assert out["chroma"].shape == (2,)
    single = task.predict_step({"image": images[0][None]}, 0)
    assert torch.equal(single["rgb"][0], out["rgb"][0])
