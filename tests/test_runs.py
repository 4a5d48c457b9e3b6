import math
import os
import pickle
import subprocess
import sys

import pytest
import torch

from visrep.errors import CheckpointError
from visrep.runs import (
    RunDir,
    RunLockedError,
    SafeCheckpointIO,
    atomic_write_bytes,
    load_checkpoint,
)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(p, boom)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


def test_checkpoint_roundtrip_and_errors(tmp_path):
    io = SafeCheckpointIO()
    ckpt = {"state_dict": {"w": torch.arange(3.0)}, "epoch": 4, "hyper_parameters": {"lr": 0.1}}
    io.save_checkpoint(ckpt, tmp_path / "c.ckpt")
    back = io.load_checkpoint(tmp_path / "c.ckpt")
    assert back["epoch"] == 4 and torch.equal(back["state_dict"]["w"], torch.arange(3.0))
    (tmp_path / "trunc.ckpt").write_bytes((tmp_path / "c.ckpt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"trunc\.ckpt' cannot be read \(truncated"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_rundir_metrics_merge_and_epochs(tmp_path):
    run = RunDir(tmp_path)
    run.update_metrics({"a": 1.0, "b": math.nan})
    assert run.update_metrics({"c": 2}) == {"a": 1.0, "b": None, "c": 2}
    run.write_epochs([{"epoch": 0, "x": 1.5}, {"epoch": 1, "y": 2}])
    rows = run.read_epochs()
    assert list(rows[0]) == ["epoch", "x", "y"] and rows[1]["y"] == "2" and rows[0]["y"] == ""


def test_atomic_writes_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "m.bin", lambda f: f.write(b"x"))
        RunDir(tmp_path).update_metrics({"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "m.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_pickled_object_checkpoint_is_refused_and_named(tmp_path):
    p = tmp_path / "evil.ckpt"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": {}, "x": _Evil()}, f)
    torch.save({"state_dict": {}, "x": _Evil()}, tmp_path / "evil2.ckpt")
    for path in (p, tmp_path / "evil2.ckpt"):
        with pytest.raises(CheckpointError, match=r"pickled Python objects|cannot be read"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "evil2.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_checkpoint(tmp_path / "empty.ckpt")


def test_run_lock_is_exclusive_across_processes_and_freed_on_exit(tmp_path):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from visrep.runs import RunDir; "
            f"RunDir({str(run.root)!r}).lock().acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use by pid {holder.pid} on host"):
            run.lock().acquire()
    finally:
        holder.kill()  # like kill -9: the kernel drops the lock
        holder.wait()
    # The dead holder's lock file does not block; a second lock in the same process is refused.
    with run.lock(), pytest.raises(RunLockedError):
        RunDir(run.root).lock().acquire()
    with run.lock():
        pass


def test_stale_temp_files_are_removed(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoints.mkdir()
    (run.checkpoints / ".last.ckpt.abc123.tmp").write_bytes(b"partial")
    (run.checkpoints / "last.ckpt").write_bytes(b"ok")
    (tmp_path / ".metrics.json.x.tmp").write_text("{")
    removed = run.remove_stale_temp_files()
    assert len(removed) == 2 and [p.name for p in run.checkpoints.iterdir()] == ["last.ckpt"]
