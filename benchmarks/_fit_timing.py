"""Timing shared by the benchmarks that race ``visrep fit`` against a plain training loop
(``pointnet.py`` and ``video.py``, section ``train``).

visrep's side runs ``visrep fit --config CONFIG`` in this process (:func:`fit_epochs`, through
:func:`visrep.cli.main`) with :class:`EpochTimer` given by ``--trainer.callbacks``; the plain
side times its own epochs with :func:`time_epochs`. Both give, per epoch, the wall and process
CPU seconds of the training batches and the samples trained on; :func:`rates` turns the epochs
after the first (warm-up) into samples/s, and :func:`compare` alternates the two sides over
ABBA rounds and prints the medians' ratio visrep / plain.

Not a benchmark itself: the scripts import it from their own folder (``benchmarks/`` is not a
package), so the callback's class path is ``_fit_timing.EpochTimer`` (:data:`TIMER`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from visrep.cli import main as cli_main  # before Lightning: the CLI's environment on both sides

# isort: split
import lightning as L
import torch
from torch import nn

Epochs = list[tuple[float, float, int]]  # (wall s, CPU s, samples) of each epoch's training

_EPOCHS: Epochs = []


class EpochTimer(L.Callback):
    """visrep's side: wall and CPU seconds of each epoch's training batches (from the epoch's
    start to the end of its last batch, before validation) and the samples they held."""

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0, self.c0, self.n = time.perf_counter(), time.process_time(), 0

    def on_train_batch_end(
        self, trainer: Any, module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        self.n += len(batch["label"])
        self.t, self.c = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        _EPOCHS.append((self.t - self.t0, self.c - self.c0, self.n))


TIMER = f"{__name__}.EpochTimer"  # its class path for --trainer.callbacks


def rates(epochs: Epochs) -> tuple[float, float]:
    """Samples per wall second and per CPU second over the epochs after the first."""
    wall, cpu, n = (sum(e[i] for e in epochs[1:]) for i in range(3))
    return n / wall, n / cpu


def fit_epochs(config: str, options: list[str], epochs: int) -> Epochs:
    """``visrep fit --config CONFIG OPTIONS`` in this process for ``epochs`` epochs on the CPU
    (no progress bar, model summary or test after fit; the run directory a temporary one),
    timed by :class:`EpochTimer`."""
    _EPOCHS.clear()
    with tempfile.TemporaryDirectory() as d:
        code = cli_main([
            "fit", "--config", config, *options, "--trainer.max_epochs", str(epochs),
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.callbacks", TIMER,
            "--test_after_fit", "false", "--run_dir", f"{d}/run",
        ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"visrep fit --config {config} failed with exit code {code}")
    if len(_EPOCHS) != epochs:
        raise SystemExit(f"visrep fit --config {config}: {len(_EPOCHS)} epochs timed, not {epochs}")
    return list(_EPOCHS)


def adam(net: nn.Module, optim: dict[str, Any]) -> torch.optim.Adam:
    """The plain side's ``torch.optim.Adam`` with a config's ``model.optim`` settings (lr, betas,
    weight decay), grouped as visrep's optimiser groups them: biases and norm scales (1-D
    tensors) not decayed unless ``decay_all`` is set or the decay is 0."""
    if optim.get("optimizer") != "adam":
        raise SystemExit(f"the plain loop trains with Adam; the config's optimizer is {optim}")
    params = [p for p in net.parameters() if p.requires_grad]
    wd = float(optim.get("weight_decay", 0.0))
    if optim.get("decay_all", False) or wd == 0:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": wd}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    return torch.optim.Adam(groups, lr=optim["lr"], betas=tuple(optim.get("betas", (0.9, 0.999))))


def time_epochs(epochs: int, run_epoch: Callable[[int], int]) -> Epochs:
    """The plain side: wall and CPU seconds of ``run_epoch(epoch)`` (which trains one epoch and
    returns its samples) for each epoch."""
    out: Epochs = []
    for epoch in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        n = run_epoch(epoch)
        out.append((time.perf_counter() - t0, time.process_time() - c0, n))
    return out


def compare(
    rounds: int, plain: Callable[[], Epochs], visrep: Callable[[], Epochs], unit: str
) -> tuple[float, float]:
    """Run the two sides ``rounds`` times, alternating (plain first in even rounds: ABBA),
    print each round's rates (``unit``/s) and the medians' ratio; return the ratios visrep /
    plain (wall, CPU)."""
    sides = {"plain": plain, "visrep": visrep}
    res: dict[str, list[tuple[float, float]]] = {"plain": [], "visrep": []}
    for r in range(rounds):
        for side in ("plain", "visrep") if r % 2 == 0 else ("visrep", "plain"):
            res[side].append(rates(sides[side]()))
        (pw, pc), (vw, vc) = res["plain"][-1], res["visrep"][-1]
        print(
            f"  round {r}: plain {pw:.2f} {unit}/s wall, {pc:.2f} per CPU s; visrep "
            f"{vw:.2f} wall, {vc:.2f} per CPU s"
        )

    def median(side: str, i: int) -> float:
        return statistics.median(r[i] for r in res[side])

    wall = median("visrep", 0) / median("plain", 0)
    cpu = median("visrep", 1) / median("plain", 1)
    print(
        f"  medians: visrep / plain = {wall:.4f} wall ({(1 - wall) * 100:.2f}% overhead), "
        f"{cpu:.4f} CPU ({(1 - cpu) * 100:.2f}% overhead)"
    )
    return wall, cpu
