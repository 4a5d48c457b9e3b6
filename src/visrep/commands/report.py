"""``visrep report RUN_DIR``: redraw the learning curves and rebuild report.html of a run."""

from __future__ import annotations

from collections.abc import Sequence

from visrep.commands._common import Command, run_command
from visrep.errors import DataError
from visrep.report import build_report
from visrep.runs import RunDir


def report(run_dir: str) -> int:
    """Redraw the learning curves and rebuild report.html of a run directory.

    Args:
        run_dir: a run directory written by `visrep fit`.
    """
    run = RunDir(run_dir)
    if run.root.exists() and not run.root.is_dir():
        raise DataError(f"{run_dir!r} is a file; expected a run directory written by visrep fit")
    if not run.root.is_dir():
        raise DataError(f"run directory {run_dir!r} does not exist")
    if not run.is_run():
        raise DataError(
            f"{run_dir!r} is not a run directory (no config.yaml, metrics or checkpoints); "
            "no report written"
        )
    with run.lock():
        print(build_report(run.root))
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``visrep report ...``; returns the exit code."""
    return run_command(Command(report), "visrep report", argv)
