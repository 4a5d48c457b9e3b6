"""The command line before parsing: shipped config names resolved, default classes inserted.

``visrep fit|validate|test|predict`` arguments are rewritten here, then parsed by
:class:`visrep.cli.main.VisrepCLI`. Rewriting arguments (not parser defaults) keeps
jsonargparse from carrying one class's options into another.
"""

from __future__ import annotations

import json
from pathlib import Path

from visrep.analysis.runs import saved_data_section
from visrep.configs import list_configs, read_config, resolve_config
from visrep.errors import ConfigError
from visrep.runs import RunDir
from visrep.tasks.checkpoint import read_task_checkpoint

__all__ = [
    "DEFAULT_CLASSES",
    "checkpoint_defaults",
    "class_defaults",
    "null_options",
    "predict_defaults",
    "resolve_configs",
]


def resolve_configs(argv: list[str]) -> list[str]:
    """Replace ``--config NAME`` by the shipped config's path; unknown names and files that are
    not a YAML mapping fail clearly, naming the file."""
    out = list(argv)
    for i, a in enumerate(out):
        value_at, value = None, None
        if a in ("--config", "-c") and i + 1 < len(out):
            value_at, value = i + 1, out[i + 1]
        elif a.startswith("--config="):
            value_at, value = i, a.split("=", 1)[1]
        if value is None:
            continue
        path = resolve_config(value)
        if path is None:
            raise ConfigError(
                f"--config {value!r} is neither a file nor a shipped config ({', '.join(list_configs())})"
            )
        read_config(path)
        out[value_at] = path if value_at != i else f"--config={path}"
    return out


def null_options(argv: list[str]) -> list[str]:
    """``--a.b.c null`` as ``--a.b '{c: null}'``: jsonargparse (4.53) reads ``null`` given to an
    option nested in a class's options as the string ``"None"``, so a ``str`` option became
    ``"None"`` silently and an ``int | None`` one failed; given as a mapping, it is null and the
    other options of ``a.b`` stay as they were."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        key, value, step = None, None, 1
        if a.startswith("--") and a.count(".") >= 2:
            if "=" in a:
                key, value = a.split("=", 1)
            elif i + 1 < len(argv):
                key, value, step = a, argv[i + 1], 2
        if value == "null" and not key.endswith((".class_path", ".init_args")):
            parent, name = key.rsplit(".", 1)
            out += [parent, json.dumps({name: None})]
        else:
            out += argv[i : i + step]
        i += step
    return out


DEFAULT_CLASSES = {
    "model": "visrep.tasks.ClassificationTask",
    "data": "visrep.data.DigitsDataModule",
}


def class_defaults(argv: list[str]) -> list[str]:
    """The default model and data classes (the quickstart's), for runs that name none.

    Given as arguments, not as parser defaults: jsonargparse carries a default class's options
    into a class chosen later when the names match (``--data visrep.data.IDXDataModule`` would
    get the digits module's batch size, a segmentation module its image augmentation).
    """
    configs = [
        read_config(a.split("=", 1)[1] if "=" in a else argv[i + 1])
        for i, a in enumerate(argv)
        if (a in ("--config", "-c") and i + 1 < len(argv)) or a.startswith("--config=")
    ]
    extra = []
    for key, cls in DEFAULT_CLASSES.items():
        given = any(
            a == f"--{key}" or a.startswith((f"--{key}=", f"--{key}.class_path")) for a in argv
        )
        if not given and not any(key in c for c in configs):
            extra += [f"--{key}", cls]
    return [argv[0], *extra, *argv[1:]]


def predict_defaults(argv: list[str]) -> list[str]:
    """``predict --data.path P`` without a data class predicts on image files."""
    if argv[0] != "predict" or not any(a.startswith("--data.path") for a in argv):
        return argv
    if any(a == "--data" or a.startswith("--data=") for a in argv):
        return argv
    i = next(i for i, a in enumerate(argv) if a.startswith("--data.path"))
    return [*argv[:i], "--data=visrep.data.ImageFilesDataModule", *argv[i:]]


def _value(argv: list[str], option: str) -> str | None:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in ``argv`` (the last one)."""
    found = None
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(f"{option}="):
            found = a.split("=", 1)[1]
    return found


def checkpoint_defaults(argv: list[str]) -> list[str]:
    """``validate|test|predict --ckpt_path CKPT`` without ``--config``: the checkpoint's task
    class is the model class unless ``--model`` names one (so ``--model.crf.window 9`` parses
    against the checkpoint's task), and, for a checkpoint in a run directory and no data class
    named, the data is the run's own: the data section of ``RUN/config.yaml``, checked (visrep's
    data modules and plain options only) so reading a run never runs code from it; ``--data.*``
    options then change it (``--data.root`` where the data has moved)."""
    if argv[0] == "fit" or any(a.split("=")[0] in ("--config", "-c") for a in argv):
        return argv
    ckpt = _value(argv, "--ckpt_path")
    if not ckpt or ckpt in ("best", "last"):
        return argv
    first = []  # before the options, which need their class to parse
    if not any(a == "--model" or a.startswith(("--model=", "--model.class_path")) for a in argv):
        first += ["--model", read_task_checkpoint(ckpt).class_path]
    data_class = any(a == "--data" or a.startswith(("--data=", "--data.class_path")) for a in argv)
    if not data_class and Path(ckpt).parent.name == "checkpoints":
        run = RunDir(Path(ckpt).parent.parent)
        section = saved_data_section(run) if run.is_run() else None
        first += [] if section is None else ["--data", json.dumps(section)]
    return [argv[0], *first, *argv[1:]]
