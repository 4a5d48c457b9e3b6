"""Adversarial training: the model trains on perturbed batches, options are checked, configs parse."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from visrep.analysis.runs import load_run
from visrep.data import DigitsDataModule
from visrep.data.base import DataSpec, LoaderConfig
from visrep.errors import ConfigError
from visrep.tasks import ClassificationTask
from visrep.tasks.adversarial import AdversarialConfig, adversarial_examples, as_adversarial_config

DATA = DataSpec(
    family="classification",
    in_chans=1,
    image_size=(8, 8),
    num_classes=10,
    class_names=tuple(str(i) for i in range(10)),
    mean=(0.3,),
    std=(0.4,),
)


def _task(**kw) -> ClassificationTask:
    task = ClassificationTask(**kw)
    task.setup_spec(DATA)
    return task


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


@pytest.mark.parametrize(
    ("method", "norm", "eps"), [("pgd", "linf", 0.1), ("pgd", "l2", 0.5), ("fgsm", "linf", 0.05)]
)
def test_examples_lie_in_the_ball_and_leave_the_net_as_it_was(method, norm, eps):
    net = _net().train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    stats = net[1].running_mean.clone()
    adv = adversarial_examples(net, x, y, AdversarialConfig(method=method, norm=norm, eps=eps))
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and (size > 0).all()
    assert adv.min() >= 0 and adv.max() <= 1 and not adv.requires_grad
    assert net.training and torch.equal(net[1].running_mean, stats)


def test_ratio_replaces_the_first_part_of_the_batch():
    net = _net().eval()
    x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 10, (10,))
    adv = adversarial_examples(net, x, y, AdversarialConfig(eps=0.1, ratio=0.3))
    changed = (adv != x).flatten(1).any(1)
    assert changed.tolist() == [True] * 3 + [False] * 7
    assert not net.training


def test_deepfool_examples_change_the_prediction():
    net = _net().eval()
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,))
    adv = adversarial_examples(net, x, y, AdversarialConfig(method="deepfool"))
    assert (net(adv).argmax(1) != net(x).argmax(1)).float().mean() > 0.9


class _Record(L.Callback):
    """The batch Lightning hands to training_step (after augmentation), and what the net sees."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch["image"].clone())

    def on_fit_start(self, trainer, pl_module) -> None:
        def hook(module: nn.Module, args: tuple) -> None:
            if module.training:  # the attack's forward passes run in eval mode
                self.seen.append(args[0].detach().clone())

        pl_module.net.register_forward_pre_hook(hook)


def test_training_sees_the_perturbed_batch(tmp_path):
    L.seed_everything(0)
    task = _task(backbone="small_cnn", adversarial=AdversarialConfig(eps=0.1, steps=3))
    rec = _Record()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[rec],
    )
    before = [p.detach().clone() for p in task.parameters()]
    trainer.fit(task, DigitsDataModule(loader=LoaderConfig(batch_size=32)))
    assert len(rec.seen) == len(rec.batches) == 3
    for clean, seen in zip(rec.batches, rec.seen, strict=True):
        diff = (seen - clean).abs()
        assert 0 < diff.max() <= 0.1 + 1e-6
        assert seen.min() >= 0 and seen.max() <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, task.parameters(), strict=True))


def test_hparams_hold_a_plain_dict_that_rebuilds_the_task():
    task = _task(adversarial=AdversarialConfig(method="fgsm", eps=0.03))
    assert task.hparams["adversarial"]["method"] == "fgsm"
    again = ClassificationTask(**task.hparams)
    assert again.adversarial == AdversarialConfig(method="fgsm", eps=0.03)
    assert _task().hparams["adversarial"] is None
    assert as_adversarial_config(None) is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("method", "cw"),
        ("norm", "l1"),
        ("eps", 0.0),
        ("steps", 0),
        ("step_size", -0.1),
        ("ratio", 0.0),
        ("ratio", 1.5),
        ("overshoot", -1.0),
        ("max_iter", 0),
    ],
)
def test_bad_options_raise_naming_the_option(option, value):
    with pytest.raises(ConfigError, match=f"model.adversarial.{option} must be"):
        _task(adversarial={option: value})


def test_shipped_config_trains_and_reloads(cli, tmp_path):
    run = tmp_path / "adv"
    code, _, err = cli(
        "fit",
        "--config",
        "quickstart_adversarial",
        "--run_dir",
        run,
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.enable_progress_bar",
        "false",
        "--model.adversarial.steps",
        "2",
    )
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["adversarial"]
    assert saved["method"] == "pgd" and saved["steps"] == 2
    assert load_run(run, with_data=False).task.adversarial.steps == 2


def test_cli_bad_option_is_one_line(cli, tmp_path):
    code, _, err = cli(
        "fit",
        "--config",
        "quickstart",
        "--run_dir",
        tmp_path / "r",
        "--model.adversarial.ratio",
        "2",
    )
    assert code == 2
    assert err.strip().splitlines() == ["error: model.adversarial.ratio must be in (0, 1], got 2.0"]
