"""Reading a trained run back: its task (with weights), its data module and its directory.

Every analysis tool (inspect, explain, attack, stability) starts here, so they all accept a run
directory or a checkpoint path and never unpickle anything (``weights_only=True``). A run
directory may come from anyone: its checkpoint names only visrep's task classes and components
(:func:`~visrep.tasks.checkpoint.read_task_checkpoint`), and the data section of its ``config.yaml``
only visrep's data modules, with options jsonargparse cannot turn into an import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import yaml
from jsonargparse import ArgumentParser

from visrep.errors import CheckpointError, ConfigError, VisrepError, one_line, visrep_cause
from visrep.runs import RunDir
from visrep.tasks.base import is_plain
from visrep.tasks.checkpoint import check_saved_options, read_task_checkpoint


@dataclass
class LoadedRun:
    """A trained task in eval mode, the data module it was trained on (if known) and its run dir."""

    task: L.LightningModule
    datamodule: L.LightningDataModule | None
    run: RunDir
    checkpoint: Path


def resolve_checkpoint(run_or_ckpt: str | Path, which: str = "best") -> tuple[Path, RunDir]:
    """``RUN_DIR`` -> ``RUN_DIR/checkpoints/<which>.ckpt``; a ``.ckpt`` path is used as is.

    ``best`` of a run that keeps no ``best.ckpt`` (a task without a validation metric to select
    on, e.g. a GAN without a feature extractor, a CycleGAN) is its ``last.ckpt``.
    """
    p = Path(run_or_ckpt)
    if p.is_dir():
        ckpt = RunDir(p).checkpoints / f"{which}.ckpt"
        if which == "best" and not ckpt.is_file():
            ckpt = RunDir(p).trained_ckpt() or ckpt
        if not ckpt.is_file():
            raise CheckpointError(f"run directory {str(p)!r} has no checkpoints/{which}.ckpt")
        return ckpt, RunDir(p)
    if not p.is_file():
        raise CheckpointError(f"{str(p)!r} is neither a run directory nor a checkpoint file")
    root = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return p, RunDir(root)


def load_task(ckpt_path: str | Path) -> L.LightningModule:
    """Rebuild the task a checkpoint was trained with and load its weights (eval mode).

    Only visrep's task classes and components can be named by the file (see
    :func:`visrep.tasks.checkpoint.read_task_checkpoint`): loading never runs code from it.
    """
    return read_task_checkpoint(ckpt_path).build()


def saved_data_section(run: RunDir) -> dict[str, Any] | None:
    """The checked ``data`` section (``class_path``, ``init_args``) of ``run/config.yaml``;
    None if the run has no config or no data section. Refused (``ConfigError``) unless it names
    one of visrep's data modules with plain options: reading a run never runs code from it."""
    cfg_path = run.root / "config.yaml"
    if not cfg_path.is_file():
        return None
    try:
        saved = yaml.safe_load(cfg_path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{cfg_path}: not a readable YAML config ({type(e).__name__})") from e
    data_cfg = saved.get("data") if isinstance(saved, dict) else None
    if not data_cfg:
        return None
    return _checked_data_section(data_cfg, str(cfg_path))


def load_datamodule(run: RunDir) -> L.LightningDataModule | None:
    """The data module of ``run/config.yaml`` (None if the run has no config)."""
    data_cfg = saved_data_section(run)
    if data_cfg is None:
        return None
    return build_datamodule(data_cfg, str(run.root / "config.yaml"))


def build_datamodule(data_cfg: dict[str, Any], source: str) -> L.LightningDataModule:
    """The data module of a ``data`` section (``class_path``, ``init_args``) read from ``source``
    (a run's ``config.yaml`` or an experiment config), checked as :func:`saved_data_section`
    checks a run's: only visrep's data modules, with plain options."""
    data_cfg = _checked_data_section(data_cfg, source)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    try:
        cfg = parser.parse_object({"data": data_cfg})
        return parser.instantiate_classes(cfg).data
    except VisrepError:
        raise
    except Exception as e:  # jsonargparse wraps the cause; surface one line
        cause = visrep_cause(e)
        if cause is not None:  # e.g. a data folder given relative to where the run was started
            relative = any(
                isinstance(v, str) and v.startswith(".")
                for v in (data_cfg.get("init_args") or {}).values()
            )
            where = (
                f" (relative paths count from the current folder, {Path.cwd()})" if relative else ""
            )
            raise ConfigError(f"{source}: cannot rebuild the data module: {cause}{where}") from e
        hint = (  # a run's saved config, not an experiment config being read
            "; was the run written by another version of visrep?"
            if Path(source).name == "config.yaml"
            else ""
        )
        raise ConfigError(
            f"{source}: cannot rebuild the data module ({one_line(str(e))[:300]}){hint}"
        ) from e


def _checked_data_section(data: Any, source: str) -> dict[str, Any]:
    """The ``data`` section of a run's config, refused unless it names a data module of visrep's
    own and options that jsonargparse cannot turn into an import (a run directory, like a
    checkpoint, may come from anyone: reading it must not run code)."""
    if not isinstance(data, dict) or not isinstance(data.get("class_path"), str):
        raise ConfigError(f"{source}: its data section is not a class_path/init_args mapping")
    path, args = data["class_path"], data.get("init_args") or {}
    module, _, name = path.rpartition(".")
    cls = None
    if module == "visrep" or module.startswith("visrep."):  # visrep's own code may be imported
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            cls = None
    if not (inspect.isclass(cls) and issubclass(cls, L.LightningDataModule)):
        raise ConfigError(
            f"{source}: data class_path {path!r} is not one of visrep's data modules; refused"
        )
    if not isinstance(args, dict) or set(data) - {"class_path", "init_args"}:
        raise ConfigError(f"{source}: its data section has unexpected entries; refused")
    _check_typed(cls.__init__, args, "data", source)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}


