"""``visrep fit`` on every shipped event config, through the in-process CLI.

(Moved from tests/events/test_events_cli.py when the ``visrep events`` tool tests moved to
tests/commands/test_events.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.events.test_datasets import digit_stream, write_list_layout, write_nmnist_folders
from visrep.analysis.runs import load_run
from visrep.events import EventBatch, write_events
from visrep.tasks import EventClassificationTask

FIT = ("--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false")


def test_fit_nmnist_count_on_the_list_layout(cli, tmp_path: Path) -> None:
    root = write_list_layout(tmp_path / "data", n_train=40, n_test=9)
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "nmnist_count", "--data.root", root, "--run_dir", run, *FIT
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and (run / "plots" / "test_predictions.png").is_file()
    loaded = load_run(run)  # weights_only, task class from the checkpoint
    assert isinstance(loaded.task, EventClassificationTask)
    loaded.datamodule.setup()
    events = next(iter(loaded.datamodule.test_dataloader()))["events"]
    with torch.no_grad():
        assert loaded.task(events).shape == (len(events), 3)


def test_fit_digits_events(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "digits_events", "--data.max_samples", "60",
        "--data.frames_per_saccade", "4", "--run_dir", run, *FIT,
    )  # fmt: skip
    assert code == 0, err
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("repr_", ["timesurface", "voxel", "hats", "est", "matrixlstm"])
def test_fit_every_nmnist_config(cli, tmp_path: Path, repr_: str) -> None:
    root = write_nmnist_folders(tmp_path / "data", classes=3, per_class=8)
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", f"nmnist_{repr_}", "--data.root", root, "--run_dir", run,
        "--trainer.limit_train_batches", "1", *FIT,
    )  # fmt: skip
    assert code == 0, err
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


def write_ncars_folders(root: Path, per_class: int = 4) -> Path:
    """N-Cars' ``n-cars_{train,test}/{cars,background}/*`` with small 120x100 streams."""
    for k, split in enumerate(("n-cars_train", "n-cars_test")):
        for c, name in enumerate(("background", "cars")):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                s = digit_stream(2 * c, 1000 * k + 100 * c + i, size=(120, 100))
                write_events(s, root / split / name / f"obj_{i:06d}_td.npz")
    return root


@pytest.mark.parametrize(
    ("config", "channels"),
    [("ncars_matrixlstm", 3), ("ncars_matrixlstm_16x2", 32), ("ncars_est", 18)],
)
def test_fit_every_ncars_config(cli, tmp_path: Path, config: str, channels: int) -> None:
    root = write_ncars_folders(tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", config, "--data.root", root, "--run_dir", run,
        "--data.loader.batch_size", "4", "--trainer.limit_train_batches", "1", *FIT,
    )  # fmt: skip
    assert code == 0, err
    net = load_run(run).task.net  # the paper's channels (bins) of Table 2
    assert net.representation.out_channels == channels
    assert net(EventBatch.from_streams([digit_stream(0, 7, size=(120, 100))])).shape == (1, 2)
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
