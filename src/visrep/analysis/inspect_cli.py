"""``visrep inspect model|stability|compare``: look inside models and runs.

``model`` prints the per-layer table of :func:`visrep.analysis.model_stats.model_stats` (output
shapes, receptive fields, parameters, MACs/FLOPs, activation memory; seed 002) for a run, a
checkpoint, a shipped config or a bare backbone. ``stability`` and ``compare`` (NAIS-Net, seed
000) live in :mod:`visrep.analysis.stability_cli`; this module hands their arguments over as is.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import lightning as L
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from visrep.analysis.model_stats import ModelStats, model_stats
from visrep.analysis.runs import load_run
from visrep.configs import list_configs, resolve_config
from visrep.errors import ConfigError, VisrepError
from visrep.models import create_backbone
from visrep.runs import RunDir

# subcommand -> (function of visrep.analysis.stability_cli, one-line help)
DELEGATED = {
    "stability": (
        "main_stability",
        "NAIS-Net stability of a run: constraint margins, Jacobian spectra, trajectories, depth",
    ),
    "compare": (
        "main_compare",
        "runs side by side: accuracy, generalisation gap, params, FLOPs, depth, noise robustness",
    ),
}
_DELEGATE_MODULE = "visrep.analysis.stability_cli"
_MODEL_HELP = "per-layer table of a model: shapes, receptive fields, params, MACs/FLOPs, memory"


def build_model_parser() -> ArgumentParser:
    p = ArgumentParser(prog="visrep inspect model", description=_MODEL_HELP, exit_on_error=False)
    p.add_argument("source", nargs="?", type=str | None, default=None,
                   help="a run directory or a checkpoint (.ckpt)")  # fmt: skip
    p.add_argument("--config", type=str | None, default=None,
                   help=f"a shipped config ({', '.join(list_configs())}) or a YAML path")  # fmt: skip
    p.add_argument(
        "--backbone", type=str | None, default=None, help="a backbone name (resnet18 ...)"
    )
    p.add_argument("--backbone_args", type=dict | None, default=None,
                   help='the backbone\'s own options, e.g. \'{"width": 64}\'')  # fmt: skip
    p.add_argument("--in_chans", type=int | None, default=None,
                   help="input channels of --backbone (default: C of --input_size, else 3)")  # fmt: skip
    p.add_argument("--num_classes", type=int, default=10,
                   help="classes of --backbone (or of a config whose data cannot be loaded)")  # fmt: skip
    p.add_argument("--input_size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="input size (default: from the run or config data; 32x32 for --backbone)")  # fmt: skip
    p.add_argument("--batch_size", type=int, default=1, help="batch of the measured forward pass")
    p.add_argument(
        "--which", type=Literal["best", "last"], default="best", help="checkpoint of a run"
    )
    p.add_argument("--csv", type=str | None, default=None, help="also write the table as CSV here")
    p.add_argument("--json", type=str | None, default=None, help="... as JSON (rows and totals)")
    p.add_argument("--markdown", type=str | None, default=None, help="... as a Markdown table")
    return p


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep inspect", description=__doc__.splitlines()[0], exit_on_error=False
    )
    sub = p.add_subcommands(required=True, dest="subcommand")
    sub.add_subcommand("model", build_model_parser(), help=_MODEL_HELP)
    for name, (_, help_) in DELEGATED.items():
        # Listed for --help only: their options are parsed by stability_cli itself.
        sub.add_subcommand(
            name, ArgumentParser(prog=f"visrep inspect {name}", exit_on_error=False), help=help_
        )
    return p


def _delegate(name: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(_DELEGATE_MODULE)
    except ModuleNotFoundError as e:
        if e.name != _DELEGATE_MODULE:
            raise
        raise ConfigError(
            f"`visrep inspect {name}` needs {_DELEGATE_MODULE}, which this installation lacks"
        ) from e
    return int(getattr(module, DELEGATED[name][0])(argv) or 0)


# -- sources ----------------------------------------------------------------------------------------
def _model_of(task: nn.Module) -> nn.Module:
    """The plain model of a task (``task.net``), or the task itself."""
    net = getattr(task, "net", None)
    return net if isinstance(net, nn.Module) else task


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


def _from_config(path: str, cfg: Any) -> tuple[nn.Module, tuple[int, int, int]]:
    """The model of an experiment config, sized by its data (or --input_size/--num_classes)."""
    resolved = resolve_config(path)
    if resolved is None:
        raise ConfigError(
            f"--config {path!r} is neither a file nor a shipped config ({', '.join(list_configs())})"
        )
    raw = yaml.safe_load(Path(resolved).read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{resolved}: expected a mapping with model/data sections")
    model_cfg = raw.get("model") or {"class_path": "visrep.tasks.ClassificationTask"}
    data_cfg = raw.get("data") or {"class_path": "visrep.data.DigitsDataModule"}
    try:
        dcfg, dparser = _instantiate(L.LightningDataModule, "data", data_cfg, resolved)
        dm = dparser.instantiate_classes(dcfg).data
        dm.setup()
        facts = dm.describe()
    except (VisrepError, OSError) as e:
        if cfg.input_size is None:
            reason = str(e).removeprefix(f"{resolved}: ")
            raise ConfigError(
                f"{resolved}: cannot load its data to size the model ({reason}); pass --input_size "
                "C H W and --num_classes"
            ) from e
        c = cfg.input_size[0]
        facts = {"num_classes": cfg.num_classes, "in_chans": c, "image_size": cfg.input_size[1:],
                 "mean": [0.0] * c, "std": [1.0] * c,
                 "class_names": [str(i) for i in range(cfg.num_classes)]}  # fmt: skip
    mcfg, mparser = _instantiate(L.LightningModule, "model", model_cfg, resolved)
    init = mcfg.model.get("init_args")
    for k, v in facts.items():
        if init is not None and k in init and init[k] is None:
            init[k] = v
    try:
        task = mparser.instantiate_classes(mcfg).model
    except VisrepError:
        raise
    except Exception as e:
        raise ConfigError(f"{resolved}: cannot build the model ({str(e).splitlines()[0]})") from e
    return _model_of(task), (facts["in_chans"], *facts["image_size"])


def _from_backbone(cfg: Any) -> tuple[nn.Module, tuple[int, int, int]]:
    size = cfg.input_size
    in_chans = cfg.in_chans or (size[0] if size else 3)
    if size is not None and size[0] != in_chans:
        raise ConfigError(
            f"--in_chans {in_chans} disagrees with --input_size {' '.join(map(str, size))}"
        )
    h, w = (size[1], size[2]) if size else (32, 32)
    model = create_backbone(
        cfg.backbone, in_chans=in_chans, num_classes=cfg.num_classes, img_size=(h, w),
        **(cfg.backbone_args or {}),
    )  # fmt: skip
    return model, (in_chans, h, w)


def _write(path: str, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    RunDir(p.parent).write_text(p, text)


def _console() -> Any:
    from rich.console import Console

    # A pipe or a test gets a wide table rather than rich's 80-column default.
    wide = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 0)) or 200
    return Console(width=wide)


def run_model(cfg: Any) -> ModelStats:
    """``visrep inspect model``: measure, print and write the table."""
    sources = [n for n in ("source", "config", "backbone") if getattr(cfg, n) is not None]
    if len(sources) != 1:
        raise ConfigError(
            "visrep inspect model needs exactly one of: a run directory or checkpoint, --config "
            f"NAME_OR_PATH, --backbone NAME (got {', '.join(sources) or 'none'})"
        )
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.input_size is not None and min(cfg.input_size) < 1:
        raise ConfigError(
            f"--input_size must be positive, got {' '.join(map(str, cfg.input_size))}"
        )
    run_root = None
    if cfg.source is not None:
        loaded = load_run(cfg.source, cfg.which, with_data=False)
        model = _model_of(loaded.task)
        hp = loaded.task.hparams
        if hp.get("in_chans") is None or hp.get("image_size") is None:
            if cfg.input_size is None:
                raise ConfigError(
                    f"{loaded.checkpoint}: no input size recorded; pass --input_size C H W"
                )
            size = tuple(cfg.input_size)
        else:
            size = (hp["in_chans"], *hp["image_size"])
        if Path(cfg.source).is_dir() or loaded.checkpoint.parent == loaded.run.checkpoints:
            run_root = loaded.run
    elif cfg.config is not None:
        model, size = _from_config(cfg.config, cfg)
    else:
        model, size = _from_backbone(cfg)
    size = tuple(cfg.input_size) if cfg.input_size is not None else size
    stats = model_stats(model, (cfg.batch_size, *size))
    stats.print(_console())
    print(
        f"params {stats.total_params:,} (trainable {stats.trainable_params:,}), "
        f"MACs {stats.total_macs:,}, FLOPs {stats.total_flops:,}, input {'x'.join(map(str, stats.input_shape))}"
    )
    outputs = {"csv": stats.to_csv, "json": stats.to_json, "markdown": stats.to_markdown}
    for key, render in outputs.items():
        if getattr(cfg, key):
            _write(getattr(cfg, key), render())
            print(f"wrote {getattr(cfg, key)}")
    if run_root is not None:
        run_root.write_text(run_root.root / "model_stats.csv", stats.to_csv())
        print(f"wrote {run_root.root / 'model_stats.csv'}")
    return stats


def main(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    try:
        cfg = build_parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    run_model(cfg.model)
    return 0
