"""The single ``visrep`` entry point.

``visrep fit|validate|test|predict`` run through LightningCLI (jsonargparse): ``--config
NAME_OR_PATH``, dotted overrides, ``--print_config``. Tool commands (``visrep report ...``) use
jsonargparse parsers too, so ``--help`` and ``--config`` behave alike everywhere. User mistakes
end with one line ``error: ...`` and exit code 2.
"""

# ruff: noqa: E402 (the user's PYTORCH_NVML_BASED_CUDA_CHECK is read before Lightning's import)
from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import re
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

# Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1: the value before it (the user's, unless
# Lightning was imported before this module), restored by _restore_nvml_check below.
_NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
_USER_NVML_CHECK = os.environ.get(_NVML_CHECK)

import torch
from jsonargparse import ActionYesNo, ArgumentError, DefaultHelpFormatter
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from visrep.cli.argv import (
    checkpoint_defaults,
    class_defaults,
    null_options,
    predict_defaults,
    resolve_configs,
)
from visrep.configs import list_configs, read_config
from visrep.data.base import DataSpec
from visrep.errors import CheckpointError, ConfigError, VisrepError, one_line, visrep_cause
from visrep.models.registry import BACKBONES
from visrep.runs import RunDir, RunLock, SafeCheckpointIO
from visrep.tasks.base import Task
from visrep.tasks.checkpoint import read_task_checkpoint
from visrep.trainer.callbacks import MetricsFile, PredictionWriter, RandomState, RunArtifacts


def _restore_nvml_check(user_value: str | None) -> None:
    """Give ``PYTORCH_NVML_BASED_CUDA_CHECK`` back its value from before Lightning's import (unset
    if it had none) on a machine without a visible CUDA device.

    Lightning sets it so that ``torch.cuda.is_available()`` asks NVML instead of initialising
    CUDA, which keeps a process forkable for DDP on GPUs. But every optimiser step calls that
    check (``Optimizer._accelerator_graph_capture_health_check``), and without an NVML library
    each call tries to load it and fails: about 0.07 ms of CPU per ``Adam.step`` (0.08 -> 0.15 ms
    on a small model, measured), a few percent of a small model's training step. With no CUDA
    device nothing can be forked with CUDA initialised, and the plain check (the CUDA runtime's
    device count, cached by torch) answers the same. The device count here is NVML's while the
    variable is set, as Lightning itself counts; with a device the variable stays as Lightning
    set it.
    """
    if os.environ.get(_NVML_CHECK) == user_value or torch.cuda.device_count() > 0:
        return
    if user_value is None:
        os.environ.pop(_NVML_CHECK, None)
    else:
        os.environ[_NVML_CHECK] = user_value


_restore_nvml_check(_USER_NVML_CHECK)

TRAIN_COMMANDS = {
    "fit": "train a model (then validate and test its best checkpoint)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "predict with a checkpoint: predictions.csv (and per-sample files, e.g. masks)",
}
# name -> (module with main(argv), one-line description)
TOOL_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": (
        "visrep.commands.inspect",
        "per-layer shapes, receptive fields, params, FLOPs; NAIS-Net stability; compare runs; "
        "backprop as message passing",
    ),
    "explain": (
        "visrep.commands.explain",
        "Grad-CAM, occlusion, saliency, neighbours, PCA / t-SNE of a run",
    ),
    "embed": ("visrep.commands.embed", "embeddings of a run's data split or images, to .npz"),
    "attack": ("visrep.commands.attack", "FGSM, PGD and DeepFool robustness of a run"),
    "events": (
        "visrep.commands.events",
        "event files: info, show a representation, convert, simulate",
    ),
    "report": ("visrep.commands.report", "rebuild the plots and report.html of a run directory"),
    "data": (
        "visrep.commands.data",
        "detection data sets: convert VOC / COCO / YOLO / labelme, info",
    ),
    "generate": ("visrep.commands.generate", "decode prior samples of a VAE run: PNG grid, .npz"),
    "points": (
        "visrep.commands.points",
        "point-cloud files: info, show a 3-D scatter, label a scan from 3-D boxes, baselines",
    ),
    "video": ("visrep.commands.video", "video files: info, show a clip as a frame strip or GIF"),
    "baseline": ("visrep.commands.baseline", "k-NN / linear on pixels, BoVW, Fisher, run features"),
    "features": ("visrep.commands.features", "image keypoints and descriptors: LIFT, SIFT, ORB"),
}


