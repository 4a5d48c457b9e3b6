"""The model to analyse, from a run or checkpoint, an experiment config or a backbone name.

Each ``model_from_*`` returns the plain model (``task.net`` when the task has one) and the input
size ``(C, H, W)`` it expects, ready for :func:`visrep.analysis.model_stats.model_stats`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentParser
from torch import nn

from visrep.analysis.runs import LoadedRun, load_run
from visrep.analysis.samples import input_size as recorded_size
from visrep.configs import list_configs, read_config, resolve_config
from visrep.data.base import DataSpec
from visrep.errors import ConfigError, VisrepError
from visrep.models import create_backbone

__all__ = ["model_from_backbone", "model_from_config", "model_from_run"]

Size = tuple[int, int, int]


def _model_of(task: nn.Module) -> nn.Module:
    """The plain model of a task (``task.net``), or the task itself."""
    net = getattr(task, "net", None)
    return net if isinstance(net, nn.Module) else task


def model_from_run(
    source: str | Path, which: str = "best", input_size: Size | None = None
) -> tuple[nn.Module, Size, LoadedRun]:
    """The model of a run directory or checkpoint, sized by its recorded input size.

    Args:
        source: a run directory or a ``.ckpt`` file.
        which: ``best`` or ``last`` checkpoint of a run directory.
        input_size: ``(C, H, W)``; needed when the checkpoint records no input size.
    """
    loaded = load_run(source, which, with_data=False)
    size = tuple(input_size) if input_size is not None else recorded_size(loaded.task)
    if size is None:
        raise ConfigError(f"{loaded.checkpoint}: no input size recorded; pass --input_size C H W")
    return _model_of(loaded.task), size, loaded


def _instantiate(base: type, section: str, value: Any, path: str) -> tuple[Any, ArgumentParser]:
    """Parse one ``class_path``/``init_args`` section of a config: (namespace, its parser)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, section)
    try:
        return parser.parse_object({section: value}), parser
    except Exception as e:  # jsonargparse explains through every Union member; keep the reason
        m = re.search(r"class_path '([^']+)':\s*(.+)", str(e))
        reason = f"{m.group(1)}: {m.group(2)}" if m else str(e).splitlines()[0]
        raise ConfigError(f"{path}: bad {section} section ({reason})") from e


def model_from_config(
    config: str, input_size: Size | None = None, num_classes: int = 10
) -> tuple[nn.Module, Size]:
    """The model of an experiment config (a shipped name or a YAML path), sized by its data.

    When the data cannot be loaded here (a data set that is not on this machine), ``input_size``
    and ``num_classes`` size the model instead.
    """
    resolved = resolve_config(config)
    if resolved is None:
        raise ConfigError(
            f"--config {config!r} is neither a file nor a shipped config ({', '.join(list_configs())})"
        )
    raw = read_config(resolved)
    model_cfg = raw.get("model") or {"class_path": "visrep.tasks.ClassificationTask"}
    data_cfg = raw.get("data") or {"class_path": "visrep.data.DigitsDataModule"}
    try:
        dcfg, dparser = _instantiate(L.LightningDataModule, "data", data_cfg, resolved)
        dm = dparser.instantiate_classes(dcfg).data
        dm.setup()
        spec = dm.spec()
    except (VisrepError, OSError) as e:
        if input_size is None:
            reason = str(e).removeprefix(f"{resolved}: ")
            raise ConfigError(
                f"{resolved}: cannot load its data to size the model ({reason}); pass --input_size "
                "C H W and --num_classes"
            ) from e
        c = input_size[0]
        spec = DataSpec(family="classification", in_chans=c, image_size=tuple(input_size[1:]),
                        num_classes=num_classes, mean=(0.0,) * c, std=(1.0,) * c,
                        class_names=tuple(str(i) for i in range(num_classes)))  # fmt: skip
    mcfg, mparser = _instantiate(L.LightningModule, "model", model_cfg, resolved)
    try:
        task = mparser.instantiate_classes(mcfg).model
        task.setup_spec(spec)
    except VisrepError:
        raise
    except Exception as e:
        raise ConfigError(f"{resolved}: cannot build the model ({str(e).splitlines()[0]})") from e
    size = tuple(input_size) if input_size is not None else (spec.in_chans, *spec.image_size)
    return _model_of(task), size


def model_from_backbone(
    backbone: str,
    backbone_args: dict[str, Any] | None = None,
    in_chans: int | None = None,
    num_classes: int = 10,
    input_size: Size | None = None,
) -> tuple[nn.Module, Size]:
    """A registered (or timm) backbone built for ``input_size`` (default ``(in_chans, 32, 32)``)."""
    in_chans = in_chans or (input_size[0] if input_size else 3)
    if input_size is not None and input_size[0] != in_chans:
        raise ConfigError(
            f"--in_chans {in_chans} disagrees with --input_size {' '.join(map(str, input_size))}"
        )
    h, w = (input_size[1], input_size[2]) if input_size else (32, 32)
    try:
        model = create_backbone(
            backbone, in_chans=in_chans, num_classes=num_classes, img_size=(h, w),
            **(backbone_args or {}),
        )  # fmt: skip
    except VisrepError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError) as e:
        # an option out of range (a negative width): torch's message names no option
        args = ", ".join(f"{k}={v!r}" for k, v in (backbone_args or {}).items())
        raise ConfigError(
            f"cannot build --backbone {backbone} ({args or 'default options'}) for "
            f"{in_chans}x{h}x{w} inputs and {num_classes} classes: {str(e).splitlines()[0]}"
        ) from e
    return model, (in_chans, h, w)
