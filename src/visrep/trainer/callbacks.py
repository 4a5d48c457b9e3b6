"""Callbacks that fill the run directory, for any task: per-epoch metrics, final metrics, the
task's artifacts, the report, predictions, and the random state a resumed run needs.

Nothing here knows a task family: a task writes its own plots and tables in
:meth:`~visrep.tasks.Task.write_artifacts` and names its prediction columns in
:meth:`~visrep.tasks.Task.predict_rows`.
"""

from __future__ import annotations

import csv
import io
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from visrep.report import build_report
from visrep.runs import RunDir
from visrep.tasks.base import Task


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefix) and (not isinstance(v, torch.Tensor) or v.numel() == 1):
            out[k] = float(v)
    return out


class MetricsFile(Callback):
    """Writes ``metrics.csv``: one row per finished epoch (every logged scalar, and the lr).

    Rows of epochs at or after the current one are dropped first, so a resumed run continues
    the file instead of duplicating epochs.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run = RunDir(run_dir)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        row: dict[str, Any] = {"epoch": epoch, "step": trainer.global_step}
        row.update(_scalars(trainer.callback_metrics))
        if trainer.optimizers:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        rows = [r for r in self.run.read_epochs() if int(r["epoch"]) < epoch] + [row]
        self.run.write_epochs(rows)


class RunArtifacts(Callback):
    """Writes ``metrics.json``, the task's artifacts and ``report.html`` when a stage ends.

    ``fit_time_s`` is the training time of the whole run: each checkpoint keeps the time spent
    up to it, and a resumed fit adds its own time to the time its checkpoint kept (the minutes
    after the last checkpoint of an interrupted part are not counted: that work is redone).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run = RunDir(run_dir)
        self._t0 = 0.0
        self._before = 0.0  # fit time of the earlier parts of a resumed run (from its checkpoint)
        self._fitting = False

    def _fit_time(self) -> float:
        return self._before + (time.perf_counter() - self._t0 if self._fitting else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"fit_time_s": self._fit_time()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._before = float(state_dict.get("fit_time_s", 0.0))

    def _finish(self, pl_module: L.LightningModule, stage: str, values: dict[str, Any]) -> None:
        if isinstance(pl_module, Task):
            values.update(pl_module.write_artifacts(self.run, stage))
        self.run.update_metrics(values)
        build_report(self.run.root)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._fitting = time.perf_counter(), True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fit_time = self._fit_time()
        self._fitting = False
        if not trainer.is_global_zero:
            return
        values: dict[str, Any] = {
            "epochs": trainer.current_epoch,
            "fit_time_s": round(fit_time, 2),
        }
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.monitor and ckpt.best_model_score is not None:
            values[f"best/{ckpt.monitor}"] = float(ckpt.best_model_score)
        self._finish(pl_module, "fit", values)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.state.fn == "validate":
            self._finish(pl_module, "validate", _scalars(trainer.callback_metrics, "val/"))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._finish(pl_module, "test", _scalars(trainer.callback_metrics, "test/"))


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv``: a ``file`` column (the data module's sample names), the
    columns of the task's :meth:`~visrep.tasks.Task.predict_rows`, and ``output`` when the task
    writes files per sample (:meth:`~visrep.tasks.Task.write_prediction_files`)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        outputs = (
            predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        )
        rows = pl_module.predict_rows(outputs) if isinstance(pl_module, Task) else []
        dm = trainer.datamodule
        names = dm.sample_names() if hasattr(dm, "sample_names") else []
        if len(names) != len(rows):
            names = [f"sample_{i}" for i in range(len(rows))]
        if isinstance(pl_module, Task):
            files = pl_module.write_prediction_files(RunDir(self.path.parent), outputs, names)
            if files:
                rows = [{**r, "output": f} for r, f in zip(rows, files, strict=True)]
        path = self.path
        if trainer.world_size > 1:  # each rank predicted its own share of the samples
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        keys = ["file", *dict.fromkeys(k for r in rows for k in r)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows({"file": n, **r} for n, r in zip(names, rows, strict=True))
        RunDir(path.parent).write_text(path, buf.getvalue())
        print(f"predictions: {path} ({len(rows)} samples)")


class RandomState(Callback):
    """Saves the random generators (torch, CUDA, NumPy, Python) in every checkpoint and
    restores them when a run resumes, as fitting starts.

    Training-time randomness (the shuffling sampler's seed, augmentation, dropout, adversarial
    starts) then continues as if the run had never stopped: the last checkpoint of an epoch is
    written when the epoch ends, and nothing draws random numbers between that moment and the
    next epoch's first batch, nor between ``on_fit_start`` and the first batch of a resumed run
    (Lightning isolates the sanity check's generators, and visrep's loaders draw from their own:
    :class:`visrep.data.base.EpochShuffleSampler`).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": _plain_python_state(random.getstate()),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _plain_python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
