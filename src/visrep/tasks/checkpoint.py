"""Reading a task back from a checkpoint without running anything the file names.

The allow-list behind every command that takes a checkpoint or a run (``test``, ``predict``,
the tools, ``load_run``): the task class is one of visrep's :class:`~visrep.tasks.base.Task`
subclasses, and every saved option is plain data checked against the class's signature before
jsonargparse or the class sees it.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from visrep.data.base import DataSpec
from visrep.errors import CheckpointError, VisrepError
from visrep.runs import CHECKPOINT_FORMAT, load_checkpoint
from visrep.tasks.base import Task, check_state_dict, is_plain


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


# Options naming a weights file a run STARTED from: its weights are in the checkpoint itself, and
# the file may be gone or relative to another folder by the time the run is read back.
_START_WEIGHTS = ("pretrained_path", "init_weights")


def _without_pretrained(value: Any) -> Any:
    """The saved options with every ``pretrained_path`` (a backbone's) and ``init_weights`` (a
    task's) set to None: the weights come from the checkpoint itself, and the file the run
    started from may be gone (the task's check that it exists would refuse the reload).

    >>> _without_pretrained({"init_weights": "runs/a", "backbone": {"pretrained_path": "w.pt"}})
    {'init_weights': None, 'backbone': {'pretrained_path': None}}
    """
    if isinstance(value, dict):
        return {
            k: None if k in _START_WEIGHTS else _without_pretrained(v) for k, v in value.items()
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
