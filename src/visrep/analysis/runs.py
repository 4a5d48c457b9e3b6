"""Reading a trained run back: its task (with weights), its data module and its directory.

Every analysis tool (inspect, explain, attack, stability) starts here, so they all accept a run
directory or a checkpoint path and never unpickle anything (``weights_only=True``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml
from jsonargparse import ArgumentParser

from visrep.errors import CheckpointError, ConfigError
from visrep.runs import RunDir, load_checkpoint


@dataclass
class LoadedRun:
    """A trained task in eval mode, the data module it was trained on (if known) and its run dir."""

    task: L.LightningModule
    datamodule: L.LightningDataModule | None
    run: RunDir
    checkpoint: Path


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"checkpoint names class {path!r}, which cannot be imported") from e


def resolve_checkpoint(run_or_ckpt: str | Path, which: str = "best") -> tuple[Path, RunDir]:
    """``RUN_DIR`` -> ``RUN_DIR/checkpoints/<which>.ckpt``; a ``.ckpt`` path is used as is."""
    p = Path(run_or_ckpt)
    if p.is_dir():
        ckpt = RunDir(p).checkpoints / f"{which}.ckpt"
        if not ckpt.is_file():
            raise CheckpointError(f"run directory {str(p)!r} has no checkpoints/{which}.ckpt")
        return ckpt, RunDir(p)
    if not p.is_file():
        raise CheckpointError(f"{str(p)!r} is neither a run directory nor a checkpoint file")
    root = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return p, RunDir(root)


def load_task(ckpt_path: str | Path) -> L.LightningModule:
    """Rebuild the task class recorded in a checkpoint and load its weights (eval mode)."""
    ckpt = load_checkpoint(ckpt_path)
    hp: dict[str, Any] = dict(ckpt.get("hyper_parameters") or {})
    hp.pop("_instantiator", None)
    cls = _import(hp.pop("_class_path", "visrep.tasks.ClassificationTask"))
    try:
        task = cls(**hp)
    except TypeError as e:
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r}: hyper-parameters do not fit {cls.__name__} ({e})"
        ) from e
    task.load_state_dict(ckpt["state_dict"])
    return task.eval()


def load_datamodule(run: RunDir) -> L.LightningDataModule | None:
    """The data module of ``run/config.yaml`` (None if the run has no config)."""
    cfg_path = run.root / "config.yaml"
    if not cfg_path.is_file():
        return None
    data_cfg = (yaml.safe_load(cfg_path.read_text()) or {}).get("data")
    if not data_cfg:
        return None
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    try:
        cfg = parser.parse_object({"data": data_cfg})
        return parser.instantiate_classes(cfg).data
    except Exception as e:  # jsonargparse wraps the cause; surface one line
        raise ConfigError(
            f"{cfg_path}: cannot rebuild the data module ({str(e).splitlines()[0]})"
        ) from e


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
