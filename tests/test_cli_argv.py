"""The argument rewriting before parsing (visrep.cli.argv)."""

import json

import pytest
import yaml

from visrep.cli import main
from visrep.cli.argv import checkpoint_defaults, class_defaults, null_options
from visrep.errors import ConfigError

MODEL = ["--model", "visrep.tasks.ClassificationTask"]  # given: the checkpoint is not read
DATA = {"class_path": "visrep.data.DigitsDataModule", "init_args": {"loader": {"batch_size": 7}}}


def _run(tmp_path, data):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")
    (tmp_path / "config.yaml").write_text(json.dumps({"data": data}))
    return str(tmp_path / "checkpoints" / "best.ckpt")


def test_a_runs_checkpoint_brings_the_runs_data(tmp_path):
    ckpt = _run(tmp_path, DATA)
    out = checkpoint_defaults(["test", "--ckpt_path", ckpt, *MODEL])
    assert out[0] == "test" and out[1] == "--data" and out[3:] == ["--ckpt_path", ckpt, *MODEL]
    section = json.loads(out[2])
    assert section["class_path"].endswith("DigitsDataModule")
    assert section["init_args"] == DATA["init_args"]
    # then no default data class is inserted
    assert "visrep.data.DigitsDataModule" not in class_defaults(out)[1:4]


@pytest.mark.parametrize(
    "extra",
    [["--config", "quickstart"], ["--data", "visrep.data.X"], ["--data=visrep.data.X"]],
)
def test_the_command_line_data_or_config_wins(tmp_path, extra):
    ckpt = _run(tmp_path, DATA)
    argv = ["validate", "--ckpt_path", ckpt, *MODEL, *extra]
    assert checkpoint_defaults(argv) == argv


def test_data_options_refine_the_runs_data(tmp_path):
    ckpt = _run(tmp_path, DATA)
    out = checkpoint_defaults(
        ["test", "--ckpt_path", ckpt, *MODEL, "--data.loader.batch_size", "3"]
    )
    assert out[1] == "--data" and out[-2:] == ["--data.loader.batch_size", "3"]


def test_fit_and_checkpoints_outside_a_run_are_left_alone(tmp_path):
    ckpt = _run(tmp_path, DATA)
    assert checkpoint_defaults(["fit", "--ckpt_path", ckpt]) == ["fit", "--ckpt_path", ckpt]
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"")
    argv = ["test", f"--ckpt_path={loose}", *MODEL]
    assert checkpoint_defaults(argv) == argv


@pytest.mark.parametrize(
    "data",
    [
        {"class_path": "os.system", "init_args": {}},
        {"class_path": "visrep.data.DigitsDataModule", "init_args": {"loader": "evil.yaml"}},
    ],
)
def test_a_crafted_run_config_is_refused(tmp_path, data):
    ckpt = _run(tmp_path, data)
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        checkpoint_defaults(["test", "--ckpt_path", ckpt, *MODEL])


def test_null_for_a_nested_option_is_given_as_a_mapping():
    argv = ["fit", "--data.split.train_samples", "null", "--model.backbone.pretrained_path=null",
            "--model.margin", "null", "--data.loader.batch_size", "8", "--data.class_path", "null"]  # fmt: skip
    assert null_options(argv) == [
        "fit", "--data.split", '{"train_samples": null}', "--model.backbone",
        '{"pretrained_path": null}', "--model.margin", "null", "--data.loader.batch_size", "8",
        "--data.class_path", "null",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "key", "want"),
    [
        (["--model.backbone.pretrained_path", "null"], ("model", "backbone", "pretrained_path"), None),
        (["--data.split.train_samples", "100", "--data.split.train_samples=null"],
         ("data", "split", "train_samples"), None),
        (["--data.split.train_samples", "null", "--data.split.val_fraction", "0.3"],
         ("data", "split", "val_fraction"), 0.3),
    ],
)  # fmt: skip
def test_null_on_the_command_line_reaches_the_config(tmp_path, capsys, args, key, want):
    """jsonargparse alone read ``--model.backbone.pretrained_path null`` as the path "None" and
    refused ``--data.split.train_samples null``; the other options of the section stay."""
    with pytest.raises(SystemExit) as done:  # --print_config prints and exits
        main(["fit", "--config", "quickstart", *args, "--print_config"])
    assert done.value.code in (0, None)
    cfg = yaml.safe_load(capsys.readouterr().out)
    section = cfg[key[0]]["init_args"][key[1]]
    section = section.get("init_args", section)
    assert section[key[2]] == want
