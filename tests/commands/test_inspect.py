"""``visrep inspect model`` (visrep.commands.inspect): the model table from a run, a config or a
backbone; the three subcommands and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from visrep.analysis.runs import load_run
from visrep.cli import main
from visrep.models import create_backbone


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for torch and OpenMP: on a shared 2-core machine sklearn's t-SNE with spinning
    OpenMP threads is ~100x slower (measured 38 s vs 0.4 s for 80 points)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inspect") / "r"
    args = ["fit", "--config", "quickstart", "--run_dir", str(root), "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main(args) == 0
    return root


def test_help_lists_the_three_subcommands(cli):
    code, out, _ = cli("inspect", "--help")
    assert code == 0
    for name in ("model", "stability", "compare"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split()) > 2, line  # a description beside the name


def test_inspect_a_run_prints_the_table_and_writes_files(cli, run, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = cli("inspect", "model", run, "--csv", out_dir / "s.csv",
                         "--json", out_dir / "s.json", "--markdown", out_dir / "s.md")  # fmt: skip
    assert code == 0, err
    assert "backbone.features.0" in out and "Conv2d" in out and "1x1x8x8 in" in out
    net = load_run(run, with_data=False).task.net
    params = sum(p.numel() for p in net.parameters())
    assert f"params {params:,}" in out
    data = json.loads((out_dir / "s.json").read_text())
    assert data["totals"]["total_params"] == params
    assert data["totals"]["input_shape"] == [1, 1, 8, 8]
    csv = (out_dir / "s.csv").read_text().splitlines()
    assert csv[0].startswith("name,type,output_shape") and len(csv) == len(data["rows"]) + 1
    assert (out_dir / "s.md").read_text().startswith("| layer | type |")
    assert (run / "model_stats.csv").read_text() == (out_dir / "s.csv").read_text()


def test_inspect_a_config_and_a_backbone(cli, run):
    code, out, err = cli("inspect", "model", "--config", "quickstart")
    assert code == 0, err
    code, out_run, _ = cli("inspect", "model", run)
    assert code == 0
    total = next(ln for ln in out.splitlines() if ln.startswith("params "))
    assert total in out_run  # same architecture, same data: same totals
    code, out, err = cli("inspect", "model", "--backbone", "resnet18", "--in_chans", "3",
                         "--num_classes", "10", "--input_size", "3", "32", "32", "--batch_size", "2")  # fmt: skip
    assert code == 0, err
    bb = create_backbone("resnet18", in_chans=3, num_classes=10, img_size=(32, 32))
    assert f"params {sum(p.numel() for p in bb.parameters()):,}" in out and "input 2x3x32x32" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs exactly one of"),
        (["RUN", "--backbone", "mlp"], "got source, backbone"),
        (["--backbone", "resnt18"], "did you mean resnet18"),
        (["--backbone", "mlp", "--in_chans", "1", "--input_size", "3", "8", "8"], "disagrees"),
        (["--backbone", "mlp", "--input_size", "3", "8"], "--input_size"),
        (["--config", "nope"], "--config 'nope' is neither a file nor a shipped config"),
        (["--config", "cifar10_resnet"], "pass --input_size C H W"),
        (["RUN", "--input_size", "1", "0", "8"], "--input_size must be positive"),
        (["RUN", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_inspect_model_bad_options_give_one_line_errors(cli, run, args, message):
    args = [str(run) if a == "RUN" else a for a in args]
    code, _, err = cli("inspect", "model", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_inspect_without_subcommand_fails_clearly(cli):
    code, _, err = cli("inspect")
    assert code == 2 and "model,stability,compare" in err


def test_stability_and_compare_parse_their_own_options(cli, run):
    # Replaces the test that inspect handed stability/compare over to analysis.stability_cli:
    # they are subcommands of visrep.commands.inspect now, parsed from their signatures.
    code, out, _ = cli("inspect", "stability", "RUN", "--tol", "1e-3", "--help")
    assert code == 0 and "--tol_sweep" in out and "--which" in out
    code, out, _ = cli("inspect", "compare", "--help")
    assert code == 0 and "--sigmas" in out and "--out" in out
    code, _, err = cli("inspect", "stability", run, "--tol", "abc")
    assert code == 2 and err.count("\n") == 1 and "--tol must be a number, got 'abc'" in err
    code, _, err = cli("inspect", "compare", run, "--sigmas", "0.1,x")
    assert code == 2 and err.count("\n") == 1 and "--sigmas must be a list of numbers" in err


def test_inspect_model_refuses_a_run_another_writer_holds(cli, run):
    from visrep.runs import RunDir

    with RunDir(run).lock():
        code, _, err = cli("inspect", "model", run)
    assert code == 2 and err.count("\n") == 1 and "is in use by" in err, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  class_path: [unclosed\n", "is not valid YAML"),
        ("", "is empty"),
        ("- model\n- data\n", "got a list"),
    ],
)
def test_inspect_model_bad_yaml_config_is_one_line(cli, tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, _, err = cli("inspect", "model", "--config", bad)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and str(bad) in err
