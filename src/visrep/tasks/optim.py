"""Optimisers and learning-rate schedules shared by every task."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from visrep.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and schedule (``--model.optim.lr 0.05`` etc.).

    Attributes:
        optimizer: sgd (with momentum / Nesterov), adam, adamw or rmsprop (Tieleman and
            Hinton 2012, torch's smoothing 0.99; the WGAN critic's and generator's optimiser,
            Arjovsky et al. 2017, algorithm 1).
        lr: peak learning rate.
        momentum: SGD (and RMSProp) momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 (sgd, adam) or decoupled (adamw) decay; not applied to biases and
            normalisation parameters unless ``decay_all`` is set.
        betas: Adam's betas.
        schedule: constant, step (multiply by ``gamma`` every ``step_size`` epochs) or cosine
            (to ``lr * min_lr_ratio`` at the end of training).
        warmup_epochs: linear warm-up from 0 over this many (fractional) epochs.
        step_size: epochs between steps of the step schedule.
        gamma: factor of the step schedule.
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        decay_all: apply weight decay to every parameter.
    """

    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    decay_all: bool = False


def as_optim_config(cfg: OptimConfig | dict | None) -> OptimConfig:
    """Accept the dataclass, a plain dict (as stored in checkpoints) or None (defaults)."""
    if cfg is None:
        return OptimConfig()
    if isinstance(cfg, dict):
        cfg = OptimConfig(**{k: tuple(v) if k == "betas" else v for k, v in cfg.items()})
    if cfg.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.lr}")
    return cfg


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over ``model``'s trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_all or cfg.weight_decay == 0:
        groups: list[dict] = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:  # biases and norm scales (1-D tensors) are not decayed: standard practice since Goyal et al. 2017
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, steps_per_epoch: int, max_epochs: int, cfg: OptimConfig) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (warm-up, then the schedule).

    >>> cfg = OptimConfig(schedule="cosine", warmup_epochs=1)
    >>> [round(lr_factor(s, 10, 3, cfg), 3) for s in (0, 5, 10, 20, 30)]
    [0.1, 0.6, 1.0, 0.5, 0.0]
    """
    epoch = step / max(steps_per_epoch, 1)
    if epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** int(epoch // cfg.step_size)
    span = max(max_epochs - cfg.warmup_epochs, 1e-8)
    progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, max_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps_per_epoch, max_epochs, cfg)
    )
