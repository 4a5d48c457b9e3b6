"""PairedFolderDataModule (CamVid layout) and the shared segmentation base, on tiny trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.segmentation import (
    CAMVID_CLASSES,
    PairedFolderDataModule,
    SegAugment,
    median_frequency_weights,
)
from visrep.errors import ConfigError, DataError

IGNORE = 9
# The colour of each pixel encodes its class (white on ignore pixels): any blend of two codes
# has a channel strictly between 0 and 255, so a pixel with a clean code was not blended.
CODES = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def class_image(label: np.ndarray) -> np.ndarray:
    """An RGB image whose colours encode ``label`` (so alignment can be checked)."""
    return np.where((label == IGNORE)[..., None], 255, CODES[np.minimum(label, 3)]).astype(np.uint8)


def blocky_label(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """4x4 blocks of classes 0..3, a few blocks ignored."""
    small = rng.integers(0, 4, (h // 4, w // 4))
    small[rng.random(small.shape) < 0.15] = IGNORE
    return np.kron(small, np.ones((4, 4), np.int64)).astype(np.uint8)


def write_split(root: Path, name: str, labels: list[np.ndarray]) -> None:
    (root / name).mkdir(parents=True)
    (root / f"{name}annot").mkdir()
    for i, lab in enumerate(labels):
        Image.fromarray(class_image(lab)).save(root / name / f"f{i:03d}.png")
        Image.fromarray(lab).save(root / f"{name}annot" / f"f{i:03d}.png")


@pytest.fixture
def camvid(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "camvid"
    write_split(root, "train", [blocky_label(rng, 16, 24) for _ in range(10)])
    write_split(root, "val", [blocky_label(rng, 16, 24) for _ in range(3)])
    return root


def module(root: Path, **kw) -> PairedFolderDataModule:
    kw.setdefault("num_classes", 4)
    kw.setdefault("ignore_index", IGNORE)
    kw.setdefault("loader", LoaderConfig(batch_size=4))
    dm = PairedFolderDataModule(str(root), **kw)
    dm.setup()
    return dm


def decoded_class(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class each pixel's red value encodes, and where that value is clean (not blended)."""
    x = image * 255
    bits = x > 127
    clean = ((x < 3) | (x > 252)).all(0)
    codes = torch.from_numpy(CODES > 127)
    hit = (bits[None] == codes[:, :, None, None]).all(1)  # (4, H, W)
    return hit.int().argmax(0), clean & hit.any(0)


def test_samples_shapes_dtypes_and_batches(camvid: Path) -> None:
    dm = module(camvid, crop_size=(8, 12))
    s = dm.train_set[0]
    assert isinstance(s["image"], tv_tensors.Image) and isinstance(s["mask"], tv_tensors.Mask)
    assert s["image"].shape == (3, 8, 12) and s["image"].dtype == torch.float32
    assert s["mask"].shape == (8, 12) and s["mask"].dtype == torch.int64
    assert s["image"].min() >= 0 and s["image"].max() <= 1
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 3, 8, 12) and b["mask"].shape == (4, 8, 12)
    v = next(iter(dm.val_dataloader()))  # evaluation keeps whole images
    assert v["image"].shape == (3, 3, 16, 24) and v["mask"].shape == (3, 16, 24)
    # the val folder is the val split; the test split is held out of train (no test/ folder)
    assert len(dm.val_set) == 3 and len(dm.test_set) == 2 and len(dm.train_set) == 8


def test_unaugmented_sample_is_the_files(camvid: Path) -> None:
    dm = module(camvid)
    s = dm.val_set[1]
    lab = np.asarray(Image.open(camvid / "valannot" / "f001.png"))
    assert np.array_equal(s["mask"].numpy(), lab)
    c, clean = decoded_class(s["image"])
    assert clean.sum() == (s["mask"] != IGNORE).sum()
    assert torch.equal(c[clean], s["mask"][clean])


@pytest.mark.parametrize(
    "augment",
    [SegAugment(hflip=True), SegAugment(scale=(0.5, 2.0), hflip=True), SegAugment(scale=(2, 2))],
)
def test_mask_stays_aligned_under_flip_crop_scale(camvid: Path, augment: SegAugment) -> None:
    dm = module(camvid, crop_size=(12, 12), augment=augment)
    torch.manual_seed(0)
    checked = 0
    for i in range(len(dm.train_set)):
        s = dm.train_set[i]
        c, clean = decoded_class(s["image"])
        m = s["mask"]
        keep = clean & (m != IGNORE)
        assert torch.equal(c[keep], m[keep])
        checked += int(keep.sum())
    assert checked > 0.4 * len(dm.train_set) * 144  # most pixels are clean and compared


