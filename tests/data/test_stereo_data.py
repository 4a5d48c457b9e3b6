"""Stereo pairs on disk: PFM, the three layouts, disparity readers, augmentation, DataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.stereo import (
    IMAGE_RIGHT,
    StereoAugment,
    StereoDataModule,
    augment_pair,
    read_disparity,
    read_pfm,
    resize_disparity,
    scan_stereo,
    write_pfm,
)
from visrep.errors import ConfigError, DataError

STEREO = SHARED_DATA / "stereo"


def write_synthetic_pairs(root: Path, n: int = 4, size: tuple[int, int] = (24, 32)) -> Path:
    """``left/ right/ disp/`` of ``n`` textured pairs, each a constant disparity of 1 + i px
    (``L(x) = R(x - d)``), the disparity as PFM with an unknown (inf) first column."""
    g = np.random.default_rng(0)
    h, w = size
    for sub in ("left", "right", "disp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        d = 1 + i
        low = g.random((h // 4 + 2, (w + d) // 4 + 2, 3))
        big = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((w + d, h)))
        Image.fromarray(big[:, :w]).save(root / "left" / f"p{i}.png")
        Image.fromarray(big[:, d:]).save(root / "right" / f"p{i}.png")
        disp = np.full((h, w), float(d), np.float32)
        disp[:, 0] = np.inf
        write_pfm(root / "disp" / f"p{i}.pfm", disp)
    return root


def test_pfm_round_trip_both_byte_orders(tmp_path: Path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    a[1, 2] = np.inf
    assert np.array_equal(read_pfm(write_pfm(tmp_path / "a.pfm", a)), a)
    rgb = np.random.default_rng(0).random((2, 5, 3)).astype(np.float32)
    assert np.array_equal(read_pfm(write_pfm(tmp_path / "c.pfm", rgb)), rgb)
    # big-endian (positive scale), rows bottom to top, as other writers produce
    body = np.ascontiguousarray(a[::-1]).astype(">f4").tobytes()
    (tmp_path / "b.pfm").write_bytes(b"Pf\n4 3\n1.0\n" + body)
    assert np.array_equal(read_pfm(tmp_path / "b.pfm"), a)


def test_pfm_bad_files(tmp_path: Path):
    (tmp_path / "x.pfm").write_bytes(b"P6\n4 3\n255\n")
    with pytest.raises(DataError, match="not a PFM"):
        read_pfm(tmp_path / "x.pfm")
    (tmp_path / "t.pfm").write_bytes(b"Pf\n4 3\n-1.0\n" + b"\0" * 8)
    with pytest.raises(DataError, match="truncated"):
        read_pfm(tmp_path / "t.pfm")
    with pytest.raises(DataError, match="cannot read"):
        read_pfm(tmp_path / "missing.pfm")


def test_disparity_readers(tmp_path: Path):
    png = np.array([[0, 10], [20, 255]], np.uint8)
    Image.fromarray(png).save(tmp_path / "d.png")
    got = read_disparity(str(tmp_path / "d.png"))[0]
    assert torch.isinf(got[0, 0]) and got[1, 1] == 255
    k16 = np.array([[0, 256 * 3]], np.uint16)
    Image.fromarray(k16).save(tmp_path / "k.png")
    assert read_disparity(str(tmp_path / "k.png"), 256.0)[0, 0, 1] == 3.0
    np.savez(tmp_path / "d.npz", np.array([[1.5, np.nan]], np.float32))
    got = read_disparity(str(tmp_path / "d.npz"))
    assert got.shape == (1, 1, 2) and torch.isinf(got[0, 0, 1])
    with pytest.raises(DataError, match="unknown format"):
        read_disparity(str(tmp_path / "d.txt"))


def test_resize_disparity_scales_values_and_keeps_unknown():
    d = torch.tensor([[[4.0, float("inf")], [8.0, 2.0]]])
    half = resize_disparity(d, (2, 1))  # nearest-exact takes column 1 of 2: (inf, 2) / 2
    assert half.tolist() == [[[float("inf")], [1.0]]]
    up = resize_disparity(d, (4, 4))
    assert torch.isinf(up[0, :2, 2:]).all() and up[0, 3, 0] == 16.0


def test_layouts(tmp_path: Path):
    folders = write_synthetic_pairs(tmp_path / "folders", n=2)
    pairs = scan_stereo(folders)
    assert [p.name for p in pairs] == ["p0", "p1"] and pairs[0].disparity.endswith("p0.pfm")
    mb = tmp_path / "mb" / "Motorcycle-perfect"
    mb.mkdir(parents=True)
    for f in ("im0.png", "im1.png"):
        (mb / f).write_bytes((folders / "left" / "p0.png").read_bytes())
    write_pfm(mb / "disp0.pfm", np.zeros((24, 32), np.float32))
    (p,) = scan_stereo(tmp_path / "mb")
    assert p.name == "Motorcycle-perfect" and p.disparity.endswith("disp0.pfm")
    flat = tmp_path / "flat"
    flat.mkdir()
    for a, b in (
        ("aloeL.jpg", "left"),
        ("aloeR.jpg", "right"),
        ("x_left.png", "left"),
        ("x_right.png", "right"),
        ("left01.jpg", "left"),
        ("right01.jpg", "right"),
    ):
        (flat / a).write_bytes((folders / b / "p0.png").read_bytes())  # fmt: skip
    Image.fromarray(np.ones((24, 32), np.uint8)).save(flat / "aloeGT.png")
    got = {p.name: p.disparity for p in scan_stereo(flat)}
    assert set(got) == {"aloe", "x"} and got["aloe"].endswith("aloeGT.png") and got["x"] is None
    with pytest.raises(DataError, match="no rectified stereo pairs"):
        scan_stereo(_empty(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        scan_stereo(tmp_path / "nowhere")


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_pairs_of_different_sizes_raise_one_line(tmp_path: Path):
    root = write_synthetic_pairs(tmp_path / "s", n=1)
    Image.new("RGB", (30, 24)).save(root / "right" / "p0.png")
    dm = StereoDataModule(str(root), size=(16, 16), train_on_eval=True)
    dm.setup("fit")
    with pytest.raises(DataError, match=r"left .* is 32x24 but right .* is 30x24") as e:
        dm.train_set[0]
    assert "\n" not in str(e.value)


def test_unmatched_folders_raise(tmp_path: Path):
    root = write_synthetic_pairs(tmp_path / "s", n=2)
    (root / "right" / "p1.png").unlink()
    with pytest.raises(DataError, match="unmatched: p1"):
        scan_stereo(root)


def test_augment_flip_swaps_the_views_and_crop_keeps_them_aligned():
    left = torch.arange(24.0).view(1, 4, 6) / 24
    right = left.roll(1, -1)
    g = torch.Generator().manual_seed(0)
    seen_flip = seen_keep = False
    for _ in range(20):
        cfg = StereoAugment(crop=(2, 3), hflip=True, color=False)
        a, b = augment_pair(left, right, cfg, g)
        assert a.shape == b.shape == (1, 2, 3)
        # the same window of both views: the crops differ exactly as the views do
        rows = [left[0, r] for r in range(4)]
        flipped = any(torch.equal(a[0, 0], r.flip(-1).roll(1, -1)[k : k + 3]) for r in rows
                      for k in range(4))  # fmt: skip
        seen_flip |= bool(flipped)
        seen_keep |= any(torch.equal(a[0, 0], r[k : k + 3]) for r in rows for k in range(4))
    assert seen_flip and seen_keep
    # a flip is the mirrored RIGHT view as the new left (Godard's swap)
    a, b = augment_pair(left, right, StereoAugment(hflip=True, color=False),
                        _generator_that_flips())  # fmt: skip
    assert torch.equal(a, right.flip(-1)) and torch.equal(b, left.flip(-1))


def _generator_that_flips() -> torch.Generator:
    for seed in range(100):
        g = torch.Generator().manual_seed(seed)
        if float(torch.rand((), generator=g)) < 0.5:
            return torch.Generator().manual_seed(seed)
    raise AssertionError


def test_colour_augmentation_is_the_same_on_both_views():
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    for seed in range(10):
        a, b = augment_pair(
            x, x.clone(), StereoAugment(hflip=False), torch.Generator().manual_seed(seed)
        )
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_datamodule_splits_and_samples(tmp_path: Path):
    root = write_synthetic_pairs(tmp_path / "s", n=5, size=(20, 30))
    dm = StereoDataModule(
        str(root), size=(16, 24), augment=StereoAugment(crop=(8, 16)), crops_per_pair=3,
        loader=LoaderConfig(batch_size=2), split=SplitConfig(val_fraction=0.25, test_fraction=0.2),
    )  # fmt: skip
    dm.setup("fit")
    assert len(dm.test_set.pairs) == 1 and len(dm.val_set.pairs) == 1
    assert len(dm.train_set) == 3 * 3
    names = {p.name for ds in (dm.train_set, dm.val_set, dm.test_set) for p in ds.pairs}
    assert len(names) == 5  # no pair in two splits
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == batch[IMAGE_RIGHT].shape == (2, 3, 8, 16)
    assert "disparity" not in batch
    ev = next(iter(dm.test_dataloader()))
    assert ev["image"].shape == (1, 3, 16, 24)
    gt = ev["disparity"][0]  # a list or a stacked tensor: the first pair's map either way
    assert gt.shape == (1, 20, 30) and torch.isinf(gt[0, :, 0]).all()
    spec = dm.spec()
    assert spec.family == "stereo" and spec.image_size == (16, 24) and spec.in_chans == 3
    assert dm.sample_names() == [dm.test_set.pairs[0].name]


def test_train_on_eval_uses_every_pair_everywhere(tmp_path: Path):
    root = write_synthetic_pairs(tmp_path / "s", n=2)
    dm = StereoDataModule([str(root)], size=(24, 32), train_on_eval=True, crops_per_pair=2)
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == len(dm.test_set) == 2


def test_bad_options(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.size"):
        StereoDataModule("x", size=(0, 4))
    with pytest.raises(ConfigError, match=r"exceeds data\.size"):
        StereoDataModule("x", size=(8, 8), augment=StereoAugment(crop=(4, 16)))
    with pytest.raises(ConfigError, match="channels"):
        StereoDataModule("x", channels=2)
    with pytest.raises(ConfigError, match="gamma"):
        StereoAugment(gamma=(1.2, 0.8))


@pytest.mark.skipif(not STEREO.is_dir(), reason="shared stereo data absent")
def test_shared_pairs_are_found_with_their_ground_truth():
    pairs = scan_stereo(STEREO / "skimage-middlebury2014-motorcycle") + scan_stereo(
        STEREO / "opencv-samples"
    )
    assert [p.name for p in pairs] == ["motorcycle", "aloe"]  # not the calibration pairs
    moto = read_disparity(pairs[0].disparity)
    aloe = read_disparity(pairs[1].disparity)
    assert moto.shape == (1, 500, 741) and aloe.shape == (1, 1110, 1282)
    assert 0.05 < float(torch.isinf(moto).float().mean()) < 0.1
    assert 0.02 < float(torch.isinf(aloe).float().mean()) < 0.05
