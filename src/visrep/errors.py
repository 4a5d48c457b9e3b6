"""User-facing errors.

Every mistake a user can make (missing file, bad format, bad option, wrong shape, corrupt
checkpoint) raises a subclass of :class:`VisrepError`. The CLI prints ``error: <message>`` on one
line and exits with code 2; library users catch :class:`VisrepError`.
"""

from __future__ import annotations

import ast
import re


class VisrepError(Exception):
    """Base class of all user-facing errors; the message names the thing and what was expected."""


class DataError(VisrepError):
    """A data file or folder is missing, unreadable, empty or in the wrong format."""


class ConfigError(VisrepError):
    """An option, config name or combination of options is invalid."""


class CheckpointError(VisrepError):
    """A checkpoint is missing, corrupt or not a visrep checkpoint."""


class ShapeError(VisrepError):
    """A tensor given by the user has the wrong shape or dtype."""


def one_line(msg: str) -> str:
    """A message folded onto one line (at most 600 characters), as the CLI prints it."""
    text = re.sub(r"\s+", " ", parser_message(str(msg)) or str(msg)).strip()
    # jsonargparse explains a bad subclass option through every Union member; keep the reason.
    m = re.search(
        r'Parser key "([^"]+)".*?Problem with given class_path \'([^\']+)\': (.+?) - Expected', text
    )
    if m:
        text = f"{m.group(1)} ({m.group(2)}): {m.group(3)}"
    return text if len(text) <= 600 else text[:597] + "..."


def visrep_cause(e: BaseException) -> VisrepError | None:
    """The VisrepError behind an exception that a library (jsonargparse, Lightning) wrapped."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, VisrepError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class TrainingError(VisrepError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "NoneType": "null",
    "tuple": "a list ([a,b] or a,b)",
    "list": "a list ([a,b] or a,b)",
    "dict": "a mapping",
}


def _type_words(expected: str) -> str | None:
    """jsonargparse's ``Expected a <class 'int'>`` (the part after "Expected a") in words."""
    if expected.startswith("path but"):
        return None  # the alternative of reading the value as a config file
    if expected.startswith("dot import path string"):
        return "an import path of a class"
    m = re.fullmatch(r"typing\.Literal\[(.*)\]", expected)
    if m:
        try:
            values = ast.literal_eval(f"[{m.group(1)}]")
        except (ValueError, SyntaxError):
            return f"one of {m.group(1)}"
        return "one of " + ", ".join(map(str, values))
    m = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>", expected)
    name = m.group(1) if m else expected
    return _TYPE_WORDS.get(name, name)


def parser_message(text: str) -> str | None:
    """jsonargparse's report of a value of the wrong type said in one clause, ``--KEY must be
    TYPES, got VALUE``; None when ``text`` is not such a report.

    jsonargparse explains a bad nested value (``--model.optim.lr fast``) through every member
    of every Union on the way; the innermost ``Parser key`` block says what was expected.
    """
    lines = text.splitlines()
    keys = [(i, m.group(1)) for i, line in enumerate(lines)
            for m in re.finditer(r'Parser key "([^"]+)"', line)]  # fmt: skip
    if not keys:
        return None
    at = keys[-1][0]
    indent = len(lines[at]) - len(lines[at].lstrip(" -"))
    block = [lines[at].rsplit('Parser key "', 1)[-1]]
    for line in lines[at + 1 :]:
        if line.strip() and len(line) - len(line.lstrip(" -")) <= indent:
            break
        block.append(line)
    if any("Problem with given class_path" in line for line in block):
        return None  # a class that cannot be used: the reason is not a type
    words: list[str] = []
    choices: list[str] = []  # the members of every Literal, said once
    for line in block:
        m = re.search(r"Expected a (.+?)(?:\. Got value: .*)?$", line.strip())
        w = _type_words(m.group(1).strip()) if m else None
        if w and w.startswith("one of "):
            choices += [c for c in w.removeprefix("one of ").split(", ") if c not in choices]
        elif w and w not in words:
            words.append(w)
    if choices:
        words.insert(0, "one of " + ", ".join(choices))
    if not words:
        return None
    nested = re.findall(r"NestedArg\(key='([^']*)', val=(.*)\)\s*$", text, flags=re.M)
    if nested:
        key, raw = f"{keys[0][1]}.{nested[-1][0]}", nested[-1][1]
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    else:
        key = ".".join(dict.fromkeys(k for _, k in keys))
        got = re.search(r"Got value: (.*?)(?:\. Got value: .*)?$", "\n".join(block), flags=re.M)
        given = re.findall(r"Given value: (.*)$", text, flags=re.M)
        value = got.group(1) if got else (given[-1] if given else "")
    return f"--{key} must be {' or '.join(words)}, got {value!r}"
