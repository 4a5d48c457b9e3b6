"""The ``visrep`` tool commands, one file each: ``inspect``, ``explain``, ``attack``, ``events``,
``report``, ``data``, ``embed``, ``generate``, ``points``. Each exposes ``main(argv) -> int``; ``visrep.cli.TOOL_COMMANDS`` names them.

A command parses its options (a parser generated from the typed signature of its function, see
``_common``), calls the library (``visrep.analysis``, ``visrep.events``, ``visrep.plots``) and
writes into the run directory under the run's writer lock. Nothing imports this package but the
``visrep`` entry point.
"""
