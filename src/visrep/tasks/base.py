"""The base of every task: optimisation, a model built from the data's ``DataSpec``, and the hooks
the trainer calls without knowing the task (``write_artifacts``, ``predict_rows``).

A task family is one subclass (DESIGN.md, "Tasks"). It implements :meth:`Task.build` (the plain
model and the metrics, from a :class:`~visrep.data.DataSpec`) and Lightning's steps; it may add
callbacks (:meth:`configure_callbacks`), set ``monitor`` and write its own artifacts. The
trainer, the report and the prediction writer never look inside a task.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
import sys
import types
import typing
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from visrep.data.base import DataSpec
from visrep.errors import CheckpointError, ConfigError, TrainingError, VisrepError
from visrep.plots.classification import plot_confusion_matrix
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
        """The task's backbone and its options, as a message names them."""
        spec = self.hparams.get("backbone") if hasattr(self, "hparams") else None
        if isinstance(spec, dict) and isinstance(spec.get("init_args"), dict):
            name = str(spec.get("class_path", "")).rsplit(".", 1)[-1]
            args = ", ".join(f"{k}={v!r}" for k, v in spec["init_args"].items() if v is not None)
            return f"of {type(self).__name__} (--model.backbone {name}: {args})"
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
        except Exception as e:  # a visrep task class: a failure is a bad value in the file
            raise CheckpointError(
                f"{source}: its hyper-parameters do not fit {self.task_class.__name__} ({e})"
            ) from e
        if self.data_spec:
            try:
                task.setup_spec(DataSpec.from_dict(self.data_spec))
            except VisrepError as e:
                raise CheckpointError(f"{source}: {e}") from e
        check_state_dict(task, self.state_dict, source)
        task.load_state_dict(self.state_dict)
        return task.eval()


def read_task_checkpoint(path: str | Path) -> SavedTask:
    """Read a visrep checkpoint without running anything it names.

    The task class must be one of visrep's task classes (:func:`resolve_task`), every nested
    ``class_path`` a class of visrep's own modules, and the hyper-parameters arguments of the
    class, plain data without import paths or config files in place of values (which
    jsonargparse would import or read); the task class then normalises them (a backbone name
    becomes its registered ``class_path``). A crafted file can choose among visrep's classes,
    never import or call anything else.

    Raises:
        CheckpointError: unreadable, written before version 2, or naming anything else.
    """
    p = Path(path)
    ckpt = load_checkpoint(p)
    source = f"checkpoint {str(p)!r}"
    meta = ckpt.get("visrep")
    version = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(version, int) and version > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{source} has checkpoint format {version}, newer than the {CHECKPOINT_FORMAT} this "
            "visrep reads: upgrade visrep"
        )
    if not isinstance(meta, dict) or version != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{source} predates visrep's version-2 checkpoint format (written by visrep 0.1); "
            "its model layout changed: retrain the run with this version"
        )
    hp = ckpt.get("hyper_parameters") or {}
    if not isinstance(hp, dict):
        raise CheckpointError(f"{source}: its hyper-parameters are not a mapping")
    hp = dict(hp)
    instantiator = hp.pop("_instantiator", None)
    if instantiator not in (None, _LIGHTNING_INSTANTIATOR):
        raise CheckpointError(f"{source}: names the instantiator {instantiator!r}; refused")
    named, also = meta.get("task"), hp.pop("_class_path", None)
    if named is None:
        named = also
    if not isinstance(named, str) or not named:
        raise CheckpointError(f"{source} does not name its task class")
    try:
        cls = resolve_task(named)
        if also is not None and (not isinstance(also, str) or resolve_task(also) is not cls):
            raise CheckpointError(f"it names a second task class {also!r}; refused")
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
    _check_values(init_args, "model", source)
    _check_class_paths(init_args, "model", source)
    _check_config_types(cls, init_args, source)
    init_args = _normalised(cls, init_args, source)
    _check_values(init_args, "model", source)
    _check_class_paths(init_args, "model", source)
    spec = meta.get("data_spec")
    if spec is not None:
        if not isinstance(spec, dict) or not is_plain(spec):
            raise CheckpointError(f"{source}: its data spec is not a mapping of plain values")
        try:
            DataSpec.from_dict(spec)
        except (VisrepError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: bad data spec ({e})") from None
    state = ckpt["state_dict"]
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise CheckpointError(
            f"{source}: its state_dict holds entries that are not tensors ({bad[:3]})"
        )
    return SavedTask(p, cls, init_args, spec, state)


# What LightningCLI records as the instantiator of a module (visrep drops it when saving).
_LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".jsonnet")


def _importable(dotted: str) -> bool:
    """Whether ``dotted`` starts with a module Python could import (found, never imported)."""
    try:
        return importlib.util.find_spec(dotted.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return True


def _check_values(value: Any, where: str, source: str) -> None:
    """Refuse what jsonargparse would import or read given as a value: a string that is an
    import path (``os.system``, ``some_module.Thing``), a config file, a ``__key__``, or
    anything but plain data. ``class_path`` entries are checked by :func:`_check_class_paths`."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise CheckpointError(f"{source}: {where} has the key {k!r}; refused")
            if k != "class_path":
                _check_values(v, f"{where}.{k}", source)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_values(v, f"{where}[{i}]", source)
    elif isinstance(value, str):
        if _DOTTED.match(value) and _importable(value):
            raise CheckpointError(
                f"{source}: {where} is {value!r}, an import path (a checkpoint names classes only "
                "as the class_path of one of visrep's); refused"
            )
        if value.lower().endswith(_CONFIG_SUFFIXES) and Path(value).exists():
            raise CheckpointError(f"{source}: {where} names the file {value!r}; refused")
    elif not is_plain(value):
        raise CheckpointError(f"{source}: {where} is not plain data; refused")


def check_saved_options(value: Any, where: str, source: str) -> None:
    """Refuse saved options (of a checkpoint or a run's config) that would make jsonargparse
    import or read anything: import paths or config files as values, ``class_path`` entries
    other than classes of visrep's own modules, anything but plain data.

    Raises:
        CheckpointError: the message names ``source`` and the option (``where``).
    """
    _check_values(value, where, source)
    _check_class_paths(value, where, source)


def _config_classes(hint: Any) -> list[type]:
    """The dataclasses among the members of a type hint (``OptimConfig | None`` ...)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [c for a in typing.get_args(hint) for c in _config_classes(a)]
    return [hint] if is_dataclass(hint) and isinstance(hint, type) else []


def _check_config_types(cls: type, init_args: dict[str, Any], source: str) -> None:
    """An option typed as a config dataclass is a mapping or None, never a string (which
    jsonargparse would read as a class name or a config file)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: nothing to check against
        return
    for k, v in init_args.items():
        if _config_classes(hints.get(k)) and not (v is None or isinstance(v, dict)):
            raise CheckpointError(
                f"{source}: model.{k} must be a mapping of options, got {type(v).__name__}"
            )


def _normalised(cls: type[Task], init_args: dict[str, Any], source: str) -> dict[str, Any]:
    """The options as the task class records them once it has checked them (a backbone named
    by its registered ``class_path``, config dataclasses as mappings)."""
    try:
        task = cls(**init_args)
    except Exception as e:  # the class is visrep's own: any failure is a bad value in the file
        raise CheckpointError(
            f"{source}: its hyper-parameters do not fit {cls.__name__} "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e
    saved = dict(task.hparams)
    return {k: saved.get(k, v) for k, v in init_args.items()}
