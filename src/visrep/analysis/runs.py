"""Reading a trained run back: its task (with weights), its data module and its directory.

Every analysis tool (inspect, explain, attack, stability) starts here, so they all accept a run
directory or a checkpoint path and never unpickle anything (``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import yaml
from jsonargparse import ArgumentParser

from visrep.errors import CheckpointError, ConfigError
from visrep.runs import RunDir
from visrep.tasks.base import read_task_checkpoint


@dataclass
class LoadedRun:
    """A trained task in eval mode, the data module it was trained on (if known) and its run dir."""

    task: L.LightningModule
    datamodule: L.LightningDataModule | None
    run: RunDir
    checkpoint: Path


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
    """Rebuild the task a checkpoint was trained with and load its weights (eval mode).

    Only visrep's task classes and components can be named by the file (see
    :func:`visrep.tasks.base.read_task_checkpoint`): loading never runs code from it.
    """
    return read_task_checkpoint(ckpt_path).build()


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
