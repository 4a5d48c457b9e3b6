"""What every tool command shares: a parser built from the typed signature of its function.

A command is a plain function with typed parameters and a Google-style docstring: parameters
before ``*`` are positional arguments, keyword-only ones are ``--options``; jsonargparse turns
the signature into the parser, so ``--help``, ``--config`` (a YAML file of the options) and list
options behave alike in every tool. List options take ``[a,b]`` and ``a,b`` alike, fixed-length
ones also ``a b c``. Mistakes raise :class:`~visrep.errors.ConfigError` with one line that names
the option, what it must be and the value given; ``visrep`` prints it as ``error: ...``.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docstring_parser
import torch
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser, Namespace

from visrep.configs import read_config
from visrep.errors import ConfigError

Which = Literal["best", "last"]
Split = Literal["train", "val", "test"]

Message = str | Callable[[str], str]


@dataclass
class Command:
    """A tool command: its function and how its command line differs from the defaults.

    Attributes:
        fn: the function; its typed signature is the parser, its docstring the help.
        config: ``--config FILE`` reads the options from YAML (False when the function has its
            own ``config`` parameter, as ``inspect model`` does for experiment configs).
        aliases: short spellings of options, e.g. ``{"-o": "--out"}``.
        messages: option -> the message of a value of the wrong type (a text, completed with
            ``, got VALUE``, or a function of the value); others get a generic one.
    """

    fn: Callable[..., int]
    config: bool = True
    aliases: dict[str, str] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)

    @property
    def help(self) -> str:
        return (inspect.getdoc(self.fn) or "").splitlines()[0]


# -- types -----------------------------------------------------------------------------------------
def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _list_length(hint: Any) -> int | bool | None:
    """``None`` for a list of any length, ``n`` for a tuple of ``n``, False for anything else."""
    hint = _strip_optional(hint)
    origin = typing.get_origin(hint)
    if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.Set):
        return None
    if origin is tuple:
        args = typing.get_args(hint)
        return None if len(args) == 2 and args[1] is Ellipsis else len(args)
    return False


def describe(hint: Any) -> str:
    """A type in words: ``list[float]`` -> ``a list of numbers ([a,b] or a,b)``."""
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    n = _list_length(hint)
    if n is not False:
        item = describe(args[0]) if args else "a value"
        item = re.sub(r"^(a|an) ", "", item)
        if n is None:
            return f"a list of {item}s ([a,b] or a,b)"
        return f"{n} {item}s (a b c, a,b,c or [a,b,c])"
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return 'a mapping such as {"key": 1}'
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


# -- parser ----------------------------------------------------------------------------------------
def _param_docs(fn: Callable) -> dict[str, str]:
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    return {p.arg_name: p.description or "" for p in doc.params}


def build_parser(cmd: Command, prog: str) -> ArgumentParser:
    """The jsonargparse parser of ``cmd.fn``'s signature (``exit_on_error=False``)."""
    doc = (inspect.getdoc(cmd.fn) or "").split("\nArgs:")[0].strip()
    p = ArgumentParser(prog=prog, description=doc or None, exit_on_error=False)
    if cmd.config:
        p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    sig = inspect.signature(cmd.fn)
    hints = typing.get_type_hints(cmd.fn)
    docs = _param_docs(cmd.fn)
    positional = [
        n for n, par in sig.parameters.items()
        if par.kind in (par.POSITIONAL_ONLY, par.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    for name in positional:
        par, hint = sig.parameters[name], hints[name]
        kw: dict[str, Any] = {"help": docs.get(name, "")}
        if _list_length(hint) is None and par.default is par.empty:
            args = typing.get_args(_strip_optional(hint))
            kw |= {"type": args[0] if args else str, "nargs": "+"}
        elif par.default is not par.empty:
            kw |= {"type": hint, "nargs": "?", "default": par.default}
        else:
            kw["type"] = hint
        p.add_argument(name, **kw)
    p.add_function_arguments(cmd.fn, skip=set(positional), as_group=False)
    return p


# -- argv ------------------------------------------------------------------------------------------
# a number, or numbers separated by commas (``-3,5`` is a value, not an option)
_NUM = r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_NUMBER = re.compile(rf"^{_NUM}(,{_NUM})*$")


def _lists(cmd: Command) -> dict[str, int | None]:
    hints = typing.get_type_hints(cmd.fn)
    out = {}
    for name in inspect.signature(cmd.fn).parameters:
        n = _list_length(hints[name])
        if n is not False:
            out[name] = n
    return out


def _is_value(tok: str) -> bool:
    return not tok.startswith("-") or bool(_NUMBER.match(tok))


def normalise(argv: Sequence[str], cmd: Command, given: dict[str, str]) -> list[str]:
    """Aliases spelled out and list values written as ``[a,b]``; ``given`` records raw values.

    ``--eps 0.1,0.2`` -> ``--eps [0.1,0.2]``; ``--input_size 3 32 32`` (a 3-tuple) ->
    ``--input_size [3,32,32]``; values already in brackets, ``null`` and ``--name+`` (append)
    are left alone.
    """
    lists = _lists(cmd)
    out: list[str] = []
    args = [cmd.aliases.get(a, a) for a in argv]
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            out += args[i:]
            break
        name, eq, value = tok[2:].partition("=") if tok.startswith("--") else ("", "", "")
        if name not in lists:
            if name and i + 1 < len(args) and not eq:
                given.setdefault(name, args[i + 1])
            elif name and eq:
                given.setdefault(name, value)
            out.append(tok)
            i += 1
            continue
        n = lists[name]
        if eq:
            values, i = [value], i + 1
        else:
            values, i = [], i + 1
            while i < len(args) and _is_value(args[i]) and len(values) < (n or 1):
                values.append(args[i])
                i += 1
        raw = " ".join(values)
        given[name] = raw
        if not values:
            out.append(f"--{name}")
        elif len(values) == 1 and (raw.lstrip().startswith("[") or raw in ("null", "None")):
            out += [f"--{name}", raw]
        else:
            items = [v.strip() for part in values for v in part.split(",")]
            out += [f"--{name}", "[" + ",".join(v for v in items if v) + "]"]
    return out


def _check_config_files(argv: Sequence[str], cmd: Command) -> None:
    """Every ``--config FILE`` is a readable, non-empty YAML mapping (one-line errors)."""
    for i, tok in enumerate(argv):
        value = None
        if tok == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith("--config="):
            value = tok.split("=", 1)[1]
        if value is None:
            continue
        if Path(value).is_file():
            read_config(value)
        elif cmd.config and not value.lstrip().startswith("{"):
            raise ConfigError(f"--config {value!r}: no such file")


def _message(e: ArgumentError, cmd: Command, given: Mapping[str, str]) -> str:
    text = str(e)
    m = re.search(r'Parser key "([^"]+)"', text)
    if not m:
        return text.splitlines()[0] if text else type(e).__name__
    key = m.group(1).rsplit(".", 1)[-1]
    value = given.get(key)
    if value is None:
        found = re.findall(r"(?:Given|Got) value: (.*)", text)
        value = found[-1].strip() if found else ""
    custom = cmd.messages.get(key)
    if callable(custom):
        return custom(value)
    if custom is not None:
        return f"{custom}, got {value!r}"
    hint = typing.get_type_hints(cmd.fn).get(key)
    what = describe(hint) if hint is not None else "valid"
    return f"--{key} must be {what}, got {value!r}"


def _parse(
    parser: ArgumentParser, argv: list[str], cmd: Command, given: dict[str, str]
) -> Namespace | int:
    """The parsed namespace, or the exit code of ``--help`` / ``--print_config``."""
    _check_config_files(argv, cmd)
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    except ArgumentError as e:
        raise ConfigError(_message(e, cmd, given)) from None


def _call(cmd: Command, ns: Namespace) -> int:
    kwargs = {n: ns[n] for n in inspect.signature(cmd.fn).parameters}
    return int(cmd.fn(**kwargs) or 0)


def run_command(cmd: Command, prog: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` with ``cmd``'s parser and call it; ``--help`` returns 0."""
    given: dict[str, str] = {}
    args = normalise(argv, cmd, given)
    ns = _parse(build_parser(cmd, prog), args, cmd, given)
    return ns if isinstance(ns, int) else _call(cmd, ns)


def run_subcommands(
    commands: Mapping[str, Command], prog: str, description: str, argv: Sequence[str]
) -> int:
    """A tool of several commands (``visrep inspect model|stability|compare``)."""
    top = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    sub = top.add_subcommands(required=True, dest="subcommand")
    for name, cmd in commands.items():
        sub.add_subcommand(name, build_parser(cmd, f"{prog} {name}"), help=cmd.help)
    argv = list(argv)
    chosen = commands.get(argv[0]) if argv else None
    given: dict[str, str] = {}
    if chosen is not None:
        argv = [argv[0], *normalise(argv[1:], chosen, given)]
    ns = _parse(top, argv, chosen or Command(lambda: 0), given)
    if isinstance(ns, int):
        return ns
    name = ns.subcommand
    return _call(commands[name], ns[name])


# -- shared option checks --------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--device {name!r} is not a device: --device must be auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here")
    return dev


def check_positive(**values: int | None) -> None:
    """``--name must be >= 1`` for the first value below 1 (None is skipped)."""
    for name, v in values.items():
        if v is not None and v < 1:
            raise ConfigError(f"--{name} must be >= 1, got {v}")
