import lightning as L
import pytest
import torch

from visrep.data import DigitsDataModule
from visrep.errors import ConfigError
from visrep.tasks import ClassificationTask, OptimConfig


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
    dm = DigitsDataModule(batch_size=64)
    task = ClassificationTask(
        backbone="mlp",
        backbone_args={"width": 64},
        optim=OptimConfig(optimizer="adam", lr=3e-3, weight_decay=0),
    )
    trainer = _trainer(tmp_path)
    trainer.fit(task, dm)
    assert task.hparams.num_classes == 10 and task.hparams.in_chans == 1
    assert list(task.hparams.image_size) == [8, 8] and len(task.hparams.mean) == 1
    res = trainer.test(task, dm, verbose=False)[0]
    assert res["test/acc"] > 0.85  # a 64-unit MLP after 3 epochs; chance is 0.1
    art = task.test_artifacts
    assert len(art["per_class_acc"]) == 10 and sum(map(sum, art["confusion_matrix"])) == 360


def test_label_smoothing_changes_loss_as_defined():
    task = ClassificationTask(
        num_classes=3,
        in_chans=1,
        image_size=[4, 4],
        mean=[0.0],
        std=[1.0],
        class_names=list("abc"),
        backbone="mlp",
        label_smoothing=0.3,
    )
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    logp = logits.log_softmax(-1)
    expected = -(0.7 * logp[0, 0] + 0.3 * logp[0].mean())
    assert torch.allclose(task._loss(logits, y), expected)


def test_explicit_model_builds_without_data_and_validates():
    task = ClassificationTask(
        backbone="small_cnn",
        num_classes=4,
        in_chans=3,
        image_size=[8, 8],
        mean=[0.5] * 3,
        std=[0.2] * 3,
        class_names=list("abcd"),
    )
    assert task(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ConfigError, match="label_smoothing"):
        ClassificationTask(label_smoothing=1.5)