def test_flip_moves_mask_with_image(camvid: Path) -> None:
    dm = module(camvid, augment=SegAugment(hflip=True))
    base = module(camvid)
    torch.manual_seed(3)
    flipped = 0
    for i in range(len(dm.train_set)):
        a, b = dm.train_set[i], base.train_set[i]
        if not torch.equal(a["mask"], b["mask"]):
            flipped += 1
            assert torch.equal(a["mask"], b["mask"].flip(-1))
            assert torch.equal(a["image"], b["image"].flip(-1))
    assert 0 < flipped < len(dm.train_set)


def test_crop_pads_mask_with_ignore(camvid: Path) -> None:
    dm = module(camvid, crop_size=(20, 30))
    base = module(camvid)
    s, b = dm.train_set[0], base.train_set[0]
    assert s["mask"].shape == (20, 30)
    pad = s["mask"] == IGNORE
    assert int((~pad).sum()) == int((b["mask"] != IGNORE).sum())  # every labelled pixel is kept
    assert pad.sum() >= 20 * 30 - 16 * 24
    # padded pixels are black in the image: pixels black in all channels are padding
    assert (s["image"].sum(0) == 0).sum() == 20 * 30 - 16 * 24
    assert (s["mask"][s["image"].sum(0) == 0] == IGNORE).all()


def test_colour_jitter_changes_image_not_mask(camvid: Path) -> None:
    dm = module(camvid, augment=SegAugment(brightness=0.5, contrast=0.5, saturation=0.5))
    base = module(camvid)
    torch.manual_seed(0)
    a, b = dm.train_set[0], base.train_set[0]
    assert torch.equal(a["mask"], b["mask"])
    assert not torch.allclose(a["image"], b["image"])
    assert a["image"].min() >= 0 and a["image"].max() <= 1


def test_augmentation_repeats_under_a_seed(camvid: Path) -> None:
    dm = module(camvid, crop_size=10, augment=SegAugment(scale=(0.5, 1.5), hflip=True))
    torch.manual_seed(7)
    a = [dm.train_set[i] for i in range(4)]
    torch.manual_seed(7)
    b = [dm.train_set[i] for i in range(4)]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])


def test_cache_gives_the_same_samples(camvid: Path) -> None:
    a, b = module(camvid, cache=True), module(camvid)
    for i in range(3):
        assert torch.equal(a.val_set[i]["image"], b.val_set[i]["image"])
        assert torch.equal(a.val_set[i]["mask"], b.val_set[i]["mask"])
    assert a.spec() == b.spec()


def test_spec(camvid: Path) -> None:
    dm = module(camvid, crop_size=8, class_names=["a", "b", "c", "d"], num_classes=None)
    spec = dm.spec()
    assert spec.family == "segmentation" and spec.keys == ("image", "mask")
    assert spec.in_chans == 3 and spec.image_size == (8, 8) and spec.num_classes == 4
    assert spec.class_names == ("a", "b", "c", "d") and spec.ignore_index == IGNORE
    assert len(spec.class_colors) == 4 and len(spec.class_weights) == 4
    # mean/std of the (whole, unaugmented) training images
    base = dm.train_set.dataset
    x = np.stack([base.raw(i)[0] for i in dm.train_set.indices]).reshape(-1, 3) / 255
    np.testing.assert_allclose(spec.mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(spec.std, x.std(0), rtol=1e-6)
    type(spec).from_dict(spec.to_dict())  # round-trips through a checkpoint


def test_camvid_class_set_by_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 12, (8, 8)).astype(np.uint8) for _ in range(5)]
    write_split(tmp_path / "c", "train", labels)
    dm = PairedFolderDataModule(str(tmp_path / "c"), class_names="camvid", ignore_index=11)
    dm.setup()
    assert dm.spec().class_names == CAMVID_CLASSES.names and len(CAMVID_CLASSES.names) == 11
    assert dm.spec().class_colors == CAMVID_CLASSES.colors


def test_median_frequency_weights_by_hand(tmp_path: Path) -> None:
    # image 1 (2x2): classes 0,0,0,1; image 2 (2x2): classes 1, 2, ignore, ignore
    first = np.array([[0, 0], [0, 1]], np.uint8)
    second = np.array([[1, 2], [IGNORE, IGNORE]], np.uint8)
    write_split(tmp_path / "w", "train", [first, second])
    write_split(tmp_path / "w", "val", [np.zeros((2, 2), np.uint8)])
    write_split(tmp_path / "w", "test", [np.zeros((2, 2), np.uint8)])
    dm = module(tmp_path / "w")
    # f0 = 3/4 (only image 1), f1 = 2/(4 + 2) (both; image 2 has 2 unignored pixels),
    # f2 = 1/2, f3 absent -> weight 0; median of (3/4, 1/3, 1/2) = 1/2
    assert dm.class_pixels.tolist() == [3, 2, 1, 0]
    np.testing.assert_allclose(dm.class_weights, [0.5 / 0.75, 0.5 / (1 / 3), 1.0, 0.0])
    np.testing.assert_allclose(
        median_frequency_weights(np.array([3, 2, 1, 0]), np.array([4, 6, 2, 0])),
        dm.class_weights,
    )


