"""Malicious checkpoints never run code: every command that reads a checkpoint or a run refuses
them with one line ``error: ...`` (exit code 2), and :func:`visrep.analysis.runs.load_run`
raises a :class:`~visrep.errors.VisrepError`.

The attacks start from a real checkpoint of a tiny run and name things to import or call
everywhere a class can be named (the task class, ``class_path`` entries at any depth, plain
strings where a class or a config file is expected), or carry pickled objects. The payload is
a real module on ``sys.path`` that leaves a marker file when it is imported and another when
anything of it is called; shell payloads touch a marker too. After every command: no marker,
the module is not in ``sys.modules``.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image

from visrep.analysis.runs import load_run
from visrep.cli import main
from visrep.errors import VisrepError

PAYLOAD = "visrep_ckpt_payload"  # the module a checkpoint must never get imported
FAST = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]  # fmt: skip
TINY = ["--model.backbone", "mlp", "--model.backbone.width", "16"]

# Filled by the fixture: where markers appear, and the shell command that makes one.
MARKERS: dict[str, Path] = {}
RAN_CODE: dict[str, list[str]] = {}  # attack -> commands after which a marker existed


class ShellOnUnpickle:
    """A pickled object whose unpickling runs ``touch MARKER`` (``__reduce__`` to os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _touch_command() -> str:
    return f"touch {MARKERS['dir'] / 'shell'}"


# -- attacks: each edits a deep copy of the real checkpoint (or returns bytes to write) ---------
def _hp(c: dict) -> dict:
    return c["hyper_parameters"]


def _bb_args(c: dict) -> dict:
    return c["hyper_parameters"]["backbone"]["init_args"]


def _set(get: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        get(c)[key] = value() if callable(value) else value

    return edit


def _meta(key: str, value: Any) -> Callable[[dict], None]:
    return _set(lambda c: c["visrep"], key, value)


def _hp_class_path_system(c: dict, *, drop_task: bool) -> None:
    c["hyper_parameters"] = {"_class_path": "os.system", "command": _touch_command()}
    if drop_task:
        del c["visrep"]["task"]


def _yaml_file(c: dict) -> str:
    path = MARKERS["dir"].parent / "payload_config.yaml"
    path.write_text(f"class_path: {PAYLOAD}.Thing\ninit_args: {{}}\n")
    return str(path)


def _pickled(where: str) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        evil = ShellOnUnpickle(MARKERS["dir"] / "pickle")
        if where == "state_dict":
            c["state_dict"]["net.evil"] = evil
        elif where == "hyper_parameters":
            c["hyper_parameters"]["backbone"] = evil
        elif where == "data_spec":
            c["visrep"]["data_spec"] = evil
        else:
            c["evil"] = evil

    return edit


def _raw_pickle(c: dict) -> bytes:
    return pickle.dumps(ShellOnUnpickle(MARKERS["dir"] / "pickle"))


def _refused_global(c: dict) -> None:
    c["callbacks"] = {"x": partial(os.system, _touch_command())}


ATTACKS: dict[str, Callable[[dict], Any]] = {
    # the task class
    "task_os_system": _meta("task", "os.system"),
    "task_subprocess_popen": _meta("task", "subprocess.Popen"),
    "task_builtins_eval": _meta("task", "builtins.eval"),
    "task_posix_system": _meta("task", "posix.system"),
    "task_payload_class": _meta("task", f"{PAYLOAD}.Thing"),
    "task_payload_module_name_of_a_task": _meta("task", f"{PAYLOAD}.ClassificationTask"),
    "task_visrep_dotted_non_class": _meta("task", "visrep.runs.os.system"),
    "task_visrep_function": _meta("task", "visrep.runs.load_checkpoint"),
    "task_not_a_string": _meta("task", ["os", "system"]),
    "hp_class_path_os_system": partial(_hp_class_path_system, drop_task=False),
    "hp_class_path_os_system_no_task": partial(_hp_class_path_system, drop_task=True),
    "hp_class_path_payload_beside_task": _set(_hp, "_class_path", f"{PAYLOAD}.Thing"),
    "hp_instantiator_payload": _set(_hp, "_instantiator", f"{PAYLOAD}.Thing"),
    # class paths and class names inside the hyper-parameters
    "backbone_class_path_payload": _set(
        lambda c: _hp(c)["backbone"], "class_path", f"{PAYLOAD}.Thing"
    ),
    "backbone_class_path_os_system": _set(lambda c: _hp(c)["backbone"], "class_path", "os.system"),
    "backbone_class_path_visrep_non_class": _set(
        lambda c: _hp(c)["backbone"], "class_path", "visrep.runs.os.system"
    ),
    "backbone_string_payload": _set(_hp, "backbone", f"{PAYLOAD}.Thing"),
    "backbone_string_os_system": _set(_hp, "backbone", "os.system"),
    "backbone_string_yaml_file": _set(_hp, "backbone", lambda: _yaml_file({})),
    "backbone_nested_class_path": _set(_bb_args, "activation", {"class_path": f"{PAYLOAD}.Thing"}),
    "backbone_option_string_payload": _set(_bb_args, "activation", f"{PAYLOAD}.Thing"),
    "class_path_in_a_list": _set(
        lambda c: _hp(c)["optim"], "betas", [{"class_path": f"{PAYLOAD}.Thing"}, 0.999]
    ),
    "optim_string_payload": _set(_hp, "optim", f"{PAYLOAD}.Thing"),
    "optim_string_yaml_file": _set(_hp, "optim", lambda: _yaml_file({})),
    "adversarial_class_path_payload": _set(
        _hp, "adversarial", {"class_path": f"{PAYLOAD}.Thing", "init_args": {}}
    ),
    "adversarial_string_payload": _set(_hp, "adversarial", f"{PAYLOAD}.Thing"),
    "timm_model_args_payload": _set(
        _hp,
        "backbone",
        {
            "class_path": "timm",
            "init_args": {
                "model_name": "resnet18",
                "model_args": {"act_layer": f"{PAYLOAD}.Thing"},
            },
        },
    ),
    "unknown_hyper_parameter": _set(_hp, "command", "touch PWNED"),
    # pickled objects and globals weights_only refuses
    "pickle_in_state_dict": _pickled("state_dict"),
    "pickle_in_hyper_parameters": _pickled("hyper_parameters"),
    "pickle_in_data_spec": _pickled("data_spec"),
    "pickle_at_top_level": _pickled("top"),
    "pickle_raw_file": _raw_pickle,
    "refused_global_partial": _refused_global,
    # the data spec and the layout
    "data_spec_extra_key": _set(
        lambda c: c["visrep"]["data_spec"], "__class__", f"{PAYLOAD}.Thing"
    ),
    "data_spec_not_a_mapping": _meta("data_spec", f"{PAYLOAD}.Thing"),
    "state_dict_strings": _set(lambda c: c, "state_dict", {"net.x": f"{PAYLOAD}.Thing"}),
    "future_format": _meta("format", 99),
}

# Commands that take a checkpoint or a run. {ckpt}: the malicious checkpoint; {run}: its run.
COMMANDS: dict[str, list[str]] = {
    "test": ["test", "--ckpt_path", "{ckpt}", *FAST],
    "validate": ["validate", "--ckpt_path", "{ckpt}", *FAST],
    "predict": ["predict", "--ckpt_path", "{ckpt}", "--data.path", "{images}", *FAST],
    "fit_ckpt_path": [
        "fit",
        "--config",
        "quickstart",
        *TINY,
        *FAST,
        "--ckpt_path",
        "{ckpt}",
        "--run_dir",
        "{fresh}",
    ],
    "fit_resume": [
        "fit",
        "--config",
        "quickstart",
        *TINY,
        *FAST,
        "--run_dir",
        "{run}",
        "--resume",
    ],
    "inspect_model_run": ["inspect", "model", "{run}"],
    "inspect_model_ckpt": ["inspect", "model", "{ckpt}"],
    "inspect_stability": ["inspect", "stability", "{run}"],
    "inspect_compare": ["inspect", "compare", "{run}"],
    "explain": ["explain", "{run}", "--methods", "pca", "--max_points", "20"],
    "attack": ["attack", "{run}", "--attacks", "fgsm", "--max_samples", "8"],
}
# Commands that read only the tensors of a checkpoint (a backbone's pretrained_path): a
# checkpoint whose other entries are malicious may load, but nothing in it may run.
TENSORS_ONLY: dict[str, list[str]] = {
    "inspect_pretrained": [
        "inspect",
        "model",
        "--backbone",
        "mlp",
        "--backbone_args",
        '{{"width": 16, "pretrained_path": "{ckpt}"}}',
        "--input_size",
        "1",
        "8",
        "8",
    ],
}


# A run directory is read by the analysis tools too: the data section of its config.yaml.
RUN_CONFIG_ATTACKS: dict[str, Callable[[dict], Any]] = {
    "data_class_payload": _set(lambda c: c["data"], "class_path", f"{PAYLOAD}.Thing"),
    "data_class_os_system": _set(lambda c: c["data"], "class_path", "os.system"),
    "data_class_visrep_not_a_data_module": _set(lambda c: c["data"], "class_path",
                                                "visrep.runs.RunDir"),
    "data_class_visrep_dotted_non_class": _set(lambda c: c["data"], "class_path",
                                               "visrep.runs.os.system"),
    "data_section_a_string": _set(lambda c: c, "data", f"{PAYLOAD}.Thing"),
    "data_config_option_string": _set(lambda c: c["data"]["init_args"], "loader",
                                      f"{PAYLOAD}.Thing"),
    "data_config_option_yaml_file": _set(lambda c: c["data"]["init_args"], "loader",
                                         lambda: _yaml_file({})),
    "data_nested_class_path": _set(lambda c: c["data"]["init_args"], "augment",
                                   {"class_path": f"{PAYLOAD}.Thing"}),
    "data_extra_entry": _set(lambda c: c["data"], "__path__", "x.yaml"),
}  # fmt: skip
# The commands that read a run's data.
DATA_COMMANDS = ("inspect_stability", "inspect_compare", "explain", "attack")


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run, the payload module on ``sys.path`` and one run per attack."""
    root = tmp_path_factory.mktemp("attacks")
    run = root / "run"
    assert main(["fit", "--config", "quickstart", *TINY, *FAST, "--test_after_fit", "false",
                 "--run_dir", str(run)]) == 0  # fmt: skip
    MARKERS["dir"] = root / "markers"
    MARKERS["dir"].mkdir()
    lib = root / "lib"
    lib.mkdir()
    (lib / f"{PAYLOAD}.py").write_text(
        "from pathlib import Path\n"
        f"MARKERS = Path({str(MARKERS['dir'])!r})\n"
        "(MARKERS / 'imported').write_text('imported')\n"
        "def _called(*args, **kwargs):\n"
        "    (MARKERS / 'called').write_text('called')\n"
        "class Thing:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        _called()\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        _called()\n"
        "ClassificationTask = Thing\n"
    )
    sys.path.insert(0, str(lib))
    images = root / "images"
    images.mkdir()
    Image.new("L", (8, 8), 128).save(images / "0.png")
    base = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    for name, attack in ATTACKS.items():
        target = root / "runs" / name
        (target / "checkpoints").mkdir(parents=True)
        shutil.copy(run / "config.yaml", target / "config.yaml")
        ckpt = copy.deepcopy(base)
        raw = attack(ckpt)
        for which in ("best", "last"):
            path = target / "checkpoints" / f"{which}.ckpt"
            if isinstance(raw, bytes):
                path.write_bytes(raw)
            else:
                torch.save(ckpt, path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    for name, attack in RUN_CONFIG_ATTACKS.items():
        target = root / "runs" / name
        shutil.copytree(run / "checkpoints", target / "checkpoints")
        edited = copy.deepcopy(config)
        attack(edited)
        (target / "config.yaml").write_text(yaml.safe_dump(edited))
    yield {"root": root, "images": images}
    sys.path.remove(str(lib))
    sys.modules.pop(PAYLOAD, None)


def _ran_code() -> list[str]:
    markers = sorted(p.name for p in MARKERS["dir"].iterdir())
    return markers + (["module imported"] if PAYLOAD in sys.modules else [])


def _record(attack: str, command: str) -> list[str]:
    ran = _ran_code()
    if ran:
        RAN_CODE.setdefault(attack, []).append(command)
        for p in MARKERS["dir"].iterdir():  # so the next case starts clean
            p.unlink()
        sys.modules.pop(PAYLOAD, None)
    return ran


def _one_error_line(code: int, out: str, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]


def _argv(template: list[str], attack: str, arena: dict[str, Path], tmp: Path) -> list[str]:
    run = arena["root"] / "runs" / attack
    values = {"run": run, "ckpt": run / "checkpoints" / "best.ckpt",
              "images": arena["images"], "fresh": tmp / "fresh"}  # fmt: skip
    return [a.format(**values) for a in template]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_commands_refuse_malicious_checkpoints(
    arena: dict[str, Path], attack: str, command: str, tmp_path: Path,
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:  # the console would print them
            code = main(_argv(COMMANDS[command], attack, arena, tmp_path))
    finally:
        ran = _record(attack, command)
    out, err = capfd.readouterr()
    err = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err
    assert not ran, f"{attack} ran code through {command}: {ran}"
    _one_error_line(code, out, err)


@pytest.mark.parametrize("command", list(TENSORS_ONLY))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_pretrained_weights_of_malicious_checkpoints(
    arena: dict[str, Path], attack: str, command: str, tmp_path: Path,
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:  # the console would print them
            code = main(_argv(TENSORS_ONLY[command], attack, arena, tmp_path))
    finally:
        ran = _record(attack, command)
    out, err = capfd.readouterr()
    err = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err
    assert not ran, f"{attack} ran code through {command}: {ran}"
    if code != 0:
        _one_error_line(code, out, err)


@pytest.mark.parametrize("command", DATA_COMMANDS)
@pytest.mark.parametrize("attack", list(RUN_CONFIG_ATTACKS))
def test_tools_refuse_malicious_run_configs(
    arena: dict[str, Path], attack: str, command: str, tmp_path: Path,
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = main(_argv(COMMANDS[command], attack, arena, tmp_path))
    finally:
        ran = _record(attack, command)
    out, err = capfd.readouterr()
    err = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + err
    assert not ran, f"{attack} ran code through {command}: {ran}"
    _one_error_line(code, out, err)
    assert "config.yaml" in err


@pytest.mark.parametrize("attack", [*ATTACKS, *RUN_CONFIG_ATTACKS])
def test_load_run_refuses_malicious_checkpoints(arena: dict[str, Path], attack: str) -> None:
    try:
        with pytest.raises(VisrepError) as e:
            load_run(arena["root"] / "runs" / attack)
    finally:
        ran = _record(attack, "load_run")
    assert not ran, f"{attack} ran code through load_run: {ran}"
    assert "\n" not in str(e.value)


def test_no_attack_ran_code() -> None:
    """The count over every attack and command above (run last): must be zero."""
    total = len(ATTACKS) + len(RUN_CONFIG_ATTACKS)
    assert len(ATTACKS) >= 24
    assert not RAN_CODE, f"{len(RAN_CODE)} of {total} attacks ran code: {RAN_CODE}"
