"""The GAN family's shared optimisation (:mod:`visrep.tasks.gan_training`): epoch means weighted
by batch size over batches with different value sets, schedulers stepped only when the rate can
change, and GANTask's non-finite check done once a batch on the losses of all its steps."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from visrep.data import GaussianMixtureDataModule
from visrep.data.base import LoaderConfig
from visrep.tasks import GANTask
from visrep.tasks.base import Task
from visrep.tasks.gan_training import EpochMeans, schedule_varies
from visrep.tasks.optim import OptimConfig

_MLP = {"generator": "mlp", "latent_size": 2, "hidden": 8, "depth": 1, "eval_samples": 200,
        "kid_subset_size": 10}  # fmt: skip


def _fit(task: GANTask, batches: int = 12) -> L.Trainer:
    data = GaussianMixtureDataModule(train_size=batches * 50, val_size=200, test_size=200,
                                     loader=LoaderConfig(batch_size=50))  # fmt: skip
    trainer = L.Trainer(max_epochs=1, logger=False, accelerator="cpu", enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
    trainer.fit(task, data)
    return trainer


def test_epoch_means_weight_each_value_by_the_batches_that_had_it():
    m = EpochMeans()
    m.add({"d": torch.tensor(1.0), "g": torch.tensor(2.0, requires_grad=True)}, 3)
    m.add({"d": torch.tensor(4.0)}, 1)  # a batch without a generator step
    m.add({"d": torch.tensor(1.0), "g": torch.tensor(0.0)}, 1)
    means = m.means()
    assert list(means) == ["d", "g"]
    assert means["d"].item() == pytest.approx((3 * 1 + 4 + 1) / 5)
    assert means["g"].item() == pytest.approx((3 * 2 + 0) / 4)
    assert not means["g"].requires_grad


def test_schedule_varies_only_with_a_schedule_or_warm_up():
    assert not schedule_varies(OptimConfig(schedule="constant"))
    assert schedule_varies(OptimConfig(schedule="constant", warmup_epochs=0.5))
    assert schedule_varies(OptimConfig(schedule="step")) and schedule_varies(OptimConfig())


@pytest.mark.parametrize("n_critic", [1, 3])
def test_constant_schedulers_are_not_stepped_and_losses_are_checked_once_a_batch(
    monkeypatch, n_critic
):
    """Constant discriminator rate, cosine generator rate: only the generator's scheduler steps
    (once per generator step); the base's check sees each batch's losses once, stacked: the
    critic's, and the generator's on its batches."""
    stepped: list[int] = []
    checked: list[torch.Tensor] = []
    step = torch.optim.lr_scheduler.LambdaLR.step
    check = Task.on_before_backward
    monkeypatch.setattr(torch.optim.lr_scheduler.LambdaLR, "step",
                        lambda s, *a: (stepped.append(id(s)), step(s, *a))[1])  # fmt: skip
    monkeypatch.setattr(Task, "on_before_backward",
                        lambda s, loss: (checked.append(loss), check(s, loss))[1])  # fmt: skip
    torch.manual_seed(0)
    task = GANTask(**_MLP, n_critic=n_critic, g_optim={"schedule": "cosine"})
    assert task.d_optim.schedule == "constant" and task.d_optim.warmup_epochs == 0
    trainer = _fit(task)
    d_sched, g_sched = (c.scheduler for c in trainer.lr_scheduler_configs)
    g_steps = 12 // n_critic
    # one step each when built (torch's LambdaLR), then the generator's per generator step
    assert (stepped.count(id(d_sched)), stepped.count(id(g_sched))) == (1, 1 + g_steps)
    assert d_sched.get_last_lr() == [task.d_optim.lr]
    assert [len(c) for c in checked] == [1 + ((i + 1) % n_critic == 0) for i in range(12)]
    assert all(bool(torch.isfinite(c).all()) for c in checked)
