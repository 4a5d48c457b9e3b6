"""User-facing errors.

Every mistake a user can make (missing file, bad format, bad option, wrong shape, corrupt
checkpoint) raises a subclass of :class:`VisrepError`. The CLI prints ``error: <message>`` on one
line and exits with code 2; library users catch :class:`VisrepError`.
"""

from __future__ import annotations

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
    text = re.sub(r"\s+", " ", str(msg)).strip()
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
