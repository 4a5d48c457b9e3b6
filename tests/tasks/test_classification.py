import lightning as L
import pytest
import torch

from visrep.data import DigitsDataModule
from visrep.data.base import DataSpec, LoaderConfig
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks import ClassificationTask, OptimConfig


def _spec(n: int, c: int, size: tuple[int, int]) -> DataSpec:
    return DataSpec(
        family="classification",
        in_chans=c,
        image_size=size,
        num_classes=n,
        class_names=tuple("abcdefghij"[:n]),
        mean=(0.5,) * c,
        std=(0.2,) * c,
    )


def _trainer(tmp_path, epochs=3):
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
    )


def test_learns_digits_and_fills_hparams_from_data(tmp_path):
    L.seed_everything(0)
    dm = DigitsDataModule(loader=LoaderConfig(batch_size=64))
    task = ClassificationTask(
        backbone={"class_path": "mlp", "init_args": {"width": 64}},
        optim=OptimConfig(optimizer="adam", lr=3e-3, weight_decay=0),
    )
    trainer = _trainer(tmp_path)
    trainer.fit(task, dm)
    assert task.spec.num_classes == 10 and task.spec.in_chans == 1
    assert task.spec.image_size == (8, 8) and len(task.spec.mean) == 1
    res = trainer.test(task, dm, verbose=False)[0]
    assert res["test/acc"] > 0.85  # a 64-unit MLP after 3 epochs; chance is 0.1
    art = task._test_results
    assert len(art["per_class_acc"]) == 10 and sum(map(sum, art["confusion_matrix"])) == 360
    extra = task.write_artifacts(RunDir(tmp_path / "run"), "test")
    assert len(extra["test/acc_per_class"]) == 10
    assert (tmp_path / "run" / "plots" / "confusion_matrix.png").is_file()


def test_label_smoothing_changes_loss_as_defined():
    task = ClassificationTask(backbone="mlp", label_smoothing=0.3)
    task.setup_spec(_spec(3, 1, (4, 4)))
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    logp = logits.log_softmax(-1)
    expected = -(0.7 * logp[0, 0] + 0.3 * logp[0].mean())
    assert torch.allclose(task._loss(logits, y), expected)


def test_explicit_model_builds_without_data_and_validates():
    task = ClassificationTask(backbone="small_cnn")
    task.setup_spec(_spec(4, 3, (8, 8)))
    assert task(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ConfigError, match="trains on classification data"):
        ClassificationTask().setup_spec(DataSpec(family="events", keys=("events", "label")))
    with pytest.raises(ConfigError, match="label_smoothing"):
        ClassificationTask(label_smoothing=1.5)
