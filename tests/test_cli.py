"""End-to-end CLI: the run directory, predict, bad input, resume after a kill, DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.cli import main
from visrep.models.registry import BACKBONES
from visrep.runs import load_checkpoint
from visrep.trainer.callbacks import RunArtifacts

VISREP = [sys.executable, "-m", "visrep"]
FAST = [
    "--trainer.max_epochs",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "quick"
    assert main(["fit", "--config", "quickstart", "--run_dir", str(run), *FAST]) == 0
    return run


def test_run_directory_layout(quick_run):
    for rel in (
        "config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "metrics.json",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/test_predictions.png",
        "report.html",
        "confusion_matrix.csv",
    ):
        assert (quick_run / rel).is_file(), rel
    metrics = json.loads((quick_run / "metrics.json").read_text())
    for key in (
        "val/acc",
        "test/acc",
        "test/loss",
        "test/acc_top5",
        "test/acc_per_class",
        "epochs",
    ):
        assert key in metrics, key
    assert metrics["epochs"] == 2 and 0 <= metrics["test/acc"] <= 1
    rows = (quick_run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    html = (quick_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "test/acc" in html
    ckpt = load_checkpoint(quick_run / "checkpoints" / "best.ckpt")  # weights_only=True works
    assert ckpt["visrep"]["data_spec"]["num_classes"] == 10
    assert ckpt["hyper_parameters"]["backbone"]["class_path"].endswith(".small_cnn")


def test_validate_and_test_subcommands_update_the_run(quick_run, cli):
    before = json.loads((quick_run / "metrics.json").read_text())
    code, _, _ = cli(
        "test",
        "--config",
        "quickstart",
        "--ckpt_path",
        quick_run / "checkpoints" / "best.ckpt",
        "--trainer.enable_progress_bar",
        "false",
    )
    assert code == 0
    after = json.loads((quick_run / "metrics.json").read_text())
    assert after["test/acc"] == pytest.approx(before["test/acc"])
    assert (quick_run / "config.test.yaml").is_file() and (quick_run / "config.yaml").is_file()


def test_predict_on_image_folder(quick_run, tmp_path, cli):
    from sklearn.datasets import load_digits

    d = load_digits()
    for i in range(6):  # larger than the training size: predict resizes to 8x8
        img = (d.images[i] * 16).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).resize((16, 16), Image.Resampling.NEAREST).save(tmp_path / f"{i}.png")
    code, _out, _ = cli(
        "predict",
        "--ckpt_path",
        quick_run / "checkpoints" / "best.ckpt",
        "--data.path",
        tmp_path,
        "--trainer.enable_progress_bar",
        "false",
    )
    assert code == 0
    lines = (quick_run / "predictions.csv").read_text().strip().splitlines()
    assert lines[0] == "file,class,class_index,probability" and len(lines) == 7
    first = lines[1].split(",")
    assert first[0].endswith("0.png") and 0 < float(first[3]) <= 1


def test_report_command_rebuilds(quick_run, cli):
    (quick_run / "report.html").unlink()
    code, _out, _ = cli("report", quick_run)
    assert code == 0 and (quick_run / "report.html").is_file()


def test_help_lists_every_command(cli):
    _code, out, _ = cli("--help")
    for c in ("fit", "validate", "test", "predict", "report", "quickstart"):
        assert c in out
    with pytest.raises(SystemExit) as e:
        main(["fit", "--help"])
    assert e.value.code == 0


def test_print_config_resolves_shipped_config(cli):
    with pytest.raises(SystemExit):
        main(["fit", "--config", "quickstart", "--model.backbone", "mlp", "--print_config"])


def test_mnist_config_on_idx_folder(idx_dir, tmp_path):
    run = tmp_path / "mnist"
    args = [
        "fit",
        "--config",
        "mnist",
        "--data.root",
        str(idx_dir),
        "--data.loader.num_workers",
        "0",
        "--run_dir",
        str(run),
        "--data.loader.batch_size",
        "16",
        *FAST,
    ]
    assert main(args) == 0
    assert json.loads((run / "metrics.json").read_text())["test/acc"] > 0.5  # 3 classes


@pytest.mark.parametrize("backbone", ["naisnet", "resnet18", "vit_small", "naisnet_fc", "mlp"])
def test_mnist_config_trains_any_backbone_from_its_defaults(idx_dir, tmp_path, backbone):
    """Swapping the backbone of a shipped config needs no other option, and starts from the new
    backbone's defaults: the config's small-CNN options (channels, head_dropout) stay behind."""
    run = tmp_path / backbone
    code = main(
        ["fit", "--config", "mnist", "--data.root", str(idx_dir), "--model.backbone", backbone,
         "--run_dir", str(run), "--data.loader.num_workers", "0", "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "2", "--test_after_fit", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    )  # fmt: skip
    assert code == 0
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")["hyper_parameters"]["backbone"]
    assert saved["class_path"].endswith(f".{backbone}")
    assert "convs_per_stage" not in saved["init_args"]
    defaults = {k: p.default for k, p in BACKBONES.options(backbone).items()}
    assert saved["init_args"] == {
        k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()
    }


def _error(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def test_bad_input_gives_one_line_errors(cli, tmp_path, idx_dir):
    assert "data.root" in _error(
        cli, "fit", "--data", "visrep.data.IDXDataModule", "--data.root", tmp_path / "missing"
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in idx_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x01\x02\x03" + b"\x00" * 40)
    assert "bad magic number" in _error(
        cli, "fit", "--config", "mnist", "--data.root", bad, "--run_dir", tmp_path / "r1"
    )
    (bad / "t10k-images-idx3-ubyte").write_bytes(
        (idx_dir / "t10k-images-idx3-ubyte").read_bytes()[:-10]
    )
    assert "truncated" in _error(
        cli, "fit", "--config", "mnist", "--data.root", bad, "--run_dir", tmp_path / "r2"
    )
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    assert "no images" in _error(
        cli,
        "fit",
        "--data",
        "visrep.data.ImageFolderDataModule",
        "--data.root",
        tmp_path / "empty",
        "--run_dir",
        tmp_path / "r3",
    )
    assert "unknown backbone 'resnt18'" in _error(
        cli, "fit", "--model.backbone", "resnt18", "--run_dir", tmp_path / "r4"
    )
    assert "bogus" in _error(cli, "fit", "--model.bogus", "1")
    assert "neither a file nor a shipped config" in _error(cli, "fit", "--config", "nope")
    assert "unknown command" in _error(cli, "frobnicate")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x80\x04garbage" * 10)
    assert "cannot be read (truncated or not a torch checkpoint" in _error(
        cli, "test", "--ckpt_path", corrupt
    )
    assert "does not exist" in _error(cli, "test", "--ckpt_path", tmp_path / "missing.ckpt")
    assert "nothing to resume" in _error(cli, "fit", "--run_dir", tmp_path / "fresh", "--resume")


def test_existing_run_is_never_overwritten(quick_run, cli):
    assert "--resume" in _error(cli, "fit", "--config", "quickstart", "--run_dir", quick_run)


class Evil:
    """A class a checkpoint must not be able to smuggle in."""


def test_pickled_objects_are_refused(tmp_path, cli):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "obj": Evil()}, ckpt)
    assert "pickled Python objects" in _error(cli, "test", "--ckpt_path", ckpt)


def _env() -> dict:
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def test_resume_after_kill_finishes_planned_epochs(tmp_path):
    run = tmp_path / "killed"
    args = [
        *VISREP,
        "fit",
        "--config",
        "quickstart",
        "--run_dir",
        str(run),
        "--trainer.max_epochs",
        "8",
        "--data.loader.batch_size",
        "16",
        "--model.backbone",
        "mlp",
        "--trainer.enable_progress_bar",
        "false",
    ]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv = run / "metrics.csv"

    def epochs_done() -> int:
        return len(csv.read_text().strip().splitlines()) - 1 if csv.is_file() else 0

    deadline = time.time() + 600  # generous: a loaded machine can be slow to start
    while proc.poll() is None and not (
        epochs_done() >= 2 and (run / "checkpoints" / "last.ckpt").is_file()
    ):
        assert time.time() < deadline, "no epoch finished within 10 minutes"
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= epochs_done() < 8
    kept = load_checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]["RunArtifacts"]
    assert kept["fit_time_s"] > 0
    res = subprocess.run(
        [*args, "--resume"], env=_env(), capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-2000:]
    epochs = [r.split(",")[0] for r in csv.read_text().strip().splitlines()[1:]]
    assert epochs == [str(e) for e in range(8)]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 7
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 8
    assert metrics["fit_time_s"] >= round(kept["fit_time_s"], 2)


def test_fit_time_of_a_resumed_run_adds_the_time_its_checkpoint_kept(tmp_path):
    artifacts = RunArtifacts(tmp_path)
    artifacts.load_state_dict({"fit_time_s": 100.0})  # as a resumed fit restores it
    artifacts.on_fit_start(None, None)
    time.sleep(0.01)
    assert 100.01 <= artifacts.state_dict()["fit_time_s"] < 110.0
    assert RunArtifacts(tmp_path).state_dict() == {"fit_time_s": 0.0}  # a new fit starts at 0


def test_ddp_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    args = [
        *VISREP,
        "fit",
        "--config",
        "quickstart",
        "--run_dir",
        str(run),
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "2",
        "--trainer.enable_progress_bar",
        "false",
    ]
    res = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and "test/acc" in metrics
    # 1,293 training images over 2 processes: 647 each; batch 64 with drop_last: 10 steps an epoch
    last = (run / "metrics.csv").read_text().strip().splitlines()[-1].split(",")
    assert last[2] == "20"


def test_runs_are_deterministic(tmp_path, cli):
    rows = []
    for name in ("a", "b"):
        code, _, _ = cli(
            "fit",
            "--config",
            "quickstart",
            "--run_dir",
            tmp_path / name,
            *FAST,
            "--test_after_fit",
            "false",
        )
        assert code == 0
        rows.append((tmp_path / name / "metrics.csv").read_text())
    assert rows[0] == rows[1]


def test_checkpoint_from_before_version_2_is_refused_in_one_line(quick_run, tmp_path, cli):
    """A 0.1 checkpoint (no "visrep" entry; data facts among the hyper-parameters) says so."""
    ckpt = load_checkpoint(quick_run / "checkpoints" / "best.ckpt")
    old = {
        "state_dict": ckpt["state_dict"],
        "hyper_parameters": {"backbone": "small_cnn", "backbone_args": None, "num_classes": 10},
    }
    torch.save(old, tmp_path / "old.ckpt")
    for args in (
        ["test", "--ckpt_path", tmp_path / "old.ckpt"],
        ["inspect", "model", tmp_path / "old.ckpt"],
    ):
        assert "predates visrep's version-2 checkpoint format" in _error(cli, *args)
