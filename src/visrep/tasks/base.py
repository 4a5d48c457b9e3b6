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
import sys
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from visrep.data.base import DataSpec
from visrep.errors import CheckpointError, ConfigError, TrainingError
from visrep.runs import CHECKPOINT_FORMAT, RunDir, load_checkpoint
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
    """

    monitor: ClassVar[tuple[str, str] | None] = ("val/loss", "min")
    families: ClassVar[tuple[str, ...]] = ()

    def __init__(self, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.optim = as_optim_config(optim)
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
        self.build(spec)

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
        opt = build_optimizer(self, self.optim)
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
            raise TrainingError(
                f"the training loss is {value} at epoch {self.current_epoch}, step "
                f"{self.global_step}: lower --model.optim.lr, check the data for NaN/inf, or "
                "clip gradients (--trainer.gradient_clip_val)"
            )

    # -- what the trainer calls ----------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """Write this task's plots, tables and files for ``stage`` (``fit``, ``validate``,
        ``test``) into ``run``; return extra values for ``metrics.json``. Called on rank 0."""
        return {}

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


def _scalar(v: Tensor) -> float | int:
    x = v.item()
    return round(x, 6) if isinstance(x, float) and math.isfinite(x) else x


def task_classes() -> dict[str, type[Task]]:
    """Every subclass of :class:`Task` imported so far (visrep's own always), by import path."""
    import visrep.tasks  # noqa: F401  (registers visrep's own task families)

    found: dict[str, type[Task]] = {}
    stack: list[type] = [Task]
    while stack:
        for sub in stack.pop().__subclasses__():
            found[f"{sub.__module__}.{sub.__qualname__}"] = sub
            stack.append(sub)
    return found


def resolve_task(class_path: str) -> type[Task]:
    """The task class named by ``class_path`` (an import path or a class name), looked up among
    the :class:`Task` subclasses already imported; nothing is ever imported from the name.

    This is the allow-list for checkpoints: a file cannot make visrep import or call anything
    else (a checkpoint must never run code).
    """
    classes = task_classes()
    if class_path in classes:
        return classes[class_path]
    module, _, name = class_path.rpartition(".")
    # a bare class name, or a package that re-exports it (visrep.tasks.ClassificationTask)
    by_name = [
        c
        for path, c in classes.items()
        if path.rsplit(".", 1)[-1] == name and (not module or path.startswith(module + "."))
    ]
    if len(by_name) == 1:
        return by_name[0]
    raise CheckpointError(
        f"{class_path!r} is not a visrep task class (known: "
        f"{', '.join(sorted(p.rsplit('.', 1)[-1] for p in classes))}); refused"
    )


def _check_class_paths(value: Any, where: str, source: str) -> None:
    """Refuse any ``class_path`` in saved hyper-parameters that is not a class defined in one of
    visrep's already-imported modules (checked without importing anything)."""
    if isinstance(value, list | tuple):
        for v in value:
            _check_class_paths(v, where, source)
    if not isinstance(value, dict):
        return
    path = value.get("class_path")
    if path is not None:
        module, _, name = str(path).rpartition(".")
        obj = getattr(sys.modules.get(module), name, None) if module.startswith("visrep.") else None
        if not (inspect.isclass(obj) and obj.__module__ == module):
            raise CheckpointError(
                f"{source}: {where} names class {path!r}, which is not one of visrep's; refused"
            )
    for k, v in value.items():
        _check_class_paths(v, f"{where}.{k}", source)


def _without_pretrained(value: Any) -> Any:
    """The saved options with every ``pretrained_path`` set to None: the weights come from the
    checkpoint itself, and the file the run started from may be gone."""
    if isinstance(value, dict):
        return {
            k: None if k == "pretrained_path" else _without_pretrained(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_pretrained(v) for v in value]
    return value


@dataclass
class SavedTask:
    """What a visrep checkpoint says about its task, checked (see :func:`read_task_checkpoint`)."""

    path: Path
    task_class: type[Task]
    init_args: dict[str, Any]
    data_spec: dict[str, Any] | None
    state_dict: dict[str, Any]

    @property
    def class_path(self) -> str:
        return f"{self.task_class.__module__}.{self.task_class.__qualname__}"

    def build(self) -> Task:
        """The task with its model and weights (eval mode)."""
        source = f"checkpoint {str(self.path)!r}"
        try:
            task = self.task_class(**self.init_args)
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"{source}: its hyper-parameters do not fit {self.task_class.__name__} ({e})"
            ) from e
        if self.data_spec:
            task.setup_spec(DataSpec.from_dict(self.data_spec))
        check_state_dict(task, self.state_dict, source)
        task.load_state_dict(self.state_dict)
        return task.eval()


def read_task_checkpoint(path: str | Path) -> SavedTask:
    """Read a visrep checkpoint without running anything it names.

    The task class must be one of visrep's task classes (:func:`resolve_task`), every nested
    ``class_path`` a class of visrep's own modules, and the hyper-parameters arguments of the
    class: a crafted file can choose among visrep's classes, never import or call anything else.

    Raises:
        CheckpointError: unreadable, written before version 2, or naming anything else.
    """
    p = Path(path)
    ckpt = load_checkpoint(p)
    source = f"checkpoint {str(p)!r}"
    meta = ckpt.get("visrep")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{source} predates visrep's version-2 checkpoint format (written by visrep 0.1); "
            "its model layout changed: retrain the run with this version"
        )
    hp = dict(ckpt.get("hyper_parameters") or {})
    hp.pop("_instantiator", None)
    named = meta.get("task") or hp.get("_class_path")
    hp.pop("_class_path", None)
    if not isinstance(named, str):
        raise CheckpointError(f"{source} does not name its task class")
    try:
        cls = resolve_task(named)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    own = inspect.signature(cls.__init__).parameters
    inherited = {
        k
        for base in cls.__mro__[1:]
        if issubclass(base, Task)
        for k in inspect.signature(base.__init__).parameters
    }
    unknown = sorted(k for k in hp if k not in own and k not in inherited)
    if unknown:
        raise CheckpointError(
            f"{source}: hyper-parameters {unknown} are not options of {cls.__name__}"
        )
    init_args = _without_pretrained({k: v for k, v in hp.items() if k in own and k != "self"})
    _check_class_paths(init_args, "model", source)
    spec = meta.get("data_spec")
    if spec is not None and not isinstance(spec, dict):
        raise CheckpointError(f"{source}: its data spec is not a mapping")
    return SavedTask(p, cls, init_args, spec, ckpt["state_dict"])
