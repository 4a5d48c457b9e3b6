"""``visrep inspect stability`` and ``visrep inspect compare`` (visrep.commands.inspect) on tiny
trained runs, and the shipped comparison configs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA
from visrep.analysis.compare import evaluate
from visrep.analysis.runs import load_run
from visrep.cli import main as visrep_main
from visrep.commands.inspect import main as inspect_main
from visrep.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny tensors: OpenMP threads only contend on a shared 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fit_config(root: Path, config: str, *extra: str) -> Path:
    run = root / config
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = visrep_main(
            ["fit", "--config", config, "--run_dir", str(run), "--trainer.max_epochs", "1",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             *extra]
        )  # fmt: skip
    finally:
        torch.set_num_threads(n)
    assert code == 0
    return run


def _fit(root: Path, backbone: str, *extra: str) -> Path:
    return _fit_config(root / backbone, "quickstart", "--model.backbone", backbone, *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        # projected training: NaisNetReprojection runs in every `visrep fit`
        "naisnet": _fit(root, "naisnet", "--model.backbone.channels", "[8, 16]"),
        "cnn": _fit(root, "small_cnn", "--model.backbone.channels", "[8, 16]"),
    }


def test_stability_writes_plots_metrics_report(runs: dict[str, Path]) -> None:
    run = runs["naisnet"]
    code = inspect_main(
        ["stability", str(run), "--num_samples", "32", "--n_iter", "20", "--tol_sweep", "[0.1]",
         "--noise_levels", "[0.0, 0.1, 0.5]"]
    )  # fmt: skip
    assert code == 0
    for name in ("trajectories", "noise", "depth", "spectral_radius"):
        assert (run / "plots" / f"stability_{name}.png").stat().st_size > 1000
    assert "stability_depth" in (run / "report.html").read_text()

    s = json.loads((run / "stability.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(s["blocks"]) == {"backbone.features.2", "backbone.features.5"}
    for b in s["blocks"].values():
        # after projected training every block satisfies Algorithm 2's sufficient condition
        # (up to float32 rounding: the rescaling lands the off-centre sum on the bound)
        assert b["kind"] == "conv" and b["constrained"]
        assert b["margin_min"] >= -1e-6 and b["delta_margin"] > 0
        assert b["rho_max"] <= 1 + 1e-4  # ReLU blocks: rho = 1 where a unit is off
        assert b["rho_active_max"] <= b["rho_max"] + 1e-4
        assert sum(map(sum, b["depth_counts"])) == s["num_test"]
        assert 1 <= b["mean_depth"] <= b["max_steps"] == 5
        assert len(b["trajectory_median"]) == 5 and len(b["noise_mean_distance"]) == 3
    assert s["model_noise_mean_distance"][0] == 0 < s["model_noise_mean_distance"][2]
    assert s["block_steps_fixed"] == 10 and s["block_steps_adaptive"] <= 10
    assert s["flops_adaptive"] <= s["flops_fixed"]
    assert 0 <= s["flops_saved"] < 1 and len(s["tol_sweep"]) == 1
    # the fit tested the best checkpoint with the model's own (adaptive) inference settings
    assert s["acc_adaptive"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    for key in ("margin_min", "rho_max", "mean_depth", "flops_saved", "acc_fixed", "acc_adaptive",
                "features.2/margin_min", "features.5/mean_depth"):  # fmt: skip
        assert f"stability/{key}" in metrics
    assert metrics["stability/margin_min"] == s["margin_min"]


def test_stability_max_steps_and_tol_overrides(runs: dict[str, Path]) -> None:
    run = runs["naisnet"]
    inspect_main(["stability", str(run), "--num_samples", "8", "--n_iter", "4", "--max_steps", "12",
                    "--tol", "1e6"])  # fmt: skip
    s = json.loads((run / "stability.json").read_text())
    # a huge tol stops every sample after one stage
    assert all(b["max_steps"] == 12 and b["mean_depth"] == 1 for b in s["blocks"].values())
    assert s["block_steps_fixed"] == 24 and s["block_steps_adaptive"] == 2
    assert s["flops_saved"] > 0


def test_stability_error_on_a_model_without_naisnet_blocks(runs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="no NAIS-Net blocks") as e:
        inspect_main(["stability", str(runs["cnn"])])
    assert "\n" not in str(e.value) and "small_cnn" in str(e.value)


def test_compare_two_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code = inspect_main(
        [
            "compare",
            str(runs["naisnet"]),
            str(runs["cnn"]),
            "--sigmas",
            "[0.0, 0.3]",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    md = (out / "comparison.md").read_text()
    assert "naisnet" in md and "small_cnn" in md
    rows = json.loads((out / "comparison.json").read_text())["runs"]
    assert [r["backbone"] for r in rows] == ["naisnet", "small_cnn"]
    for r, name in zip(rows, ("naisnet", "cnn"), strict=True):
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert r["test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
        clean, noisy = r["noise"]
        assert clean["sigma"] == 0 and clean["acc"] == r["test_acc"] and clean["dist"] == 0
        assert noisy["dist"] > 0 and 0 <= noisy["acc"] <= 1
    run = load_run(runs["cnn"])
    assert rows[1]["params"] == sum(p.numel() for p in run.task.net.parameters())
    assert rows[1]["mean_depth"] is None and rows[0]["mean_depth"] >= 1
    # train accuracy: the best checkpoint in eval mode on the whole training split
    run.datamodule.setup()
    assert rows[1]["num_train"] == len(run.datamodule.train_set)
    assert rows[1]["train_acc"] == pytest.approx(
        evaluate(run.task.net, run.datamodule.train_set)["acc"]
    )


@pytest.mark.parametrize(
    "name", ["naisnet_digits", "resnet_digits", "naisnet_kmnist", "resnet_kmnist"]
)
def test_shipped_comparison_configs_parse(name: str) -> None:
    paths = (
        ["--data.train_path", "i.npz", "--data.train_labels_path", "l.npz"]
        if "kmnist" in name
        else []
    )
    with pytest.raises(SystemExit) as e:
        visrep_main(["fit", "--config", name, *paths, "--print_config"])
    assert e.value.code == 0


def test_kmnist_config_is_one_command(tmp_path: Path) -> None:
    if not (SHARED_DATA / "kmnist" / "KMNIST" / "kmnist-test-imgs.npz").is_file():
        pytest.skip("KMNIST not under the shared data folder")
    kmnist = SHARED_DATA / "kmnist" / "KMNIST"
    run = _fit_config(tmp_path, "naisnet_kmnist", "--data.train_path", str(kmnist / "kmnist-test-imgs.npz"),
                      "--data.train_labels_path", str(kmnist / "kmnist-test-labels.npz"),
                      "--trainer.limit_train_batches", "2",
                      "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1")  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and "test/acc" in metrics
    dm = load_run(run).datamodule
    dm.setup()
    # only the official test set exists here: it is split seeded into train / val / test
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (7200, 800, 2000)


def test_stability_and_compare_respect_the_writer_lock(cli, runs: dict[str, Path], tmp_path):
    from visrep.runs import RunDir

    run = runs["naisnet"]
    with RunDir(run).lock():
        code, _, err = cli("inspect", "stability", run, "--num_samples", "4", "--n_iter", "2")
        assert code == 2 and err.count("\n") == 1 and "is in use by" in err, err
        # compare into a run directory waits for no one either; into a plain folder it writes
        code, _, err = cli("inspect", "compare", runs["cnn"], "--sigmas", "0", "--out", run)
        assert code == 2 and "is in use by" in err, err
        code, _, err = cli("inspect", "compare", runs["cnn"], "--sigmas", "0",
                           "--out", tmp_path / "cmp")  # fmt: skip
        assert code == 0, err
    assert not (tmp_path / "cmp" / ".lock").exists()
