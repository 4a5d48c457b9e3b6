"""DistortedDigitsDataModule (issue 18): the STN paper's R / RTS / P / E distortions, seeded
per sample, on scikit-learn's digits, a written IDX folder, an npz archive and (when installed)
Fashion-MNIST."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from visrep.data import DistortedDigitsDataModule, DistortionConfig, LoaderConfig, SplitConfig
from visrep.data.classification.distorted import (
    DistortedDataset,
    distort_images,
    distortion_grid,
    hash_uniform,
)
from visrep.data.datasets import ArrayImageDataset
from visrep.errors import ConfigError, DataError

KINDS = ["rotation", "rts", "projective", "elastic"]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _digits(n: int = 40, size: int = 16) -> ArrayImageDataset:
    # asymmetric blobs: an L shape, so every distortion visibly moves pixels
    x = np.zeros((n, 1, size, size), dtype=np.uint8)
    x[:, 0, 3 : size - 3, 4:7] = 255
    x[:, 0, size - 6 : size - 3, 4 : size - 4] = 200
    x[np.arange(n), 0, 5, np.arange(n) % size] = 100  # something per sample
    return ArrayImageDataset(x, np.arange(n) % 10)


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_by_seed_and_index(kind):
    base = _digits()
    cfg = DistortionConfig(kind=kind, seed=3)
    a = DistortedDataset(base, cfg, 0).__getitems__([5, 9, 2]).batch
    b = DistortedDataset(base, cfg, 0).__getitems__([2, 5]).batch  # another batch, another order
    assert torch.equal(a["image"][0], b["image"][1]) and torch.equal(a["image"][2], b["image"][0])
    single = DistortedDataset(base, cfg, 0)[9]
    assert torch.equal(single["image"], a["image"][1]) and single["label"] == 9
    other = DistortedDataset(base, DistortionConfig(kind=kind, seed=4), 0).__getitems__([5]).batch
    assert not torch.equal(other["image"][0], a["image"][0])  # the seed matters
    test_split = DistortedDataset(base, cfg, 1).__getitems__([5]).batch
    assert not torch.equal(test_split["image"][0], a["image"][0])  # so does the split


@pytest.mark.parametrize("kind", KINDS)
def test_each_distortion_changes_images_and_keeps_labels(kind):
    base = _digits()
    idx = list(range(16))
    raw = base.__getitems__(idx).batch
    out = DistortedDataset(base, DistortionConfig(kind=kind), 0).__getitems__(idx).batch
    assert torch.equal(out["label"], raw["label"])
    assert out["image"].dtype == torch.float32
    assert float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1
    if kind == "rts":
        assert out["image"].shape == (16, 1, 24, 24)  # the 1.5x canvas
        return
    assert out["image"].shape == raw["image"].shape
    changed = (out["image"] - raw["image"]).abs().flatten(1).amax(1)
    assert bool((changed > 0.2).all()), changed


def test_rts_canvas_is_42_for_28_pixel_digits():
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1
    y = distort_images(x, DistortionConfig(kind="rts"), [0, 1])
    assert y.shape == (2, 1, 42, 42)
    assert DistortionConfig(kind="rts", canvas=2.0).out_size((28, 28)) == (56, 56)
    # the whole digit stays on the canvas: mass is kept up to the scale s^2 in [0.49, 1.44]
    mass = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert bool(((mass > 0.45) & (mass < 1.5)).all()), mass


def test_rotation_angles_are_uniform_in_range():
    # the rotation part of the grid: angle of the mapped x axis, for 2000 samples
    g = distortion_grid(DistortionConfig(kind="rotation"), (9, 9), np.arange(2000))
    d = g[:, 4, 5] - g[:, 4, 4]  # one pixel to the right, from the centre
    angles = torch.rad2deg(torch.atan2(d[:, 1], d[:, 0])).abs()
    assert float(angles.max()) <= 90 + 1e-6 and float(angles.max()) > 85
    assert abs(float(angles.mean()) - 45) < 3  # |U(-90, 90)| has mean 45
    none = distortion_grid(DistortionConfig(kind="rotation", max_angle=0), (9, 9), np.arange(3))
    ident = distortion_grid(DistortionConfig(kind="none"), (9, 9), np.arange(3))
    assert torch.allclose(none, ident)


def test_rotation_by_ninety_degrees_is_rot90():
    x = torch.rand(1, 1, 7, 7, generator=torch.Generator().manual_seed(0))
    cfg = DistortionConfig(kind="rotation")
    u = hash_uniform(cfg.seed, 0, np.arange(5000), 4)
    i = int(np.argmax(u[:, 0]))  # the draw closest to +90 degrees
    angle = (2 * u[i, 0] - 1) * 90
    assert angle > 89.9
    y = distort_images(x, cfg, [i])
    turned = [torch.rot90(x, k, (2, 3)) for k in (1, -1)]
    assert min(float((y - t).abs().max()) for t in turned) < 0.05


def test_hash_uniform_is_uniform_and_independent():
    u = hash_uniform(0, 0, np.arange(20000), 3)
    assert u.min() >= 0 and u.max() < 1
    assert np.allclose(u.mean(0), 0.5, atol=0.01) and np.allclose(u.var(0), 1 / 12, atol=0.003)
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.03  # neighbouring indices
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03  # the columns of one sample


def test_data_module_on_sklearn_digits():
    dm = DistortedDigitsDataModule(
        distortion=DistortionConfig(kind="rts"),
        loader=LoaderConfig(batch_size=32, num_workers=0),
        split=SplitConfig(train_samples=200),
    )
    dm.setup()
    spec = dm.spec()
    assert spec.image_size == (12, 12) and spec.in_chans == 1 and spec.num_classes == 10
    assert len(dm.train_set) == 200
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (32, 1, 12, 12) and batch["label"].shape == (32,)
    assert 0 < spec.mean[0] < 0.3  # statistics of the distorted (mostly empty canvas) images


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    n, h, w = images.shape
    head = bytes([0, 0, 8, 3]) + np.array([n, h, w], dtype=">u4").tobytes()
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(head + images.astype(np.uint8).tobytes())
    head = bytes([0, 0, 8, 1]) + np.array([n], dtype=">u4").tobytes()
    (folder / f"{split}-labels-idx1-ubyte").write_bytes(head + labels.astype(np.uint8).tobytes())


def test_data_module_on_idx_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((60, 10, 10)) * 255).astype(np.uint8)
    labels = np.arange(60) % 3
    _write_idx(tmp_path, images, labels, "train")
    _write_idx(tmp_path, images[:20], labels[:20], "t10k")
    dm = DistortedDigitsDataModule(str(tmp_path), DistortionConfig(kind="elastic"),
                                   loader=LoaderConfig(batch_size=8, num_workers=0))  # fmt: skip
    dm.setup()
    assert dm.spec().num_classes == 3 and len(dm.test_set) == 20
    assert not torch.equal(dm.test_set[0]["image"], torch.from_numpy(images[:1] / 255).float())
    npz = tmp_path / "d.npz"
    np.savez(npz, x=images, y=labels)
    dm = DistortedDigitsDataModule(str(npz), DistortionConfig(kind="projective"),
                                   split=SplitConfig(test_fraction=0.25))  # fmt: skip
    dm.setup()
    assert len(dm.test_set) == 15 and dm.spec().image_size == (10, 10)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST IDX files not installed")
def test_fashion_mnist_rts():
    dm = DistortedDigitsDataModule(str(FASHION), DistortionConfig(kind="rts"),
                                   split=SplitConfig(train_samples=500))  # fmt: skip
    dm.setup()
    assert dm.spec().image_size == (42, 42) and len(dm.test_set) == 10000
    x = dm.test_set.__getitems__(list(range(64))).batch["image"]
    assert x.shape == (64, 1, 42, 42) and math.isfinite(float(x.sum()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "shear"}, "data.distortion.kind must be"),
        ({"scale": (1.2, 0.7)}, "data.distortion.scale"),
        ({"canvas": 0.5}, "data.distortion.canvas must be >= 1"),
        ({"max_angle": 270}, "max_angle must be in"),
    ],
)
def test_bad_distortion_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DistortionConfig(**kwargs)


def test_bad_root(tmp_path):
    with pytest.raises(DataError, match=r"neither an IDX folder nor an \.npz"):
        DistortedDigitsDataModule(str(tmp_path / "nope.txt"))
