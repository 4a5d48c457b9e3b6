"""``visrep attack RUN_DIR`` (visrep.commands.attack) on a 1-epoch quickstart run: outputs, metrics,
one-line errors, list options, the run's writer lock."""

from __future__ import annotations

import csv
import json

import pytest
import torch


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from visrep.cli import main

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("attack") / "run"
    args = ["fit", "--config", "quickstart", "--run_dir", str(run), "--trainer.max_epochs", "1"]
    assert main([*args, "--trainer.enable_progress_bar", "false"]) == 0
    yield run
    torch.set_num_threads(n)


def test_attack_writes_curves_plots_metrics_and_report(cli, quick_run):
    code, out, err = cli(
        "attack", quick_run, "--eps", "0,0.05,0.2", "--max_samples", "48", "--steps", "3"
    )
    assert code == 0, err
    assert "48 test samples" in out and "deepfool rho=" in out
    metrics = json.loads((quick_run / "metrics.json").read_text())
    assert "test/acc" in metrics  # the run's own metrics are kept
    clean = metrics["attack/clean_acc"]
    for attack in ("fgsm", "pgd", "deepfool"):
        accs = [metrics[f"attack/{attack}/acc@{e}"] for e in ("0", "0.05", "0.2")]
        assert accs[0] == pytest.approx(clean)
        assert accs[0] >= accs[1] >= accs[2]
    assert metrics["attack/pgd/acc@0.2"] <= metrics["attack/fgsm/acc@0.2"] < clean
    assert 0 < metrics["attack/deepfool/rho"] < 1
    assert metrics["attack/deepfool/median_l2"] > 0
    assert metrics["attack/deepfool/success_rate"] > 0.9
    rows = list(csv.DictReader((quick_run / "robustness.csv").open()))
    assert len(rows) == 9 and rows[0] == {
        "attack": "fgsm",
        "norm": "linf",
        "eps": "0",
        "accuracy": f"{clean:.6f}",
    }
    for png in ("robustness.png", "adversarial_examples.png"):
        assert (quick_run / "plots" / png).stat().st_size > 1000
    html = (quick_run / "report.html").read_text()
    assert 'alt="robustness"' in html and 'alt="adversarial_examples"' in html


def test_compare_overlays_other_runs_curves(cli, quick_run, tmp_path):
    other = tmp_path / "adv_run"
    other.mkdir()
    (other / "robustness.csv").write_text(
        "attack,norm,eps,accuracy\nfgsm,linf,0,0.9\nfgsm,linf,0.05,0.8\npgd,linf,0,0.9\n"
    )
    code, _, err = cli(
        "attack", quick_run, "--attacks", "fgsm,pgd", "--eps", "0,0.05", "--max_samples", "16",
        "--steps", "2", "--compare", other,
    )  # fmt: skip
    assert code == 0, err
    assert (quick_run / "plots" / "robustness_compare.png").stat().st_size > 1000
    code, _, err = cli("attack", quick_run, "--compare", tmp_path / "never_attacked")
    assert code == 2 and "robustness.csv not found" in err


def test_rerun_replaces_previous_attack_metrics(cli, quick_run):
    code, _, err = cli(
        "attack",
        quick_run,
        "--attacks",
        "fgsm",
        "--norm",
        "l2",
        "--eps",
        "0.5",
        "--max_samples",
        "16",
        "--split",
        "val",
    )
    assert code == 0, err
    metrics = json.loads((quick_run / "metrics.json").read_text())
    keys = sorted(k for k in metrics if k.startswith("attack/"))
    assert keys == [
        "attack/clean_acc",
        "attack/fgsm/acc@0.5",
        "attack/norm",
        "attack/num_samples",
        "attack/split",
    ]
    assert metrics["attack/norm"] == "l2" and metrics["attack/num_samples"] == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attacks", "fgsm,cw"], "--attacks must be a comma-separated subset"),
        (["--eps", "0.1,abc"], "--eps must be comma-separated finite numbers >= 0"),
        (["--eps", "-0.1"], "--eps must be"),
        (["--max_samples", "0"], "--max_samples must be >= 1"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--overshoot", "-1"], "--overshoot must be >= 0"),
        (["--norm", "l1"], "norm"),
        (["--split", "dev"], "split"),
        (["--device", "tpu:x"], "--device must be"),
    ],
)
def test_bad_options_are_one_line_errors(cli, quick_run, args, message):
    code, _, err = cli("attack", quick_run, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_missing_run_is_an_error(cli, tmp_path):
    code, _, err = cli("attack", tmp_path / "nope")
    assert code == 2 and "neither a run directory nor a checkpoint" in err


def test_attack_refuses_a_run_another_writer_holds(cli, quick_run):
    from visrep.runs import RunDir

    before = (quick_run / "metrics.json").read_text()
    with RunDir(quick_run).lock():
        code, _, err = cli("attack", quick_run, "--attacks", "fgsm", "--eps", "0.1",
                           "--max_samples", "4")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "is in use by" in err, err
    assert (quick_run / "metrics.json").read_text() == before


def test_eps_takes_brackets_and_commas_and_which_picks_the_checkpoint(cli, quick_run):
    for eps in ("[0,0.1]", "0,0.1"):
        code, out, err = cli("attack", quick_run, "--attacks", "fgsm", "--eps", eps,
                             "--max_samples", "8", "--which", "last")  # fmt: skip
        assert code == 0, err
        assert "acc@0=" in out and "acc@0.1=" in out
    code, _, err = cli("attack", quick_run, "--which", "worst")
    assert code == 2 and "--which must be one of best, last" in err
