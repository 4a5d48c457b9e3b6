"""VOCSegmentationDataModule on a tiny VOC tree with palette label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.segmentation import VOC_CLASSES, VOCSegmentationDataModule, voc_colormap
from visrep.errors import DataError

SIZES = [(10, 14), (12, 9), (8, 8), (11, 13), (9, 12), (14, 10)]


def palette_png(label: np.ndarray, path: Path) -> None:
    im = Image.fromarray(label, mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[:21] = voc_colormap(21)
    pal[255] = (224, 224, 192)  # VOC's border colour
    im.putpalette(pal.ravel().tolist())
    im.save(path)


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        lab = rng.integers(0, 21, (h, w)).astype(np.uint8)
        lab[0] = 255  # a border row
        palette_png(lab, root / "SegmentationClass" / f"2007_{i:06d}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"2007_{i:06d}.jpg"
        )
    lists = root / "ImageSets/Segmentation"
    (lists / "train.txt").write_text("".join(f"2007_{i:06d}\n" for i in range(4)))
    (lists / "val.txt").write_text("2007_000004\n2007_000005\n")
    return root


def test_voc_reads_palette_indices(voc: Path) -> None:
    dm = VOCSegmentationDataModule(str(voc), crop_size=8, split=SplitConfig(test_fraction=0.25))
    dm.setup()
    assert len(dm.val_set) == 2 and len(dm.test_set) == 1 and len(dm.train_set) == 3
    s = dm.val_set[0]
    want = np.asarray(Image.open(voc / "SegmentationClass/2007_000004.png"))
    assert np.array_equal(s["mask"].numpy(), want) and s["mask"].shape == SIZES[4]
    assert (s["mask"][0] == 255).all()
    spec = dm.spec()
    assert spec.num_classes == 21 and spec.class_names == VOC_CLASSES.names
    assert spec.class_colors[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert spec.class_colors[15] == (192, 128, 128)  # person
    assert spec.ignore_index == 255 and spec.image_size == (8, 8)
    # varying sizes: training crops stack (padded with 255), evaluation one image per batch
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (3, 3, 8, 8) and b["mask"].shape == (3, 8, 8)


def test_voc_eval_batches_of_one(voc: Path) -> None:
    loader = LoaderConfig(batch_size=2, eval_batch_size=1)
    dm = VOCSegmentationDataModule(str(voc), crop_size=8, loader=loader)
    dm.setup()
    shapes = [tuple(b["mask"].shape) for b in dm.val_dataloader()]
    assert shapes == [(1, *SIZES[4]), (1, *SIZES[5])]
    assert all(torch.is_tensor(b["image"]) for b in dm.val_dataloader())


def test_voc_bad_input(voc: Path) -> None:
    lab = np.zeros(SIZES[1], np.uint8)
    lab[2, 2] = 30
    palette_png(lab, voc / "SegmentationClass/2007_000001.png")
    dm = VOCSegmentationDataModule(str(voc), cache=True)
    with pytest.raises(DataError, match=r"2007_000001\.png.*\[30\]"):
        dm.setup()
    (voc / "SegmentationClass/2007_000001.png").unlink()
    with pytest.raises(DataError, match=r"2007_000001\.png.*2007_000001.*train\.txt"):
        VOCSegmentationDataModule(str(voc)).setup()
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n")
    with pytest.raises(DataError, match=r"train\.txt.* is empty"):
        VOCSegmentationDataModule(str(voc)).setup()
    with pytest.raises(DataError, match="does not exist"):
        VOCSegmentationDataModule(str(voc / "JPEGImages"))