def test_seeded_held_out_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    write_split(tmp_path / "s", "train", [blocky_label(rng, 8, 8) for _ in range(20)])

    def stems(seed: int) -> tuple[list[str], ...]:
        dm = module(
            tmp_path / "s", split=SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=seed)
        )
        out = []
        for ds in (dm.train_set, dm.val_set, dm.test_set):
            out.append(sorted(Path(ds.dataset.images[i]).stem for i in ds.indices))
        return tuple(out)

    a, b, c = stems(0), stems(0), stems(1)
    assert a == b and a != c
    assert [len(x) for x in a] == [12, 4, 4]
    assert sorted(x for split in a for x in split) == sorted(f"f{i:03d}" for i in range(20))


# --- bad input ------------------------------------------------------------------------------


def read_all(root: Path, **kw) -> None:
    """Set up a module and read every sample of every split (files are read on access)."""
    dm = module(root, **kw)
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        for i in range(len(ds)):
            ds[i]


def test_label_size_differs_from_image(camvid: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(camvid / "trainannot" / "f002.png")
    with pytest.raises(DataError, match=r"f002\.png.*8x8.*24x16"):
        read_all(camvid)


def test_label_value_out_of_range(camvid: Path) -> None:
    lab = np.zeros((16, 24), np.uint8)
    lab[3, 4] = 7
    Image.fromarray(lab).save(camvid / "trainannot" / "f004.png")
    with pytest.raises(DataError, match=r"f004\.png.*\[7\]"):
        read_all(camvid)
    read_all(camvid, num_classes=8)  # 7 is a class now


def test_cached_bad_label_fails_at_setup(camvid: Path) -> None:
    Image.fromarray(np.full((16, 24), 200, np.uint8)).save(camvid / "valannot" / "f000.png")
    with pytest.raises(DataError, match=r"valannot/f000\.png.*\[200\]"):
        module(camvid, cache=True)


def test_missing_pairs_name_the_stem(camvid: Path) -> None:
    (camvid / "trainannot" / "f003.png").unlink()
    with pytest.raises(DataError, match=r"f003"):
        read_all(camvid)
    (camvid / "train" / "f003.png").unlink()
    (camvid / "train" / "f005.png").unlink()
    with pytest.raises(DataError, match=r"label map .*f005\.png.* has no image f005"):
        read_all(camvid)


def test_unreadable_png(camvid: Path) -> None:
    (camvid / "trainannot" / "f001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"f001\.png"):
        read_all(camvid)
    (camvid / "trainannot" / "f001.png").unlink()
    (camvid / "train" / "f001.png").write_bytes(b"garbage")
    (camvid / "trainannot" / "f001.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"f001\.png"):
        read_all(camvid)


def test_rgb_label_map_refused(camvid: Path) -> None:
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(camvid / "trainannot" / "f000.png")
    with pytest.raises(DataError, match=r"f000\.png.*mode RGB"):
        read_all(camvid)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "trainannot").mkdir()
    with pytest.raises(DataError, match=r"train.* holds no"):
        module(tmp_path / "e")
    with pytest.raises(DataError, match="not a folder"):
        PairedFolderDataModule(str(tmp_path / "nowhere"), num_classes=2)
    (tmp_path / "f").mkdir()
    with pytest.raises(DataError, match="no train/"):
        module(tmp_path / "f")


def test_bad_options(camvid: Path) -> None:
    with pytest.raises(ConfigError, match="crop_size"):
        PairedFolderDataModule(str(camvid), num_classes=4, augment=SegAugment(scale=(0.5, 2)))
    with pytest.raises(ConfigError, match="ignore_index"):
        PairedFolderDataModule(str(camvid), num_classes=4, ignore_index=2)
    with pytest.raises(ConfigError, match="num_classes"):
        PairedFolderDataModule(str(camvid), num_classes=4, class_names=["a", "b"])
    with pytest.raises(ConfigError, match=r"class_names or data\.num_classes"):
        PairedFolderDataModule(str(camvid))
    with pytest.raises(ConfigError, match="12 but"):
        PairedFolderDataModule(str(camvid), class_names="camvid", num_classes=12)
    with pytest.raises(ConfigError, match="unknown class set"):
        PairedFolderDataModule(str(camvid), class_names="cityscapes")
    with pytest.raises(ConfigError, match="scale"):
        SegAugment(scale=(2.0, 1.0))


def test_worker_augmentation_repeats_with_the_seed(camvid: Path) -> None:
    # v2 draws from torch's global generator; in a worker torch seeds it from the loader's
    # generator, which the module seeds with torch.initial_seed() (set by seed_everything)
    def first_batch(seed: int) -> dict:
        torch.manual_seed(seed)
        dm = module(
            camvid,
            crop_size=10,
            augment=SegAugment(scale=(0.5, 1.5), hflip=True),
            loader=LoaderConfig(batch_size=4, num_workers=1),
        )
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(3), first_batch(3), first_batch(4)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])
