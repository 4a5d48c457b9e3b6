import math

import pytest
import torch

from visrep.errors import CheckpointError
from visrep.trainer.checkpoint_io import SafeCheckpointIO, atomic_write_bytes, load_checkpoint
from visrep.trainer.rundir import RunDir


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
    with pytest.raises(CheckpointError, match=r"trunc\.ckpt' is corrupt"):
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