# Run-directory locks this process holds; released when main() returns.
_LOCKS: list[RunLock] = []
# Run directories this process created (with the first folder it had to create above them);
# removed again when the command fails before writing into them.
_CREATED: list[tuple[Path, Path]] = []


class _HeldLogs(logging.Filter):
    """Lightning's info lines ("Seed set to 0", "GPU available: ..."), held until the run starts:
    a mistake found while setting up prints its one ``error:`` line alone."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.handlers: list[logging.Handler] = []

    def start(self) -> None:
        for name in ("lightning.pytorch", "lightning.fabric"):
            log = logging.getLogger(name)
            handlers = log.handlers if log.handlers or not log.propagate else logging.root.handlers
            for h in handlers:
                if self not in h.filters:
                    h.addFilter(self)
                    self.handlers.append(h)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not record.name.startswith("lightning"):
            return True
        if not any(r is record for r in self.records):
            self.records.append(record)
        return False

    def stop(self, show: bool) -> None:
        """Stop holding; print what was held when ``show`` (the run started or ended well)."""
        for h in self.handlers:
            h.removeFilter(self)
        self.handlers = []
        records, self.records = self.records, []
        for r in records if show else ():
            logging.getLogger(r.name).handle(r)


_HELD = _HeldLogs()


class _RunStarted(Callback):
    """Prints the held log lines once a stage starts (setup went well)."""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        _HELD.stop(show=True)

    on_validation_start = on_test_start = on_predict_start = on_fit_start


class _SaveConfig(SaveConfigCallback):
    """Saves ``config.yaml`` for fit; other subcommands save ``config.<subcommand>.yaml`` beside it."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        name = getattr(stage, "value", stage)
        if name != "fit":
            self.config_filename = f"config.{name}.yaml"
        super().setup(trainer, pl_module, stage)


