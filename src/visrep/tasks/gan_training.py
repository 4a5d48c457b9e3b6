"""What the manual optimisation of the GAN family (:class:`~visrep.tasks.gan.GANTask`,
:class:`~visrep.tasks.cyclegan.CycleGANTask`) shares: each network's optimiser with its own
per-step schedule, which schedules need stepping, the DDP check, and the epoch means of the
training values, logged once an epoch.

Per-step costs matter here: a small GAN's step (an 8x8 DCGAN) takes a few milliseconds on a CPU,
so what a plain two-optimiser loop does not do (scheduler calls for a constant rate, one logging
call or device sync per value) shows as overhead (``benchmarks/gan.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig, build_optimizer, lr_factor

__all__ = ["EpochMeans", "check_ddp_strategy", "optimizer_with_schedule", "schedule_varies"]


def optimizer_with_schedule(
    task: Task, module: nn.Module, cfg: OptimConfig, option: str, steps_per_epoch: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser of ``cfg`` over ``module`` and its per-step schedule; torch's value errors
    as ConfigError naming ``option``.

    ``steps_per_epoch`` is this optimiser's own steps per epoch, a fraction where it steps less
    often than once a batch (the generator's ``total / max_epochs``): the schedule then ends
    with the run's last step of it, not before.
    """
    try:
        opt = build_optimizer(module, cfg)
    except ValueError as e:  # torch's "Invalid beta parameter ..." names no option
        raise ConfigError(f"--model.{option}: {e}") from e
    max_epochs = task.trainer.max_epochs
    if max_epochs is None or max_epochs < 1:
        raise ConfigError("trainer.max_epochs must be set (>= 1) for the learning-rate schedule")
    # lr_factor reads at least one step an epoch: a generator stepping less often than once an
    # epoch (fewer batches than n_critic) keeps a slower schedule
    per_epoch = max(steps_per_epoch, 1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, per_epoch, max_epochs, cfg)
    )
    return opt, sched


def schedule_varies(cfg: OptimConfig) -> bool:
    """Whether ``cfg``'s learning-rate factor can differ from 1 (a schedule other than
    ``constant``, or a warm-up): only then does its scheduler need stepping.

    >>> schedule_varies(OptimConfig(schedule="constant")), schedule_varies(OptimConfig())
    (False, True)
    """
    return cfg.schedule != "constant" or cfg.warmup_epochs > 0


def check_ddp_strategy(task: Task, stage: str) -> None:
    """Refuse DDP without ``find_unused_parameters`` for a fit of a task whose backward passes
    each reach one network only (a GAN's discriminator and generator steps): DDP would stop at
    the first step. Called from ``setup``, before the strategy wraps the model."""
    from lightning.pytorch.strategies import DDPStrategy

    strategy = task.trainer.strategy if task._trainer is not None else None
    if stage != "fit" or not isinstance(strategy, DDPStrategy):
        return
    if getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters"):
        return
    method = getattr(strategy, "_start_method", "popen")
    name = "ddp" if method == "popen" else f"ddp_{method}"
    raise ConfigError(
        f"{type(task).__name__} steps its networks with separate backward passes, which DDP "
        f"needs to know: use --trainer.strategy {name}_find_unused_parameters_true"
    )


class EpochMeans:
    """Batch-weighted means of a training epoch's values, kept on the device and logged once, at
    the epoch's last batch: Lightning's ``self.log`` costs more than a small GAN's step (about
    0.8 ms a call on a loaded CPU, measured), so per-step logging would dominate it. The values
    of one :meth:`add` are stacked: one multiply-add a batch, not one per value."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, ...], Tensor] = {}  # names -> sums of their stacked values
        self.counts: dict[tuple[str, ...], int] = {}

    def add(self, values: dict[str, Tensor], n: int) -> None:
        """Add one batch's values (scalars; detached here) of ``n`` samples; no device sync."""
        names = tuple(values)
        stacked = torch.stack([v.detach() for v in values.values()]).float()
        prev = self.sums.get(names)
        self.sums[names] = stacked.mul_(n) if prev is None else prev.add_(stacked, alpha=n)
        self.counts[names] = self.counts.get(names, 0) + n

    def means(self) -> dict[str, Tensor]:
        """Each name's batch-weighted mean over every :meth:`add` that had it."""
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        for names, total in self.sums.items():
            for name, v in zip(names, total.unbind(), strict=True):
                sums[name] = v if name not in sums else sums[name] + v
                counts[name] = counts.get(name, 0) + self.counts[names]
        return {name: v / counts[name] for name, v in sums.items()}

    @staticmethod
    def epoch_done(task: Task, batch_idx: int) -> bool:
        """Whether ``batch_idx`` is the epoch's last batch (every batch when the count is
        unknown, as for iterable data sets)."""
        batches = task.trainer.num_training_batches
        return math.isinf(batches) or batch_idx + 1 >= batches

    def log(
        self, task: Task, stage: str, shown: tuple[str, ...] = (), extra: dict | None = None
    ) -> None:
        """``task.log`` each mean as ``<stage>/<name>`` (and ``extra`` values as they are), then
        start again."""
        for name, mean in self.means().items():
            task.log(f"{stage}/{name}", mean, on_step=False, on_epoch=True, sync_dist=True,
                     prog_bar=name in shown, batch_size=1)  # fmt: skip
        for name, value in (extra or {}).items():
            task.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=1)
        self.sums, self.counts = {}, {}
