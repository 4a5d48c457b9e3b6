"""Shared fixtures: tiny data files written per test, and an in-process CLI runner."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrep.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` (uint8) in the IDX format: magic 0x0000 08 NDIM, big-endian dims, payload."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """An MNIST-layout folder of 60 train and 20 test 12x12 images, 3 classes (gzipped train)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "idx"
    root.mkdir()
    for split, n, gz in (("train", 60, True), ("t10k", 20, False)):
        labels = np.arange(n) % 3
        images = rng.integers(0, 50, (n, 12, 12), dtype=np.uint8)
        for c in range(3):  # a class-dependent bright square, so the task is learnable
            images[labels == c, 2 + 3 * c : 5 + 3 * c, 2:10] = 250
        suffix = ".gz" if gz else ""
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8), gz)
    return root


@pytest.fixture
def folder_tree(tmp_path: Path) -> Path:
    """``root/<class>/*.png``: 3 classes x 8 RGB 10x10 images."""
    rng = np.random.default_rng(1)
    root = tmp_path / "folder"
    for c, name in enumerate(("cat", "dog", "owl")):
        (root / name).mkdir(parents=True)
        for i in range(8):
            img = rng.integers(0, 60, (10, 10, 3), dtype=np.uint8)
            img[..., c] = 220
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``visrep`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """In-process runs with ``trainer.deterministic: true`` switch torch's deterministic mode on
    for the whole process; every test starts from the mode it found."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)
