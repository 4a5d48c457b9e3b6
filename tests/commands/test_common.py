"""The parser every tool command shares (visrep.commands._common): typed signatures, list
options in both spellings, ``--config`` YAML files and one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest

from visrep.commands._common import Command, describe, run_command, run_subcommands
from visrep.errors import ConfigError

SEEN: list[dict] = []


def tool(
    run_dir: str,
    *,
    eps: Sequence[float] = (0.5,),
    size: tuple[int, int, int] | None = None,
    names: Sequence[str] = (),
    norm: Literal["linf", "l2"] = "linf",
    steps: int = 3,
    out: str | None = None,
) -> int:
    """A tool.

    Args:
        run_dir: a run.
        eps: budgets.
        size: C H W.
        names: some names.
        norm: a norm.
        steps: iterations.
        out: an output.
    """
    SEEN.append(dict(locals()))
    return 0


CMD = Command(tool, aliases={"-o": "--out"}, messages={"eps": "--eps must be numbers"})


def _run(*argv: str) -> dict:
    SEEN.clear()
    assert run_command(CMD, "visrep tool", list(argv)) == 0
    return SEEN[-1]


def test_list_options_take_brackets_and_commas_alike() -> None:
    for spelling in (["--eps", "[0.1,0.2]"], ["--eps", "0.1,0.2"], ["--eps=0.1,0.2"],
                     ["--eps", "[0.1, 0.2]"]):  # fmt: skip
        assert _run("R", *spelling)["eps"] == [0.1, 0.2], spelling
    assert _run("R", "--eps", "0.3")["eps"] == [0.3]
    assert _run("R", "--eps", "-0.1")["eps"] == [-0.1]  # a negative number is a value
    assert _run("R", "--names", "a,b")["names"] == ["a", "b"]
    assert _run("R", "--names", "runs/a")["names"] == ["runs/a"]
    for spelling in (["3", "32", "32"], ["3,32,32"], ["[3,32,32]"]):
        assert _run("R", "--size", *spelling)["size"] == (3, 32, 32), spelling
    assert _run("R")["eps"] == (0.5,) and _run("R", "-o", "x")["out"] == "x"


def test_type_errors_name_the_option_and_the_value() -> None:
    cases = [
        (["--eps", "0.1,abc"], "--eps must be numbers, got '0.1,abc'"),
        (["--norm", "l1"], "--norm must be one of linf, l2, got 'l1'"),
        (["--steps", "x"], "--steps must be an integer, got 'x'"),
        (["--size", "3", "8"], "--size must be 3 integers (a b c, a,b,c or [a,b,c]), got '3 8'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus"),
        ([], "run_dir"),
    ]
    for argv, message in cases:
        with pytest.raises(ConfigError) as e:
            run_command(CMD, "visrep tool", ["R", *argv] if argv else [])
        assert message in str(e.value), (argv, str(e.value))
        assert "\n" not in str(e.value)


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(CMD, "visrep tool", ["--help"]) == 0
    out = capsys.readouterr().out
    assert "A tool." in out and "budgets" in out and "--config" in out and "--size" in out


def test_config_file_gives_the_options(tmp_path: Path) -> None:
    cfg = tmp_path / "opts.yaml"
    cfg.write_text("eps: [0.25]\nnorm: l2\n")
    seen = _run("R", "--config", str(cfg), "--steps", "7")
    assert seen["eps"] == [0.25] and seen["norm"] == "l2" and seen["steps"] == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("eps: [0.1\n", "is not valid YAML"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- eps\n- norm\n", "got a list"),
        ("just words\n", "got a str"),
    ],
)
def test_bad_config_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        run_command(CMD, "visrep tool", ["R", "--config", str(cfg)])
    assert message in str(e.value) and str(cfg) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no such file"):
        run_command(CMD, "visrep tool", ["R", "--config", str(tmp_path / "nope.yaml")])


def test_subcommands_parse_with_their_own_signature() -> None:
    SEEN.clear()
    cmds = {"a": CMD, "b": Command(tool)}
    assert run_subcommands(cmds, "visrep t", "two", ["b", "R", "--eps", "1,2"]) == 0
    assert SEEN[-1]["eps"] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="a,b"):
        run_subcommands(cmds, "visrep t", "two", [])


def test_describe() -> None:
    assert describe(Sequence[float] | None) == "a list of numbers ([a,b] or a,b)"
    assert describe(Literal["best", "last"]) == "one of best, last"
    assert describe(dict[str, int]) == 'a mapping such as {"key": 1}'


@pytest.mark.parametrize(
    "tool_args",
    [
        ["attack", "RUN"],
        ["explain", "RUN"],
        ["report", "RUN"],
        ["inspect", "stability", "RUN"],
        ["inspect", "compare", "RUN"],
        ["inspect", "model"],  # its --config is the experiment config to measure
        ["events", "info", "FILE"],
        ["events", "show", "FILE", "-o", "x.png"],
    ],
)
@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [1\n", "is not valid YAML"), ("", "is empty"), ("- a\n", "got a list")],
)
def test_every_tool_refuses_a_bad_config_in_one_line(cli, tmp_path, tool_args, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, _, err = cli(*tool_args, "--config", cfg)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and str(cfg) in err
