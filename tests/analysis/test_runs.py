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
