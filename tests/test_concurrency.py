"""One writer per run directory, and a training that diverges stops with one error line.

Two ``visrep fit`` processes started together into one ``--run_dir``: one trains, the other
exits 2 with one ``error:`` line saying the run is in use (the lock is
:class:`visrep.runs.RunLock`). While that fit holds the run, every tool that would write into
it is refused the same way, before doing its work.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from visrep.cli import main

FIT = ["fit", "--config", "quickstart", "--model.backbone", "mlp", "--model.backbone.width", "16",
       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip


# What the tools below would write into the run.
TOOL_OUTPUTS = ("model_stats.csv", "robustness.csv", "predictions.csv", "config.test.yaml",
                "config.predict.yaml", "plots/embedding_pca.png", "plots/robustness.png",
                "plots/adversarial_examples.png")  # fmt: skip


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _wait(condition, what: str, procs: list[subprocess.Popen], limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_fits_into_one_run_dir_and_tools_while_it_trains(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("visrep")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    # long enough to outlive the other process's start-up; stopped once checked
    args = [str(exe), *FIT, "--trainer.max_epochs", "100000", "--run_dir", str(run)]
    logs = [tmp_path / f"fit{i}.err" for i in range(2)]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                         stderr=log.open("w"))
        for log in logs
    ]  # fmt: skip
    try:
        _wait(lambda: any(p.poll() is not None for p in procs), "one fit to stop", procs)
        loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
        winner = procs[1 - loser]
        err = logs[loser].read_text()
        assert procs[loser].returncode == 2, err[-3000:]
        assert "Traceback" not in err
        lines = _lines(err)
        assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
        assert f"run directory {str(run)!r} is in use by pid {winner.pid}" in lines[0]
        assert winner.poll() is None, "the other fit should still be training"

        # exactly one trains: the winner writes its epochs and checkpoints
        best = run / "checkpoints" / "best.ckpt"
        _wait(lambda: best.is_file() and (run / "config.yaml").is_file(), "a checkpoint", procs)
        assert winner.poll() is None

        # every tool that writes into the run is refused while the fit holds it
        images = tmp_path / "images"
        images.mkdir()
        from PIL import Image

        Image.new("L", (8, 8), 100).save(images / "0.png")
        tools = {
            "report": ["report", str(run)],
            "inspect model": ["inspect", "model", str(run)],
            "explain": ["explain", str(run), "--methods", "pca", "--max_points", "20"],
            "attack": ["attack", str(run), "--attacks", "fgsm", "--max_samples", "8"],
            "test": ["test", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false"],
            "predict": ["predict", "--ckpt_path", str(best), "--data.path", str(images)],
            "fit --resume": [*FIT, "--run_dir", str(run), "--resume"],
        }
        for name, argv in tools.items():
            capfd.readouterr()
            with warnings.catch_warnings(record=True) as caught:
                code = main(argv)
            _, err = capfd.readouterr()
            err = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err
            lines = _lines(err)
            assert code == 2, (name, err[-2000:])
            assert len(lines) == 1 and "is in use by pid" in lines[0], (name, err[-2000:])
        written = [p for p in TOOL_OUTPUTS if (run / p).exists()]
        assert not written, written
        assert winner.poll() is None, "the fit should have trained on undisturbed"
        rows = (run / "metrics.csv").read_text().strip().splitlines()
        assert len(rows) >= 2 and rows[0].startswith("epoch,")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_a_diverging_training_stops_with_one_error_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    argv = [*FIT, "--trainer.max_epochs", "3", "--model.optim.lr", "1e30", "--model.optim.schedule",
            "constant", "--run_dir", str(tmp_path / "nan")]  # fmt: skip
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 2 and "Traceback" not in out + err, err[-3000:]
    errors = [line for line in _lines(err) if line.startswith("error: ")]
    assert len(errors) == 1 and _lines(err)[-1] == errors[0], err[-3000:]
    message = errors[0]
    assert "the training loss is" in message and "at epoch 0, step" in message, message
    value = message.split("the training loss is ", 1)[1].split(" ", 1)[0]
    assert not math.isfinite(float(value)), message
    assert "--model.optim.lr" in message
