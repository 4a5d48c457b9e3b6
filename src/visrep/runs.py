"""The run directory and checkpoint files: paths, atomic writes, one writer per run, safe reads.

Layout (DESIGN.md): ``config.yaml``, ``checkpoints/{best,last}.ckpt``, ``metrics.csv``,
``metrics.json``, ``plots/*.png``, ``predictions/``, ``report.html``. Everything that writes into
a run directory goes through :class:`RunDir`; every checkpoint is read by
:func:`load_checkpoint` (``weights_only=True``, one-line errors) and written atomically.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import pickle
import socket
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import CheckpointIO

from visrep.errors import CheckpointError, VisrepError

# The version of the checkpoint layout (task hyper-parameters, state-dict names). Checkpoints
# written before version 2 of the architecture carry no "visrep" entry.
CHECKPOINT_FORMAT = 2


class RunLockedError(VisrepError):
    """Another process is writing into the run directory."""


def _file_mode() -> int:
    # os.umask both sets and returns the mask; set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, write: Any) -> None:
    """Write a file atomically: ``write(fileobj)`` into a temp file beside it, then rename.

    A crash mid-write leaves the previous file intact (``os.replace`` is atomic on POSIX). The
    file gets the mode a plain ``open`` would give it (``0666`` less the umask), not
    ``mkstemp``'s ``0600``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _file_mode())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    Raises:
        CheckpointError: the file is missing, corrupt, truncated or holds Python objects.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(
            f"checkpoint {str(p)!r} is a folder; expected a .ckpt file (a run keeps its "
            "checkpoints in RUN/checkpoints/best.ckpt and last.ckpt)"
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        with warnings.catch_warnings():  # a file in another pickle protocol is refused below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AssertionError,  # torch asserts on some corrupt storage records
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
    ) as e:
        msg = str(e)
        if "GLOBAL" in msg.upper() and ("unsupported" in msg.lower() or "weights_only" in msg):
            why = "it holds pickled Python objects, which a visrep checkpoint never does; refused"
        elif p.stat().st_size == 0:
            why = "the file is empty"
        else:
            why = f"truncated or not a torch checkpoint: {type(e).__name__}"
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read ({why})") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"checkpoint {str(p)!r} is not a Lightning checkpoint (no state_dict)"
        )
    return ckpt


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint IO that writes atomically and reads with ``weights_only=True``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        atomic_write_bytes(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict:
        return load_checkpoint(path, map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)


class RunLock:
    """An exclusive ``fcntl`` lock on ``RUN_DIR/.lock`` holding the owner's PID and host.

    The kernel drops the lock when the process ends, however it ends (kill -9 included), so a
    lock left by a dead process never blocks a run: only a live holder does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunLockedError(
                f"run directory {str(self.path.parent)!r} is in use by {holder}; wait for it to "
                "finish or choose another --run_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def check(self) -> None:
        """Raise :class:`RunLockedError` now if another process holds the lock (a tool calls
        this before long work whose results it writes under the lock)."""
        if self._fd is None:
            self.acquire().release()

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunDir:
    """Paths and atomic file helpers of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    def ckpt(self, which: str) -> Path:
        """``checkpoints/<which>.ckpt`` (``best`` or ``last``)."""
        return self.checkpoints / f"{which}.ckpt"

    def trained_ckpt(self) -> Path | None:
        """The run's model: ``best.ckpt``, or ``last.ckpt`` for a run that keeps no best (a task
        without a metric to select on); None if it has neither."""
        return next((c for c in (self.ckpt("best"), self.ckpt("last")) if c.is_file()), None)

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def is_run(self) -> bool:
        """Whether the folder looks like a run directory (a config, metrics or checkpoints)."""
        return any(
            p.exists()
            for p in (
                self.root / "config.yaml",
                self.metrics_csv,
                self.metrics_json,
                self.checkpoints,
            )
        )

    def lock(self) -> RunLock:
        """The run's writer lock (``with run.lock(): ...`` or ``run.lock().acquire()``)."""
        return RunLock(self.root / ".lock")

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete ``.*.tmp`` files that an interrupted atomic write left; call under the lock."""
        removed = []
        for folder in (self.root, self.checkpoints, self.plots, self.predictions):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def write_text(self, path: Path, text: str) -> None:
        atomic_write_bytes(path, lambda f: f.write(text.encode()))

    def write_csv(self, path: Path, rows: Iterable[Sequence[Any]]) -> None:
        """Rows (the first one the header) as a CSV file, written atomically."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        self.write_text(path, buf.getvalue())

    def write_bytes(self, path: Path, data: bytes) -> None:
        atomic_write_bytes(path, lambda f: f.write(data))

    def write_prediction_image(self, index: int, name: str, image: Any) -> str:
        """A PIL image as ``predictions/<index>_<stem of name>.png``, atomically; returns that
        path relative to the run (what ``predictions.csv`` lists)."""
        rel = Path("predictions") / f"{index:05d}_{Path(name).stem}.png"
        atomic_write_bytes(self.root / rel, lambda f: image.save(f, format="PNG"))
        return str(rel)

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics_json.is_file():
            return {}
        return json.loads(self.metrics_json.read_text())

    def update_metrics(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into metrics.json (NaN and inf become null) and return the result."""
        merged = self.read_metrics()
        for k, v in values.items():
            merged[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self.write_text(self.metrics_json, json.dumps(merged, indent=2, sort_keys=True) + "\n")
        return merged

    def read_epochs(self) -> list[dict[str, str]]:
        if not self.metrics_csv.is_file():
            return []
        with open(self.metrics_csv, newline="") as f:
            return list(csv.DictReader(f))

    def write_epochs(self, rows: list[dict[str, Any]]) -> None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        keys = ["epoch", *sorted(k for k in keys if k != "epoch")]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        self.write_text(self.metrics_csv, buf.getvalue())
