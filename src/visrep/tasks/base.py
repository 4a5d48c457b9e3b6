"""The base of every task: optimisation, a model built from the data's ``DataSpec``, and the hooks
the trainer calls without knowing the task (``write_artifacts``, ``predict_rows``).

A task family is one subclass (DESIGN.md, "Tasks"). It implements :meth:`Task.build` (the plain
model and the metrics, from a :class:`~visrep.data.DataSpec`) and Lightning's steps; it may add
callbacks (:meth:`configure_callbacks`), set ``monitor`` and write its own artifacts. The
trainer, the report and the prediction writer never look inside a task.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from visrep.data.base import DataSpec
from visrep.errors import CheckpointError, ConfigError, TrainingError, VisrepError
from visrep.plots.classification import plot_confusion_matrix
from visrep.runs import CHECKPOINT_FORMAT, RunDir
from visrep.tasks.optim import OptimConfig, as_optim_config, build_optimizer, build_scheduler

_PLAIN = (str, int, float, bool, type(None))


def is_plain(value: Any) -> bool:
    """Whether ``value`` is made of plain data only (what ``weights_only`` loading accepts)."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def check_state_dict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise a one-line ``CheckpointError`` naming the keys and shapes that do not fit ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
            parts.append(f"{what}: {', '.join(items[:4])}{more}")
    if parts:
        raise CheckpointError(
            f"{source}: the weights do not fit the model ({'; '.join(parts)}); was it trained "
            "with another backbone, data or number of classes?"
        )