class VisrepCLI(LightningCLI):
    """LightningCLI with visrep's run directory, checkpointing and defaults (digits + small CNN)."""

    def __init__(self, args: list[str] | None) -> None:
        # allow_abbrev=False: a typo such as --trainer.max_epoch must be an error, not a prefix match
        no_exit = {"exit_on_error": False, "allow_abbrev": False}
        super().__init__(
            model_class=None,
            datamodule_class=None,
            save_config_callback=_SaveConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "exit_on_error": False,
                "allow_abbrev": False,
                "formatter_class": _HelpFormatter,  # subcommands inherit it
                **{c: dict(no_exit) for c in TRAIN_COMMANDS},
                "fit": {**no_exit, "epilog": _catalogue()},
            },
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Run directory (default: runs/<config>-<timestamp>, or the checkpoint's run).",
        )
        parser.add_argument(
            "--resume",
            action=ActionYesNo,
            default=False,
            help="Continue the run in --run_dir from its checkpoints/last.ckpt.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, validate and test the best checkpoint.",
        )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        self._swapped_backbone_from_defaults(self._argv)

    def _swapped_backbone_from_defaults(self, argv: list[str]) -> None:
        """``--model.backbone NAME`` on the command line, over a config with another backbone,
        starts from NAME's defaults: jsonargparse would carry the config's options that NAME
        also has (a small CNN's ``channels`` into a NAIS-Net). Options given on the command line
        (``--model.backbone.OPTION``) stay."""
        given = [
            a.split("=", 1)[1] if "=" in a else argv[i + 1]
            for i, a in enumerate(argv[:-1])
            if a.split("=", 1)[0] in ("--model.backbone", "--model.init_args.backbone")
        ]
        given += [a.split("=", 1)[1] for a in argv[-1:] if a.startswith("--model.backbone=")]
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        spec = cfg.get("model.init_args.backbone") if given else None
        if spec is None or not hasattr(spec, "class_path"):
            return
        before = None
        for path in cfg.get("config") or []:
            model = read_config(str(path)).get("model") or {}
            b = (model.get("init_args") or model).get("backbone")
            before = (b.get("class_path") if isinstance(b, dict) else b) or before
        new_cls = BACKBONES.resolve(spec.class_path)
        if before is None or BACKBONES.resolve(str(before)) is new_cls:
            return
        explicit = {
            a.split("=", 1)[0].rsplit(".", 1)[-1]
            for a in argv
            if a.startswith(("--model.backbone.", "--model.init_args.backbone."))
        }
        for k, p in BACKBONES.options(new_cls.__name__).items():
            if k not in explicit and spec.init_args is not None and k in spec.init_args:
                spec.init_args[k] = p.default

    def _parse_ckpt_path(self) -> None:
        # Lightning's version imports whatever class path a checkpoint names; ours reads the
        # checkpoint safely and only accepts visrep's task classes and registered components.
        self._ckpt_spec = None
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt or ckpt in ("best", "last"):
            return
        saved = read_task_checkpoint(ckpt)
        given = self._model_options_given(sub, saved.class_path)
        model = {"class_path": saved.class_path, "init_args": saved.init_args}
        self.config = self.parser.parse_object({sub: {"model": model}}, self.config)
        args = self.config[sub].model.init_args
        for path, value, whole in given:
            top, _, rest = path.partition(".")
            if rest and args.get(top) is None:  # nothing saved to refine: the parsed section
                args[top] = whole
            else:
                args[path] = value
        self._ckpt_spec = saved.data_spec

    def _model_options_given(self, sub: str, class_path: str) -> list[tuple[str, Any, Any]]:
        """The task options named on the command line (``--model.crf.window 9``) as (dotted path,
        parsed value, parsed value of its top-level option): they win over the checkpoint's
        saved ones, one dotted path at a time (the checkpoint's other CRF options stay), so
        evaluation-time options (a CRF, sliding-window inference) apply to a trained checkpoint.
        Options that change the network are then refused by the state-dict check."""
        model = self.config[sub].get("model")
        same = (
            model is not None
            and str(model.get("class_path")).split(".")[-1] == class_path.split(".")[-1]
        )
        if not same or not model.get("init_args"):  # another task's options: nothing to keep
            return []
        given = []
        for a in getattr(self, "_argv", []):
            if not a.startswith("--model."):
                continue
            path = a.split("=")[0].removeprefix("--model.").removeprefix("init_args.")
            top, _, rest = path.partition(".")
            # a nested class's options live under init_args (--model.model.width)
            for p in (path, f"{top}.init_args.{rest}" if rest else path):
                try:
                    given.append((p, model.init_args[p], model.init_args[top]))
                    break
                except (KeyError, TypeError, AttributeError):
                    continue
        return given

    # -- run directory -----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub]
        run_dir = cfg.get("run_dir")
        ckpt = cfg.get("ckpt_path")
        if run_dir is None and sub != "fit" and ckpt and Path(ckpt).parent.name == "checkpoints":
            run_dir = str(Path(ckpt).parent.parent)
        if run_dir is None:
            if cfg.get("resume"):
                raise ConfigError("--resume needs --run_dir (the run to continue)")
            configs = cfg.get("config") or []
            name = Path(str(configs[-1])).stem if configs else "run"
            run_dir = str(Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}")
        for name, least in _TRAINER_MINIMUM.items():
            value = cfg.trainer.get(name)
            if isinstance(value, int | float) and not value >= least:
                raise ConfigError(f"--trainer.{name} must be >= {least}, got {value}")
        run = RunDir(run_dir)
        if run.root.exists() and not run.root.is_dir():
            raise ConfigError(f"--run_dir {run_dir!r} is a file; expected a directory")
        if rank_zero_only.rank == 0:  # DDP's other ranks run this too; one lock per run
            # first the lock: a second process started into the same run is told it is in use
            new = [p for p in (run.root, *run.root.parents) if not p.exists()]
            _LOCKS.append(run.lock().acquire())
            if new:
                _CREATED.append((run.root, new[-1]))
        if sub == "fit":
            if cfg.get("resume"):
                if not run.last_ckpt.is_file():
                    raise CheckpointError(
                        f"--resume: {run.last_ckpt} does not exist (nothing to resume)"
                    )
                read_task_checkpoint(run.last_ckpt)  # the same checks as any --ckpt_path
                cfg.ckpt_path = str(run.last_ckpt)
            elif run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
                raise ConfigError(
                    f"run directory {run_dir!r} already holds checkpoints; pass --resume to continue it "
                    "or choose another --run_dir"
                )
        cfg.run_dir = run_dir
        cfg.trainer.default_root_dir = run_dir
        if cfg.trainer.get("logger") is None:
            cfg.trainer.logger = False
        self.run = run
        if rank_zero_only.rank == 0:
            run.remove_stale_temp_files()

    def after_instantiate_classes(self) -> None:
        spec = getattr(self, "_ckpt_spec", None)
        dm_spec = getattr(self.datamodule, "spec", None)
        if spec and dm_spec is None and isinstance(self.model, Task):
            # e.g. predict on image files: the data cannot say what the model expects
            self.model.setup_spec(DataSpec.from_dict(spec))

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        # the task's (an instance may override its class's: DetectionTask for R-CNN)
        monitor = getattr(self.model, "monitor", ("val/loss", "min"))
        # Saved when the training epoch ends, after MetricsFile wrote the epoch's row (Lightning
        # runs checkpoint callbacks last): a kill between the two repeats the epoch on resume
        # instead of losing its row.
        common = {
            "dirpath": self.run.checkpoints,
            "save_top_k": 1,
            "enable_version_counter": False,
            "save_on_train_epoch_end": True,
        }
        ours: list[Any] = []
        if monitor is not None:
            # best.ckpt comes first: trainer.checkpoint_callback (and ckpt_path="best") is this one.
            metric, mode = monitor
            ours.append(ModelCheckpoint(filename="best", monitor=metric, mode=mode, **common))
        ours += [
            # last.ckpt after every epoch. Not save_last=True: since Lightning 2.6 that writes only
            # when a top-k checkpoint was written in the same step, so a kill could lose epochs.
            ModelCheckpoint(filename="last", monitor=None, **common),
            MetricsFile(self.run.root),
            RunArtifacts(self.run.root),
            RandomState(),
            _RunStarted(),
        ]
        if self.subcommand == "predict":
            ours.append(PredictionWriter(self.run.root / "predictions.csv"))
        config = dict(config)
        config["plugins"] = [SafeCheckpointIO(), *(config.get("plugins") or [])]
        try:
            return super()._instantiate_trainer(config, [*callbacks, *ours])
        except (MisconfigurationException, ValueError, TypeError) as e:
            raise ConfigError(_trainer_message(str(e))) from e

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit", True):
            return
        has_best = bool(
            self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path
        )
        ckpt = "best" if has_best else None
        self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)

    def before_predict(self) -> None:
        if self.trainer.world_size > 1:
            raise ConfigError(
                "visrep predict runs on one device: drop --trainer.devices/--trainer.strategy"
            )


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with the epilog (the backbone catalogue) laid out as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def _catalogue() -> str:
    """Every registered backbone and its options with their types, for ``visrep fit --help``."""
    lines = [
        "backbones (--model.backbone NAME, then --model.backbone.OPTION VALUE; "
        "--model.backbone.help NAME for details):"
    ]
    for name in BACKBONES.names():
        opts = []
        for p in BACKBONES.options(name).values():
            kind = (
                p.annotation
                if isinstance(p.annotation, str)
                else getattr(p.annotation, "__name__", str(p.annotation))
            )
            opts.append(f"{p.name}: {kind} = {p.default!r}")
        lines.append(f"  {name}: " + ("; ".join(opts) or "no options"))
    return "\n".join(lines) + "\n"