_PLAIN_TYPES = (str, int, float, bool, type(None), Path)


def _import_visrep_modules(value: Any) -> None:
    """Import the visrep modules that nested ``class_path`` entries name (visrep's own code
    only), so that the check finds their classes; anything else is left to the check."""
    if isinstance(value, list | tuple):
        for v in value:
            _import_visrep_modules(v)
    elif isinstance(value, dict):
        module = str(value.get("class_path", "")).rpartition(".")[0]
        if module.startswith("visrep."):
            with contextlib.suppress(ImportError):  # then refused by the check
                importlib.import_module(module)
        for v in value.values():
            _import_visrep_modules(v)


def _plain_hint(hint: Any) -> bool:
    """Whether jsonargparse parses values of this type without importing or reading anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType, list, tuple, dict, set):
        return all(a is Ellipsis or _plain_hint(a) for a in args)
    return hint in _PLAIN_TYPES


def _check_typed(fn: Any, values: dict[str, Any], where: str, source: str) -> None:
    """Options of ``fn`` (a constructor or a dataclass) checked against its type hints: plain
    types take plain values, config dataclasses mappings (checked the same way), anything else
    the checks of a checkpoint's options."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: the strictest checks
        hints = {}
    for key, value in values.items():
        hint, at = hints.get(key), f"{where}.{key}"
        members = typing.get_args(hint) if typing.get_origin(hint) in (
            typing.Union, types.UnionType) else (hint,)  # fmt: skip
        configs = [m for m in members if dataclasses.is_dataclass(m) and isinstance(m, type)]
        if hint is not None and _plain_hint(hint):
            if not is_plain(value):
                raise ConfigError(f"{source}: {at} is not plain data; refused")
        elif configs:  # jsonargparse would read a string as a class or a config file
            if isinstance(value, dict):
                _check_typed(configs[0], value, at, source)
            elif value is not None:
                raise ConfigError(f"{source}: {at} must be a mapping of options; refused")
        else:
            _import_visrep_modules(value)
            try:
                check_saved_options(value, at, source)
            except CheckpointError as e:
                raise ConfigError(str(e)) from None


def load_run(run_or_ckpt: str | Path, which: str = "best", with_data: bool = True) -> LoadedRun:
    """Load a run directory (or a checkpoint inside one) for analysis."""
    ckpt, run = resolve_checkpoint(run_or_ckpt, which)
    dm = load_datamodule(run) if with_data else None
    return LoadedRun(load_task(ckpt), dm, run, ckpt)


def spread_indices(size: int, n: int) -> list[int]:
    """At most ``n`` indices spread evenly over ``range(size)``, first and last included.

    Analysis tools take their samples this way, not the first ``n``: class-sorted splits (image
    folders) would otherwise give a single class.

    >>> spread_indices(10, 4), spread_indices(3, 8)
    ([0, 3, 6, 9], [0, 1, 2])
    """
    return np.unique(np.linspace(0, size - 1, min(n, size)).round().astype(int)).tolist()