class Task(L.LightningModule):
    """Base class of every task family.

    Args:
        optim: optimiser and learning-rate schedule, shared by every task.

    Class attributes:
        monitor: ``(metric, mode)`` that selects ``best.ckpt``; None keeps ``last.ckpt`` only.
        families: the ``DataSpec.family`` values whose data this task can train on.
        predict_native_size: ``visrep predict`` on image files feeds each image at its own size
            (dense tasks: one output pixel per input pixel) instead of resizing it to the
            training size.
        class_scores: the net's forward gives class logits: attribution maps apply
            (``visrep explain``'s Grad-CAM, occlusion, saliency, integrated gradients).
        embeds: the net has ``embed(images) -> (B, D)``: one embedding per image
            (``visrep embed``, ``visrep explain``'s neighbours and projections).
    """

    monitor: ClassVar[tuple[str, str] | None] = ("val/loss", "min")
    families: ClassVar[tuple[str, ...]] = ()
    predict_native_size: ClassVar[bool] = False
    class_scores: ClassVar[bool] = False
    embeds: ClassVar[bool] = False

    def __init__(self, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.optim = as_optim_config(optim)
        _check_optim(self.optim)
        self.spec: DataSpec | None = None
        self.net: nn.Module | None = None

    def save_hyperparameters(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's, then config dataclasses (``optim`` ...) as plain dicts: a checkpoint holds
        plain data only, so it loads with ``weights_only=True``."""
        kwargs.setdefault("frame", inspect.currentframe().f_back)
        super().save_hyperparameters(*args, **kwargs)
        for k, v in list(self.hparams.items()):
            if is_dataclass(v) and not isinstance(v, type):
                self.hparams[k] = asdict(v)
        for key in ("_class_path", "_instantiator"):  # LightningCLI's bookkeeping, not options
            self.hparams.pop(key, None)

    # -- the model, from the data --------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        """Create ``self.net`` (a plain ``nn.Module``) and the metrics for data described by ``spec``."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def setup_spec(self, spec: DataSpec) -> None:
        """Build the model for ``spec`` (once)."""
        if self.families and spec.family not in self.families:
            raise ConfigError(
                f"{type(self).__name__} trains on {' or '.join(self.families)} data, but the data "
                f"module yields {spec.family!r} samples ({', '.join(spec.keys)})"
            )
        self.spec = spec
        try:
            with warnings.catch_warnings():  # a 0 width is refused below, in one line
                warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                self.build(spec)
        except VisrepError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError) as e:
            # a backbone option out of range (a negative width, dropout 1.5): torch's message
            # alone names no option
            raise ConfigError(
                f"cannot build the model {self._options_text()} for {_spec_text(spec)}: "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from e
        empty = [n for n, p in self.named_parameters() if p.numel() == 0]
        if empty:
            raise ConfigError(
                f"the model {self._options_text()} for {_spec_text(spec)} has parameters with "
                f"no elements ({', '.join(empty[:3])}): a width, depth or channel count is 0"
            )

    def _options_text(self) -> str:
        """The task's backbone or network and its options, as a message names them."""
        hp = self.hparams if hasattr(self, "hparams") else {}
        for key in ("backbone", "net"):
            spec = hp.get(key)
            if isinstance(spec, dict) and isinstance(spec.get("init_args"), dict):
                name = str(spec.get("class_path", "")).rsplit(".", 1)[-1]
                args = ", ".join(
                    f"{k}={v!r}" for k, v in spec["init_args"].items() if v is not None
                )
                return f"of {type(self).__name__} (--model.{key} {name}: {args})"
        return f"of {type(self).__name__}"

    def configure_model(self) -> None:
        if self.net is not None:
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        spec = dm.spec() if dm is not None and hasattr(dm, "spec") else None
        if spec is None:
            raise ConfigError(
                f"{type(self).__name__} needs a data module that describes its data (spec()) "
                "or a checkpoint (--ckpt_path) to build its model"
            )
        self.setup_spec(spec)

    # -- checkpoints -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain data only, so the checkpoint loads with weights_only=True.
        bad = [k for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not is_plain(v)]
        if bad:
            raise TypeError(f"{type(self).__name__}: hyper-parameters {bad} are not plain data")
        checkpoint["visrep"] = {
            "format": CHECKPOINT_FORMAT,
            "task": f"{type(self).__module__}.{type(self).__qualname__}",
            "data_spec": self.spec.to_dict() if self.spec is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        spec = (checkpoint.get("visrep") or {}).get("data_spec")
        if self.net is None and spec:
            self.setup_spec(DataSpec.from_dict(spec))
        source = "checkpoint"
        if self._trainer is not None and self.trainer.ckpt_path:
            source = f"checkpoint {str(self.trainer.ckpt_path)!r}"
        check_state_dict(self, checkpoint["state_dict"], source)

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        try:
            opt = build_optimizer(self, self.optim)
        except ValueError as e:  # torch's "Invalid momentum value: -0.5" names no option
            text = str(e)
            option = next((o for k, o in _TORCH_OPTIM_WORDS.items() if k in text), "optim")
            raise ConfigError(f"--model.{option}: {text}") from e
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ConfigError(
                "trainer.max_epochs must be set (>= 1) for the learning-rate schedule"
            )
        steps = max(int(self.trainer.estimated_stepping_batches) // max_epochs, 1)
        sched = build_scheduler(opt, self.optim, steps, max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_before_backward(self, loss: Tensor) -> None:
        # A NaN/inf loss otherwise trains on silently and ends at chance accuracy.
        if not bool(torch.isfinite(loss.detach()).all()):
            value = float(loss.detach().float().mean())
            where = (
                f"the training loss is {value} at epoch {self.current_epoch}, step "
                f"{self.global_step}"
            )
            if not self.automatic_optimization:
                # Lightning refuses --trainer.gradient_clip_val under manual optimisation; the
                # task's optimisers are its own options (a GAN's g_optim and d_optim)
                names = [n for n in inspect.signature(type(self).__init__).parameters
                         if n.endswith("optim")]  # fmt: skip
                lrs = f" ({' / '.join(f'--model.{n}.lr' for n in names)})" if names else ""
                raise TrainingError(
                    f"{where}: lower the learning rates{lrs} or check the data for NaN/inf"
                )
            raise TrainingError(
                f"{where}: lower --model.optim.lr, check the data for NaN/inf, or clip gradients "
                "(--trainer.gradient_clip_val)"
            )

    # -- what the trainer calls ----------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """Write this task's plots, tables and files for ``stage`` (``fit``, ``validate``,
        ``test``) into ``run``; return extra values for ``metrics.json``. Called on rank 0."""
        return {}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """Write per-sample prediction files (masks, images ...) under ``run.predictions`` and
        return their paths relative to the run, one per sample, for the ``output`` column of
        ``predictions.csv``; the default writes none and returns ``[]``."""
        return []

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """One row per predicted sample (the columns of ``predictions.csv``).

        ``outputs`` are the dicts returned by ``predict_step``, in loader order; the default
        writes every per-sample scalar entry.
        """
        rows: list[dict[str, Any]] = []
        for out in outputs:
            cols = {k: v for k, v in out.items() if isinstance(v, Tensor) and v.dim() == 1}
            n = len(next(iter(cols.values()))) if cols else 0
            for i in range(n):
                rows.append({k: _scalar(v[i]) for k, v in cols.items()})
        return rows


def _check_optim(cfg: OptimConfig) -> None:
    """The optimiser options that neither torch (per-group values) nor the schedule check: a
    negative weight decay or warm-up would train on silently."""
    b1, b2 = cfg.betas
    checks = {
        "momentum": (cfg.momentum >= 0, ">= 0"),
        "weight_decay": (cfg.weight_decay >= 0, ">= 0"),
        "betas": (0 <= b1 < 1 and 0 <= b2 < 1, "two numbers in [0, 1)"),
        "warmup_epochs": (cfg.warmup_epochs >= 0, ">= 0"),
        "step_size": (cfg.step_size >= 1, ">= 1"),
        "gamma": (cfg.gamma > 0, "> 0"),
        "min_lr_ratio": (0 <= cfg.min_lr_ratio <= 1, "in [0, 1]"),
    }
    for name, (ok, expected) in checks.items():
        if not ok:
            raise ConfigError(f"--model.optim.{name} must be {expected}, got {getattr(cfg, name)}")


# words of torch's optimiser errors -> the option that sets the value
_TORCH_OPTIM_WORDS = {
    "learning rate": "optim.lr",
    "momentum": "optim.momentum",
    "weight_decay": "optim.weight_decay",
    "beta": "optim.betas",
    "Nesterov": "optim.nesterov",
}


def _spec_text(spec: DataSpec) -> str:
    dims = [d for d in (spec.in_chans, *(spec.image_size or ())) if d is not None]
    size = f"{'x'.join(map(str, dims))} inputs" if dims else f"{spec.family} data"
    return f"{size} and {spec.num_classes} classes"


def write_confusion_matrix(run: RunDir, names: list[str], cm: list[list[int]]) -> None:
    """``confusion_matrix.csv`` (rows: true class) and ``plots/confusion_matrix.png`` of a test."""
    run.write_csv(
        run.root / "confusion_matrix.csv",
        [["true \\ predicted", *names], *([n, *r] for n, r in zip(names, cm, strict=True))],
    )
    plot_confusion_matrix(cm, names, run.plots / "confusion_matrix.png")


def _scalar(v: Tensor) -> float | int:
    x = v.item()
    return round(x, 6) if isinstance(x, float) and math.isfinite(x) else x


def mean_class_accuracy(confmat: Tensor) -> Tensor:
    """Per-class recall ``C_kk / sum_j C_kj`` averaged over the classes present in the truth
    (rows with samples or points): a class only predicted, never true, has no recall and does not count
    (torchmetrics' macro accuracy counts it as 0).

    Args:
        confmat: ``(K, K)`` counts, rows the true class, columns the predicted one.

    Returns:
        ``()`` float; 0 when no row has points.

    >>> round(float(mean_class_accuracy(torch.tensor([[2, 0, 1], [0, 2, 0], [0, 0, 0]]))), 4)
    0.8333
    """
    cm = confmat.double()
    rows = cm.sum(1)
    true = rows > 0
    if not bool(true.any()):
        return cm.new_zeros(())
    return (cm.diagonal()[true] / rows[true]).mean()