# Trainer options Lightning does not check (0 divides by zero; a negative clipping norm flips
# the gradients): the least value of each.
_TRAINER_MINIMUM = {
    "gradient_clip_val": 0,
    "accumulate_grad_batches": 1,
    "check_val_every_n_epoch": 1,
    "log_every_n_steps": 1,
    "num_nodes": 1,
    "min_epochs": 0,
    "min_steps": 0,
    "max_steps": -1,
    "num_sanity_val_steps": -1,
    "reload_dataloaders_every_n_epochs": 0,
}


def _trainer_message(text: str) -> str:
    """Lightning's refusal of a Trainer argument, prefixed with the option it names."""
    names = [n for n in inspect.signature(Trainer.__init__).parameters if n != "self"]
    named = [n for n in names if re.search(rf"\b{n}\b", text)]
    return f"--trainer.{named[0]}: {text}" if named else f"--trainer: {text}"


def _explain(text: str) -> str:
    """jsonargparse's report of a bad registered-component option, said in one clause."""
    flat = re.sub(r"\s+", " ", text)
    m = re.search(r"Expected a path but (\S*) either not accessible", flat)
    key = re.search(r'Parser key "(backbone)"', flat)
    if m and key:
        try:
            BACKBONES.get(m.group(1))
        except ConfigError as e:
            return f"model.{key.group(1)}: {e}"
    m = re.search(r"Option '([^']+)' is not accepted.*?class_path='([^']+)'", flat)
    if m:
        name = m.group(2).rsplit(".", 1)[-1]
        if name in BACKBONES.names():
            accepted = ", ".join(BACKBONES.options(name)) or "none"
            return f"model.backbone ({name}) has no option {m.group(1)!r}; accepted: {accepted}"
    return text


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        # the second notice: a task's own callbacks (configure_callbacks) are re-added per stage
        return "litlogger" not in msg and "will override existing callbacks" not in msg


