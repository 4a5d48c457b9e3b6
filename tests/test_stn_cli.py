"""``visrep fit`` end to end with the ``stn`` backbone on distorted digits (issue 18), and the
shipped configs: they parse, build and run one batch on scikit-learn's digits (no files)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from visrep.analysis.runs import load_run
from visrep.cli import main
from visrep.models.registry import BACKBONES
from visrep.runs import load_checkpoint

ONE_BATCH = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
    "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--data.loader.batch_size", "16", "--data.split.train_samples", "64",
]  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        "mnist_stn",
        pytest.param("mnist_cnn", marks=pytest.mark.slow),  # small_cnn: covered elsewhere
        pytest.param("mnist_stn_tps", marks=pytest.mark.slow),  # tps: the next test runs it
    ],
)
def test_shipped_configs_fit_one_batch(config, tmp_path):
    run = tmp_path / config
    assert main(["fit", "--config", config, "--run_dir", str(run), *ONE_BATCH]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["class_path"].endswith("DistortedDigitsDataModule")
    assert cfg["data"]["init_args"]["distortion"]["kind"] == "rotation"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()


def test_stn_run_trains_saves_and_reloads(tmp_path):
    """Two epochs of an RTS ST-CNN on digits: checkpoint, metrics, the run reloads with the same
    transformer, and the localisation net received gradients (theta moved off the identity)."""
    run = tmp_path / "stn"
    argv = [
        "fit", "--config", "mnist_stn_tps", "--run_dir", str(run),
        "--data.distortion.kind", "rts", "--data.split.train_samples", "128",
        "--data.loader.batch_size", "32", "--trainer.max_epochs", "2",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--model.optim.lr", "0.003",
        "--model.backbone.init_args.tps_grid_size", "3",
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "plots" / "stn_transformed.png").is_file()  # inputs beside their transforms
    loaded = load_run(run, which="last")
    net = loaded.task.net.backbone
    assert type(net).__name__ == "stn" and net.transformer.transform == "tps"
    assert net.transformer.tps.num_points == 9
    loaded.datamodule.setup()
    x = loaded.datamodule.test_set.__getitems__(list(range(8))).batch["image"]
    assert x.shape[-2:] == (12, 12)  # the RTS canvas of 8x8 digits
    with torch.no_grad():
        theta = net.transformer.localize(loaded.task.net.normalize(x))
    identity = net.transformer.tps.control_points
    assert float((theta - identity).abs().max()) > 1e-4  # the regressor learnt something


def test_nested_backbone_options_from_a_config(tmp_path):
    argv = [
        "fit", "--config", "mnist_stn", "--run_dir", str(tmp_path / "nested"), *ONE_BATCH,
        "--model.backbone.init_args.backbone", "lenet",
    ]  # fmt: skip
    assert main(argv) == 0  # the nested backbone reaches the hyper-parameters as plain data
    saved = load_checkpoint(tmp_path / "nested" / "checkpoints" / "last.ckpt")
    nested = saved["hyper_parameters"]["backbone"]["init_args"]["backbone"]
    assert nested["class_path"].endswith(".lenet")
    s = BACKBONES.spec({"class_path": "stn", "init_args": {"backbone": "lenet"}})
    assert s["init_args"]["backbone"] == {
        "class_path": "visrep.models.backbones.cnn.lenet",
        "init_args": {},
    }


def test_bad_stn_option_is_one_error_line(cli, tmp_path):
    code, _, err = cli(
        "fit", "--config", "mnist_stn", "--run_dir", tmp_path / "bad", *ONE_BATCH,
        "--model.backbone.init_args.tps_grid_size", "1", "--model.backbone.init_args.transform",
        "tps",
    )  # fmt: skip
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "tps grid_size must be at least 2 x 2" in lines[0]
