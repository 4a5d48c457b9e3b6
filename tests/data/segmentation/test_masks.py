"""Binary mask sources: image / mask folders (ISBI 2012 layout) and DAVIS annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.segmentation import (
    ISBI_CLASSES,
    DavisDataModule,
    MaskFolderDataModule,
    SegAugment,
)
from visrep.errors import ConfigError, DataError


def disc_mask(i: int, h: int = 16, w: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where((yy - h / 2) ** 2 + (xx - 3 - i % 5) ** 2 < 20, 255, 0).astype(np.uint8)


@pytest.fixture
def isbi(tmp_path: Path) -> Path:
    root = tmp_path / "isbi"
    for d in ("train/image", "train/label"):
        (root / d).mkdir(parents=True)
    for i in range(10):
        m = disc_mask(i)
        Image.fromarray(np.where(m > 0, 200, 30).astype(np.uint8)).save(
            root / "train/image" / f"{i}.png"
        )
        Image.fromarray(m).save(root / "train/label" / f"{i}.png")
    return root


def isbi_module(root: Path, **kw) -> MaskFolderDataModule:
    kw.setdefault("loader", LoaderConfig(batch_size=2))
    dm = MaskFolderDataModule(str(root), **kw)
    dm.setup()
    return dm


def test_isbi_masks_are_binary_and_aligned(isbi: Path) -> None:
    dm = isbi_module(isbi, crop_size=12, augment=SegAugment(hflip=True))
    torch.manual_seed(0)
    for i in range(len(dm.train_set)):
        s = dm.train_set[i]
        assert s["image"].shape == (1, 12, 12) and s["mask"].shape == (12, 12)
        assert s["mask"].dtype == torch.int64
        assert set(s["mask"].unique().tolist()) <= {0, 1}
        # the image is bright exactly on the foreground
        assert torch.equal((s["image"][0] > 0.5).long(), s["mask"])
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (2, 1, 12, 12)


def test_isbi_seeded_plain_splits(isbi: Path) -> None:
    def names(seed: int) -> list[list[str]]:
        split = SplitConfig(val_fraction=0.25, test_fraction=0.2, seed=seed)
        dm = isbi_module(isbi, split=split)
        return [
            sorted(Path(ds.dataset.images[i]).stem for i in ds.indices)
            for ds in (dm.train_set, dm.val_set, dm.test_set)
        ]

    a = names(0)
    assert a == names(0) and a != names(5)
    assert [len(x) for x in a] == [6, 2, 2]
    assert sorted(x for s in a for x in s) == sorted(str(i) for i in range(10))


def test_isbi_spec_threshold_and_class_names(isbi: Path) -> None:
    dm = isbi_module(isbi, class_names="isbi", split=SplitConfig(val_fraction=0, test_fraction=0.2))
    spec = dm.spec()
    assert spec.class_names == ISBI_CLASSES.names == ("membrane", "cell")
    assert spec.num_classes == 2 and spec.in_chans == 1 and spec.image_size == (16, 16)
    assert spec.ignore_index == 255 and len(spec.class_weights) == 2
    # values above the threshold are class 1: a mask of 100s is all 0 at 127, all 1 at 99
    Image.fromarray(np.full((16, 16), 100, np.uint8)).save(isbi / "train/label/3.png")
    for threshold, want in ((127, 0), (99, 1)):
        dm = isbi_module(isbi, threshold=threshold)
        assert (dm.train_set.dataset.raw(3)[1] == want).all()
    with pytest.raises(ConfigError, match="threshold"):
        MaskFolderDataModule(str(isbi), threshold=255)
    with pytest.raises(ConfigError, match="2 classes"):
        MaskFolderDataModule(str(isbi), class_names=["a", "b", "c"])


def test_isbi_test_folder_is_the_test_split(isbi: Path) -> None:
    for d in ("test/image", "test/label"):
        (isbi / d).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(disc_mask(i)).save(isbi / "test/image" / f"{i}.png")
        Image.fromarray(disc_mask(i)).save(isbi / "test/label" / f"{i}.png")
    dm = isbi_module(isbi, split=SplitConfig(val_fraction=0.2))
    assert len(dm.test_set) == 3 and len(dm.train_set) + len(dm.val_set) == 10


def test_isbi_bad_input(isbi: Path) -> None:
    (isbi / "train/label/3.png").unlink()
    with pytest.raises(DataError, match=r"3\.png.* has no label map 3"):
        isbi_module(isbi)
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(isbi / "train/label/3.png")
    with pytest.raises(DataError, match=r"label/3\.png.*16x8"):
        isbi_module(isbi, cache=True)
    (isbi / "train/label/3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*label/3\.png"):
        isbi_module(isbi, cache=True)
    for f in (isbi / "train/image").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"image.* holds no"):
        isbi_module(isbi)


@pytest.fixture
def davis(tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    for s, seq in enumerate(("bear", "cat", "dog")):
        (root / "JPEGImages/480p" / seq).mkdir(parents=True)
        (root / "Annotations/480p" / seq).mkdir(parents=True)
        for f in range(3):
            m = disc_mask(s + f, 12, 20)
            rgb = np.where(m[..., None] > 0, [250, 250, 250], [5, 5, 5]).astype(np.uint8)
            Image.fromarray(rgb).save(root / "JPEGImages/480p" / seq / f"{f:05d}.jpg", quality=95)
            Image.fromarray(m).save(root / "Annotations/480p" / seq / f"{f:05d}.png")
    return root


def test_davis_frames_and_sequence_splits(davis: Path) -> None:
    dm = DavisDataModule(
        str(davis), val_sequences=("cat",), test_sequences=("dog",), loader=LoaderConfig(4)
    )
    dm.setup()
    assert len(dm.train_set) == 3 and len(dm.val_set) == 3 and len(dm.test_set) == 3
    assert all("/dog/" in p for p in dm.test_set.images)
    s = dm.val_set[0]
    assert s["image"].shape == (3, 12, 20) and s["mask"].shape == (12, 20)
    assert set(s["mask"].unique().tolist()) == {0, 1}
    assert torch.equal((s["image"].mean(0) > 0.5).long(), s["mask"])  # JPEG: far from 0.5
    assert dm.spec().class_names == ("background", "foreground")
    b = next(iter(dm.val_dataloader()))
    assert b["mask"].shape == (3, 12, 20)


def test_davis_random_frame_splits_and_errors(davis: Path) -> None:
    dm = DavisDataModule(str(davis), split=SplitConfig(val_fraction=0.2, test_fraction=0.2))
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 9
    with pytest.raises(DataError, match=r"\['owl'\]"):
        DavisDataModule(str(davis), val_sequences=("owl",)).setup()
    with pytest.raises(ConfigError, match="both"):
        DavisDataModule(str(davis), val_sequences=("cat",), test_sequences=("cat",))
    with pytest.raises(ConfigError, match="train and held out"):
        DavisDataModule(str(davis), sequences=["cat"], val_sequences=("cat",)).setup()
    (davis / "Annotations/480p/cat/00001.png").unlink()
    with pytest.raises(DataError, match=r"cat/00001\.jpg.* has no label map 00001"):
        DavisDataModule(str(davis)).setup()
    with pytest.raises(DataError, match="does not exist"):
        DavisDataModule(str(davis), resolution="1080p")
