"""Unpaired two-domain images (visrep.data.generative.unpaired): CycleGAN's trainA/trainB/
testA/testB layout, resizing, held-out splits, random per-epoch partners, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data import LoaderConfig, SplitConfig, UnpairedImageDataModule
from visrep.data.generative import UnpairedSampler
from visrep.errors import ConfigError, DataError


def _write(folder: Path, n: int, value0: int, size=(8, 8), mode: str = "L", nested=False) -> None:
    """``n`` images whose top-left pixel is ``value0 + i`` (so tests can tell them apart)."""
    for i in range(n):
        sub = folder / (f"part{i % 2}" if nested else "")
        sub.mkdir(parents=True, exist_ok=True)
        shape = (*size, 3) if mode == "RGB" else size
        arr = np.full(shape, 30, dtype=np.uint8)
        arr[0, 0] = value0 + i
        Image.fromarray(arr, mode).save(sub / f"{i:03d}.png")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """trainA: 6 grey, trainB: 4 grey (nested), testA: 3, testB: 2; all 8x8."""
    root = tmp_path / "a2b"
    _write(root / "trainA", 6, 100)
    _write(root / "trainB", 4, 200, nested=True)
    _write(root / "testA", 3, 110)
    _write(root / "testB", 2, 210)
    return root


def _first(x: torch.Tensor) -> int:
    return round(float(x[..., 0, 0].reshape(-1)[0]) * 255)


def test_reads_the_layout_and_pairs_val_test_by_index(tree):
    dm = UnpairedImageDataModule(str(tree), split=SplitConfig(val_fraction=0.0))
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set), dm.val_set) == (6, 3, None)
    test = [dm.test_set[i] for i in range(3)]
    assert [_first(s["image"]) for s in test] == [110, 111, 112]
    assert [_first(s["image_b"]) for s in test] == [210, 211, 210]  # B[i % len(B)]
    assert test[0]["image"].shape == (1, 8, 8) and test[0]["image_b"].shape == (1, 8, 8)
    assert dm.sample_names("train", "B")[0].endswith("part0/000.png")  # nested files found
    spec = dm.spec()
    assert spec.family == "unpaired" and spec.keys == ("image", "image_b")
    assert (spec.in_chans, spec.image_size, spec.class_names) == (1, (8, 8), ("A", "B"))
    # mean of the training A images: 63 pixels of 30 and one of 100 + i, i = 0..5
    mean = (63 * 30 + 100 + 2.5) / 64 / 255
    assert spec.mean[0] == pytest.approx(mean, rel=1e-6)


def test_training_partners_are_random_per_epoch_and_seeded(tree):
    dm = UnpairedImageDataModule(str(tree), loader=LoaderConfig(batch_size=3))
    dm.setup()
    assert len(dm.train_set) == 6 - 1 and len(dm.val_set) == 1  # val held out of each domain
    sampler = UnpairedSampler(5, 3, seed=7)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(5)) and all(0 <= j < 3 for _, j in first)
    assert list(UnpairedSampler(5, 3, seed=7)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    big = UnpairedSampler(2000, 10)
    counts = np.bincount([j for _, j in big], minlength=10)
    assert counts.min() > 150  # uniform partners: 200 each on average
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 1, 8, 8) and batch["image_b"].shape == (3, 1, 8, 8)
    assert type(batch["image_b"]) is torch.Tensor
    sample = dm.train_set[(4, 2)]
    b_files = dm.sample_names("train", "B")
    assert _first(sample["image_b"]) == 200 + int(Path(b_files[2]).stem)


def test_resizes_and_converts_channels(tmp_path):
    root = tmp_path / "mixed"
    _write(root / "trainA", 4, 100, size=(8, 12))
    _write(root / "trainB", 4, 150, size=(16, 16), mode="RGB")
    _write(root / "testA", 2, 100, size=(8, 8))
    _write(root / "testB", 2, 100, size=(8, 8), mode="RGB")
    with pytest.raises(DataError) as e:
        UnpairedImageDataModule(str(root)).setup()
    msg = str(e.value)
    assert "is 16x16 but" in msg and "8x12" in msg and "data.image_size" in msg
    assert "\n" not in msg
    for cache in (True, False):
        dm = UnpairedImageDataModule(str(root), image_size=6, cache=cache)
        dm.setup()
        s = dm.test_set[0]
        assert s["image"].shape == (3, 6, 6) and s["image_b"].shape == (3, 6, 6)  # B is RGB
        assert dm.spec().in_chans == 3 and dm.spec().image_size == (6, 6)
    grey = UnpairedImageDataModule(str(root), image_size=(4, 6), channels=1, cache=False)
    grey.setup()
    assert grey.train_set[0]["image_b"].shape == (1, 4, 6)


def test_cached_and_streamed_images_agree(tree):
    a = UnpairedImageDataModule(str(tree), cache=True)
    b = UnpairedImageDataModule(str(tree), cache=False)
    a.setup()
    b.setup()
    for i in range(len(a.test_set)):
        x, y = a.test_set[i], b.test_set[i]
        for k in ("image", "image_b"):  # uint8 * (1 / 255) against float / 255
            assert torch.allclose(x[k], y[k], atol=1e-6, rtol=0)


def test_held_out_splits_without_test_folders(tmp_path):
    root = tmp_path / "notest"
    _write(root / "trainA", 10, 100)
    _write(root / "trainB", 5, 150)
    dm = UnpairedImageDataModule(
        str(root), split=SplitConfig(val_fraction=0.25, test_fraction=0.2, train_samples=4)
    )
    dm.setup()
    files = dm.files
    for d, n in (("A", 10), ("B", 5)):
        parts = [set(files[s][d]) for s in ("train", "val", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[2]) == int(np.ceil(0.2 * n))
    # A: 10 - 2 test - 2 val = 6, capped at 4; B: 5 - 1 - 1 = 3
    assert len(files["train"]["A"]) == 4 and len(files["train"]["B"]) == 3
    assert len(dm.train_set) == 4 and len(dm.test_set) == 2


def test_one_line_errors(tmp_path, tree):
    root = tmp_path / "half"
    _write(root / "trainA", 2, 100)
    with pytest.raises(DataError, match=r"has no folder .*trainB.*CycleGAN's layout") as e:
        UnpairedImageDataModule(str(root)).setup()
    assert "\n" not in str(e.value)
    _write(root / "trainB", 2, 100)
    _write(root / "testA", 2, 100)
    with pytest.raises(DataError, match=r"no partner folder .*testB"):
        UnpairedImageDataModule(str(root)).setup()
    empty = tmp_path / "empty"
    (empty / "trainA").mkdir(parents=True)
    (empty / "trainB").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        UnpairedImageDataModule(str(empty)).setup()
    with pytest.raises(DataError, match="is not a folder"):
        UnpairedImageDataModule(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="classes_per_batch"):
        UnpairedImageDataModule(str(tree), loader=LoaderConfig(classes_per_batch=2))
    with pytest.raises(ConfigError, match=r"data\.channels"):
        UnpairedImageDataModule(str(tree), channels=2)
    notest = tmp_path / "notest"
    _write(notest / "trainA", 3, 100)
    _write(notest / "trainB", 3, 100)
    with pytest.raises(ConfigError, match="test_fraction must be > 0"):
        UnpairedImageDataModule(str(notest), split=SplitConfig(test_fraction=0.0)).setup()
