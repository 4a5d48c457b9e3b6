"""``python -m visrep`` is the ``visrep`` command (DDP relaunches it the same way)."""

from visrep.cli import entry

if __name__ == "__main__":
    entry()
