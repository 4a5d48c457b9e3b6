"""A task family that visrep does not ship (tests/tasks/toy_regression.py) trains, tests,
predicts and reloads through the ``visrep`` commands: adding a family touches no file of
visrep's CLI, trainer, report or other tasks."""

from __future__ import annotations

import json

from visrep.analysis.runs import load_run

TOY = "tests.tasks.toy_regression"


def test_a_new_family_runs_through_visrep_fit_test_and_predict(tmp_path, cli):
    run = tmp_path / "toy"
    common = ["--trainer.enable_progress_bar", "false"]
    code, _, err = cli(
        "fit",
        "--model.class_path", f"{TOY}.MeanRegressionTask",
        "--model.init_args.hidden", "4",
        "--model.init_args.optim.optimizer", "adam",
        "--model.init_args.optim.lr", "0.02",
        "--model.init_args.optim.weight_decay", "0",
        "--data.class_path", f"{TOY}.MeanImagesDataModule",
        "--trainer.max_epochs", "3",
        "--run_dir", run,
        *common,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    # the task's own metric picks best.ckpt; its artifact hook wrote a plot and a value
    assert {"best/val/mse", "test/mse", "test/weight_spread", "epochs"} <= set(metrics)
    assert metrics["test/mse"] < 0.05  # the target is the mean of U(0, 1) pixels: var 1/192
    assert (run / "plots" / "weights.png").is_file() and (run / "report.html").is_file()
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["best.ckpt", "last.ckpt"]

    ckpt = run / "checkpoints" / "best.ckpt"
    code, _, err = cli(
        "test", "--ckpt_path", ckpt, "--data", f"{TOY}.MeanImagesDataModule", *common
    )
    assert code == 0, err
    code, _, err = cli(
        "predict", "--ckpt_path", ckpt, "--data", f"{TOY}.MeanImagesDataModule", *common
    )
    assert code == 0, err
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,pred,target" and len(rows) == 1 + 96

    loaded = load_run(run, with_data=False)
    assert (
        type(loaded.task).__name__ == "MeanRegressionTask"
        and loaded.task.spec.family == "regression"
    )
