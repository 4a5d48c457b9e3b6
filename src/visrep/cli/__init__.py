"""The ``visrep`` command: :func:`main` (in-process, returns the exit code) and :func:`entry`
(the console script). :mod:`visrep.cli.argv` rewrites the arguments, :mod:`visrep.cli.main`
parses and runs them."""

from visrep.cli.main import TOOL_COMMANDS, TRAIN_COMMANDS, VisrepCLI, entry, main

__all__ = ["TOOL_COMMANDS", "TRAIN_COMMANDS", "VisrepCLI", "entry", "main"]
