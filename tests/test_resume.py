"""A run that is killed, even in the middle of writing a checkpoint, resumes to exactly the
run it would have been: no temp files left, each epoch once in metrics.csv, and the same
metrics as an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from visrep.cli import main

ARGS = [
    "fit",
    "--config",
    "quickstart",
    "--trainer.max_epochs",
    "4",
    "--trainer.enable_progress_bar",
    "false",
    "--model.backbone",
    "mlp",
    "--model.backbone.width",
    "32",
]

# Runs visrep in a child process that SIGKILLs itself half-way through writing the second
# last.ckpt (end of epoch 1): the temp file holds partial bytes, nothing was renamed.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import visrep.runs as runs

    real, seen = runs.atomic_write_bytes, [0]

    def dying(path, write):
        if str(path).endswith("last.ckpt"):
            seen[0] += 1
            if seen[0] == 2:
                def partial(f):
                    f.write(b"partial checkpoint")
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, partial)
        return real(path, write)

    runs.atomic_write_bytes = dying
    from visrep.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _final(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("fit_time_s")
    return metrics


def test_kill_during_checkpoint_write_then_resume_equals_uninterrupted(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*ARGS, "--run_dir", str(whole)]) == 0
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, *ARGS, "--run_dir", str(killed)],
        env=env,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list((killed / "checkpoints").glob(".last.ckpt.*.tmp")), "the kill left no temp file"
    epochs = (killed / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in epochs] == ["0", "1"]  # epoch 1 logged, not checkpointed

    assert main([*ARGS, "--run_dir", str(killed), "--resume"]) == 0
    assert not list(killed.rglob(".*.tmp"))
    rows = (killed / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]  # each epoch once
    assert rows == (whole / "metrics.csv").read_text().splitlines()
    assert _final(killed) == _final(whole)
