"""Callbacks that fill the run directory: per-epoch metrics, final metrics, plots, report, predictions."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from visrep.report import build_report, plot_confusion_matrix, plot_prediction_grid
from visrep.runs import RunDir


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefix) and (not isinstance(v, torch.Tensor) or v.numel() == 1):
            out[k] = float(v)
    return out


class MetricsFile(Callback):
    """Writes ``metrics.csv``: one row per finished epoch (train and validation metrics, lr).

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
    """Writes ``metrics.json``, the plots and ``report.html`` when fitting, validating or testing ends."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run = RunDir(run_dir)
        self._t0 = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        values: dict[str, Any] = {
            "epochs": trainer.current_epoch,
            "fit_time_s": round(time.perf_counter() - self._t0, 2),
        }
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_score is not None:
            values[f"best/{ckpt.monitor}"] = float(ckpt.best_model_score)
        self.run.update_metrics(values)
        build_report(self.run.root)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.state.fn == "validate":
            self.run.update_metrics(_scalars(trainer.callback_metrics, "val/"))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        values: dict[str, Any] = _scalars(trainer.callback_metrics, "test/")
        art = getattr(pl_module, "test_artifacts", None)
        if art:
            names = art["class_names"]
            values["test/acc_per_class"] = dict(zip(names, art["per_class_acc"], strict=True))
            _write_confusion_csv(self.run, names, art["confusion_matrix"])
            plot_confusion_matrix(
                art["confusion_matrix"], names, self.run.plots / "confusion_matrix.png"
            )
            s = art["samples"]
            plot_prediction_grid(
                s["images"],
                s["targets"],
                s["probs"],
                names,
                self.run.plots / "test_predictions.png",
            )
        self.run.update_metrics(values)
        build_report(self.run.root)


def _write_confusion_csv(run: RunDir, names: list[str], cm: list[list[int]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["true \\ predicted", *names])
    for name, row in zip(names, cm, strict=True):
        w.writerow([name, *row])
    run.write_text(run.root / "confusion_matrix.csv", buf.getvalue())


class PredictionCSV(BasePredictionWriter):
    """Writes ``file,class,class_index,probability`` for every predicted sample."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        preds = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        pred = torch.cat([p["pred"] for p in preds]).tolist()
        prob = torch.cat([p["prob"] for p in preds]).tolist()
        dm = trainer.datamodule
        names = (
            dm.sample_names()
            if hasattr(dm, "sample_names")
            else [f"sample_{i}" for i in range(len(pred))]
        )
        classes = pl_module.hparams.get("class_names") or [str(i) for i in range(max(pred) + 1)]
        path = self.path
        if trainer.world_size > 1:  # each rank predicted its own share of the samples
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "class", "class_index", "probability"])
        for n, c, p in zip(names, pred, prob, strict=False):
            w.writerow([n, classes[c], c, f"{p:.6f}"])
        RunDir(path.parent).write_text(path, buf.getvalue())
        print(f"predictions: {path} ({len(pred)} samples)")
