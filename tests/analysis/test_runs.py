import pytest
import torch

from visrep.analysis.runs import load_run
from visrep.cli import main
from visrep.data import DigitsDataModule
from visrep.errors import CheckpointError


def test_load_run_rebuilds_task_and_data(tmp_path):
    run = tmp_path / "r"
    assert (
        main(
            [
                "fit",
                "--config",
                "quickstart",
                "--run_dir",
                str(run),
                "--trainer.max_epochs",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--model.backbone",
                "mlp",
            ]
        )
        == 0
    )
    loaded = load_run(run)
    assert (
        isinstance(loaded.datamodule, DigitsDataModule)
        and loaded.datamodule.augment.crop_padding == 1
    )
    assert not loaded.task.training and loaded.checkpoint.name == "best.ckpt"
    state = torch.load(loaded.checkpoint, weights_only=True)["state_dict"]
    for k, v in loaded.task.state_dict().items():
        assert torch.equal(v, state[k])
    assert load_run(loaded.checkpoint, with_data=False).run.root == run


def test_load_run_errors(tmp_path):
    with pytest.raises(CheckpointError, match="neither a run directory nor a checkpoint"):
        load_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"has no checkpoints/best\.ckpt"):
        load_run(tmp_path)


def test_a_data_folder_that_moved_is_named_in_one_line(tmp_path, monkeypatch):
    """A run whose data root was relative to another folder: the data module's own error, and
    the folder relative paths count from (not jsonargparse's union report)."""
    from visrep.analysis.runs import load_datamodule
    from visrep.errors import ConfigError
    from visrep.runs import RunDir

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(
        "data:\n  class_path: visrep.data.IDXDataModule\n  init_args:\n    root: ./mnist\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_datamodule(RunDir(run))
    text = str(e.value)
    assert "\n" not in text and "Union" not in text
    assert "cannot rebuild the data module: " in text and "mnist" in text
    assert f"relative paths count from the current folder, {tmp_path}" in text
