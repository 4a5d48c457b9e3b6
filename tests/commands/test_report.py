"""``visrep report RUN_DIR`` (visrep.commands.report): rebuilds a run's report, refuses folders
that are not runs, and waits for no one: a run another process writes is refused in one line."""

from __future__ import annotations

from pathlib import Path

from visrep.runs import RunDir


def _tiny_run(root: Path) -> Path:
    run = RunDir(root)
    run.write_epochs([{"epoch": 0, "train/loss": 1.0, "val/acc": 0.5}])
    run.update_metrics({"test/acc": 0.5})
    return root


def test_report_rebuilds_a_run(cli, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path / "run")
    code, out, err = cli("report", run)
    assert code == 0, err
    assert (run / "report.html").is_file() and str(run / "report.html") in out


def test_report_refuses_a_folder_that_is_not_a_run(cli, tmp_path: Path) -> None:
    for folder in (tmp_path / "empty", tmp_path / "photos"):
        folder.mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"")
    for folder in (tmp_path / "empty", tmp_path / "photos"):
        code, _, err = cli("report", folder)
        assert code == 2 and err.count("\n") == 1 and "is not a run directory" in err, err
        assert not (folder / "report.html").exists() and not (folder / "plots").exists()
    code, _, err = cli("report", tmp_path / "missing")
    assert code == 2 and "does not exist" in err


def test_report_refuses_a_run_another_writer_holds(cli, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path / "run")
    with RunDir(run).lock():
        code, _, err = cli("report", run)
    assert code == 2 and err.count("\n") == 1 and "is in use by" in err, err
    assert not (run / "report.html").exists()
    assert cli("report", run)[0] == 0  # released
