"""2-d Gaussian mixtures (visrep.data.generative.gaussians): the modes, seeded draws, per-mode
std, batched loading, and the data module from a LightningCLI config."""

from __future__ import annotations

import math

import pytest
import torch

from visrep.data import GaussianMixtureDataModule, LoaderConfig, mixture_modes, sample_mixture
from visrep.data.generative import PointDataset
from visrep.data.generative.gaussians import mode_names
from visrep.errors import ConfigError, ShapeError


def test_modes_ring_and_grid():
    ring = mixture_modes("ring8")
    assert ring.shape == (8, 2) and ring.dtype == torch.float32
    assert torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]).remainder(2 * math.pi)
    assert torch.allclose(angles, torch.arange(8) * (math.pi / 4), atol=1e-6)
    assert ring[2].tolist() == [0.0, 2.0]  # exact zeros, no 1e-16 left over
    grid = mixture_modes("grid25")
    assert sorted(set(grid.flatten().tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(r) for r in grid.tolist()}) == 25
    assert mixture_modes("ring8", radius=1.0).norm(dim=1).max() == pytest.approx(1.0)
    assert mode_names(grid)[:2] == ("(-4, -4)", "(-2, -4)")
    with pytest.raises(ConfigError, match=r"data\.mixture must be one of ring8, grid25"):
        mixture_modes("ring9")


def test_sample_mixture_is_seeded_and_has_the_std():
    modes = mixture_modes("grid25")
    a = sample_mixture(modes, 0.3, 50_000, torch.Generator().manual_seed(4))
    b = sample_mixture(modes, 0.3, 50_000, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    pts, lab = a
    offsets = pts - modes[lab]
    assert offsets.std().item() == pytest.approx(0.3, rel=0.01)
    assert offsets.mean(0).abs().max() < 0.01
    assert torch.bincount(lab, minlength=25).min() > 1700  # 2,000 each on average


def test_data_module_is_deterministic_with_the_configured_std():
    dm = GaussianMixtureDataModule("grid25", train_size=60_000, seed=1)
    dm.setup()
    again = GaussianMixtureDataModule("grid25", train_size=60_000, seed=1)
    again.setup()
    other = GaussianMixtureDataModule("grid25", train_size=60_000, seed=2)
    other.setup()
    train = dm.train_set.dataset
    assert torch.equal(train.points, again.train_set.dataset.points)
    assert not torch.equal(train.points, other.train_set.dataset.points)
    # per mode: mean at the centre, std 0.05 (grid25's default) in each coordinate
    offsets = train.points - dm.modes[train.labels]
    for k in (0, 12, 24):
        o = offsets[train.labels == k]
        assert o.std(0).tolist() == pytest.approx([0.05, 0.05], rel=0.06)
        assert o.mean(0).abs().max() < 0.005
    # validation and test do not move with the training size, and differ from each other
    small = GaussianMixtureDataModule("grid25", train_size=100, seed=1)
    small.setup()
    assert torch.equal(small.val_set.points, dm.val_set.points)
    assert not torch.equal(dm.val_set.points, dm.test_set.points)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (60_000, 2_500, 2_500)
    ring = GaussianMixtureDataModule("ring8", std=0.1, train_size=20_000)
    ring.setup()
    d = ring.train_set.dataset
    assert (d.points - ring.modes[d.labels]).std().item() == pytest.approx(0.1, rel=0.02)


def test_batches_and_spec():
    dm = GaussianMixtureDataModule(train_size=1_000, val_size=300, loader=LoaderConfig(128))
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["point"].shape == (128, 2) and batch["point"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    pts = dm.train_set.dataset.points  # every batch point is one of the training points
    assert (batch["point"][:, None] == pts[None]).all(-1).any(1).all()
    val = list(dm.val_dataloader())
    assert sum(len(b["label"]) for b in val) == 300
    assert torch.equal(torch.cat([b["point"] for b in val]), dm.val_set.points)
    assert dm.train_set[0]["point"].shape == (2,)  # one sample, as other data sets give
    spec = dm.spec()
    assert spec.family == "mixture2d" and spec.keys == ("point", "label")
    assert spec.point_dim == 2 and spec.num_classes == 8 and spec.class_names[0] == "(2, 0)"
    assert spec.in_chans is None and type(spec).from_dict(spec.to_dict()) == spec


def test_bad_options():
    with pytest.raises(ConfigError, match=r"data\.std must be a finite number > 0"):
        GaussianMixtureDataModule(std=0.0)
    with pytest.raises(ConfigError, match=r"data\.train_size must be an integer >= 1"):
        GaussianMixtureDataModule(train_size=0)
    with pytest.raises(ShapeError, match="points"):
        PointDataset(torch.zeros(3, 2), torch.zeros(4))


def test_from_a_lightning_cli_config(cli, capsys):
    with pytest.raises(SystemExit) as e:  # --print_config prints and exits
        cli(
            "fit",
            "--config",
            "quickstart",
            "--data",
            "visrep.data.GaussianMixtureDataModule",
            "--data.mixture",
            "grid25",
            "--data.std",
            "0.1",
            "--print_config",
        )
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "class_path: visrep.data.GaussianMixtureDataModule" in out
    assert "mixture: grid25" in out and "std: 0.1" in out