def _help() -> str:
    width = max(map(len, [*TRAIN_COMMANDS, *TOOL_COMMANDS])) + 2
    lines = [
        "usage: visrep <command> [--config NAME_OR_PATH] [--section.option VALUE ...]",
        "",
        "Visual representation learning: train, evaluate and inspect models.",
        "",
        "training and evaluation (LightningCLI; `visrep <command> --help` for every option):",
        *[f"  {c:<{width}}{d}" for c, d in TRAIN_COMMANDS.items()],
        "",
        "tools:",
        *[f"  {c:<{width}}{d}" for c, (_, d) in TOOL_COMMANDS.items()],
        "",
        f"shipped configs: {', '.join(list_configs())}",
        "example: visrep fit --config quickstart --trainer.max_epochs 5",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ``visrep`` command line; returns the exit code.

    With ``argv=None`` the arguments come from ``sys.argv`` (needed for DDP, which relaunches the
    script from ``sys.argv``); a list runs in-process, as tests and notebooks do.
    """
    from_sys = argv is None
    args = list(sys.argv[1:] if from_sys else argv)
    failed = False
    try:
        if not args or args[0] in ("-h", "--help"):
            print(_help())
            return 0
        if args[0] == "--version":
            from visrep import __version__

            print(f"visrep {__version__}")
            return 0
        cmd = args[0]
        if cmd in TRAIN_COMMANDS:
            args = resolve_configs(null_options(args))
            args = class_defaults(checkpoint_defaults(predict_defaults(args)))
            tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
            if not any(isinstance(f, _DropTips) for f in tips.filters):
                tips.addFilter(_DropTips())
            _HELD.start()
            if from_sys:  # DDP relaunches the script from sys.argv: give it the resolved arguments
                sys.argv = [sys.argv[0], *args]
            with (
                warnings.catch_warnings()
            ):  # in-process use passes args while sys.argv is the host's
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                # Lightning 2.6 on torch >= 2.9 warns on every run; it is not the user's to fix
                warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
                VisrepCLI(None if from_sys else args)
            return 0
        if cmd in TOOL_COMMANDS:
            module = importlib.import_module(TOOL_COMMANDS[cmd][0])
            return int(module.main(resolve_configs(args[1:])) or 0)
        close = difflib.get_close_matches(cmd, [*TRAIN_COMMANDS, *TOOL_COMMANDS], n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see `visrep --help`"
        raise ConfigError(f"unknown command {cmd!r}{hint}")
    except (VisrepError, ArgumentError, MisconfigurationException) as e:
        failed = True
        print(f"error: {one_line(_explain(str(e)))}", file=sys.stderr)
        return 2
    except Exception as e:
        failed = True
        cause = visrep_cause(e)
        if cause is None and isinstance(e, OSError) and e.filename:
            # a file the user named cannot be written or read (a folder, no permission, full)
            names = " -> ".join(str(n) for n in (e.filename, e.filename2) if n)
            print(f"error: {one_line(f'{names}: {e.strerror or e}')}", file=sys.stderr)
            return 2
        if cause is None:
            raise
        print(f"error: {one_line(str(cause))}", file=sys.stderr)
        return 2
    finally:
        while _CREATED:  # still under the lock
            _remove_if_unused(*_CREATED.pop(), failed)
        while _LOCKS:
            _LOCKS.pop().release()
        _HELD.stop(show=not failed)


def _remove_if_unused(root: Path, top: Path, failed: bool) -> None:
    """Remove a run directory that a failed command created and left holding only its lock and
    saved config (no checkpoint, metrics or plot), and the empty folders above it up to ``top``
    that it created too."""
    if not (failed and root.is_dir()):
        return
    files = list(root.iterdir())
    if not all(p.name == ".lock" or re.fullmatch(r"config(\.\w+)?\.yaml", p.name) for p in files):
        return
    for p in files:
        p.unlink()
    for folder in (root, *root.parents):
        if any(folder.iterdir()):
            break
        folder.rmdir()
        if folder == top:
            break


def entry() -> None:
    sys.exit(main())
