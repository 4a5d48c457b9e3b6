import math

import pytest
import torch

from visrep.errors import ConfigError
from visrep.tasks import OptimConfig, build_optimizer, build_scheduler, lr_factor
from visrep.tasks.optim import as_optim_config


def test_cosine_with_warmup_values():
    cfg = OptimConfig(schedule="cosine", warmup_epochs=2, min_lr_ratio=0.1)
    assert lr_factor(0, 5, 10, cfg) == pytest.approx(1 / 10)
    assert lr_factor(9, 5, 10, cfg) == pytest.approx(1.0)
    mid = lr_factor(30, 5, 10, cfg)  # epoch 6 of a 2..10 cosine: progress 0.5
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(50, 5, 10, cfg) == pytest.approx(0.1)


def test_step_schedule():
    cfg = OptimConfig(schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(e * 10, 10, 9, cfg) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_no_decay_on_biases_and_norms():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(m, OptimConfig(weight_decay=0.1))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(m[0].weight)}
    assert isinstance(build_optimizer(m, OptimConfig(optimizer="adamw")), torch.optim.AdamW)


def test_scheduler_follows_lr_factor():
    m = torch.nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.2, warmup_epochs=1)
    opt = build_optimizer(m, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4, max_epochs=3)
    for step in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(step, 4, 3, cfg))
        opt.step()
        sched.step()


def test_dict_config_and_bad_lr():
    assert as_optim_config({"lr": 0.3, "betas": [0.8, 0.9]}).betas == (0.8, 0.9)
    with pytest.raises(ConfigError, match=r"optim\.lr must be > 0"):
        as_optim_config(OptimConfig(lr=0))
