"""User-facing errors.

Every mistake a user can make (missing file, bad format, bad option, wrong shape, corrupt
checkpoint) raises a subclass of :class:`VisrepError`. The CLI prints ``error: <message>`` on one
line and exits with code 2; library users catch :class:`VisrepError`.
"""


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
