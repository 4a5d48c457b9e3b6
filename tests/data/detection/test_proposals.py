"""Region proposals as sample data: the disk cache (hits, misses, keys) and transforms moving the
proposals with the image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset
from torchvision import tv_tensors
from torchvision.transforms import v2

import visrep.data.detection.proposals as proposals_mod
from visrep.data.base import LoaderConfig
from visrep.data.detection.base import Annotation, DetAugment, DetectionDataset
from visrep.data.detection.proposals import (
    PROPOSALS,
    ProposalConfig,
    ProposalDataset,
    default_cache_dir,
    precompute_proposals,
    with_proposals,
)
from visrep.data.detection.voc import VOCDetectionDataModule
from visrep.errors import ConfigError, DataError


def _dataset(tmp_path: Path, n: int = 2) -> DetectionDataset:
    """``n`` 40x32 PNG images with one coloured rectangle each, annotated."""
    anns = []
    for i in range(n):
        img = np.full((32, 40, 3), 120, np.uint8)
        img[6 + i : 20 + i, 8:30] = (220, 40, 40)
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(path)
        boxes = np.array([[8, 6 + i, 30, 20 + i]], np.float32)
        anns.append(
            Annotation(str(path), (32, 40), boxes, np.array([0]), np.array([False]), str(path))
        )
    return DetectionDataset(anns)


def _config(tmp_path: Path, **kw: object) -> ProposalConfig:
    return ProposalConfig(strategy="single", cache_dir=str(tmp_path / "cache"), **kw)


def test_samples_carry_proposals_and_the_cache_is_filled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = ProposalDataset(_dataset(tmp_path), _config(tmp_path))
    s = ds[0]
    p = s[PROPOSALS]
    assert isinstance(p, tv_tensors.BoundingBoxes) and p.shape[1] == 4
    assert tuple(p.canvas_size) == (32, 40) and p.format == tv_tensors.BoundingBoxFormat.XYXY
    assert [8.0, 6.0, 30.0, 20.0] in p.tolist()  # the rectangle, exactly
    assert set(s) == {"image", "boxes", "labels", "difficult", PROPOSALS}
    # it answers what data modules ask of the dataset it wraps
    assert len(ds) == 2 and ds.channels == 3 and ds.has_masks is False
    assert ds.raw(0).shape == (32, 40, 3) and ds.annotations[1].size == (32, 40)
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1
    assert not list((tmp_path / "images").glob("*.npy"))  # never beside the data

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("selective search ran on a cache hit")

    monkeypatch.setattr(proposals_mod, "selective_search", fail)
    assert torch.equal(ds[0][PROPOSALS], p)  # a hit: read back, not recomputed
    with pytest.raises(AssertionError, match="cache hit"):
        ds[1]  # a miss computes


def test_cache_key_follows_file_and_options(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    cfg = _config(tmp_path)
    first = cfg.cache_path(ds.annotations[0].image)
    assert first.parent == tmp_path / "cache" and first.suffix == ".npy"
    assert cfg.cache_path(ds.annotations[1].image) != first  # another file
    assert _config(tmp_path, max_proposals=10).cache_path(ds.annotations[0].image) != first
    # the cache folder is not an option of the search: the same key elsewhere
    other = ProposalConfig(strategy="single", cache_dir=str(tmp_path / "elsewhere"))
    assert other.cache_path(ds.annotations[0].image).name == first.name
    st = os.stat(ds.annotations[0].image)
    os.utime(ds.annotations[0].image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cfg.cache_path(ds.annotations[0].image) != first  # an edited image


def test_default_cache_dir_is_the_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "visrep" / "proposals"
    assert ProposalConfig().folder() == default_cache_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "visrep" / "proposals"


def test_transforms_move_proposals_with_the_image(tmp_path: Path) -> None:
    base = _dataset(tmp_path)
    cfg = _config(tmp_path)
    plain = ProposalDataset(base, cfg)[0]
    flipped = ProposalDataset(base.with_transform(v2.RandomHorizontalFlip(p=1.0)), cfg)[0]
    p, q = plain[PROPOSALS], flipped[PROPOSALS]
    assert torch.allclose(q[:, 0], 40 - p[:, 2]) and torch.allclose(q[:, 2], 40 - p[:, 0])
    assert torch.allclose(flipped["boxes"][:, 0], 40 - plain["boxes"][:, 2])
    resized = ProposalDataset(base, cfg).with_transform(v2.Resize((64, 80)))[0]
    assert isinstance(resized, dict) and torch.allclose(resized[PROPOSALS], p * 2)


def test_with_proposals_wraps_subsets_and_refuses_other_data(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, 3)
    cfg = _config(tmp_path)
    sub = with_proposals(Subset(ds, [2, 0]), cfg)
    assert isinstance(sub, Subset) and list(sub.indices) == [2, 0]
    assert isinstance(sub.dataset, ProposalDataset) and PROPOSALS in sub[0]
    assert with_proposals(None, cfg) is None and with_proposals(ds, None) is ds
    assert precompute_proposals(sub) == 1  # image 2 was read above, image 0 was not
    assert precompute_proposals(sub) == 0
    with pytest.raises(ConfigError, match=r"data\.proposals"):
        with_proposals(TensorDataset(torch.zeros(2)), cfg)
    with pytest.raises(ConfigError, match="ProposalDataset"):
        precompute_proposals(ds)


def test_broken_cache_file_and_missing_image(tmp_path: Path) -> None:
    ds = ProposalDataset(_dataset(tmp_path), _config(tmp_path))
    target = ds.cache_path(0)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not numpy")
    with pytest.raises(DataError, match="delete it"):
        ds[0]
    np.save(target, np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match=r"\(P, 4\)"):
        ds[0]
    with pytest.raises(DataError, match="cannot read image"):
        ds.config.cache_path(tmp_path / "missing.png")


def test_embedded_images_are_keyed_on_their_annotation_file(tmp_path: Path) -> None:
    base = _dataset(tmp_path, 1)
    a = base.annotations[0]
    path = a.image
    embedded = Annotation(
        lambda: Image.open(path), a.size, a.boxes, a.labels, a.difficult, str(tmp_path / "x.json")
    )
    (tmp_path / "x.json").write_text("{}")
    ds = ProposalDataset(DetectionDataset([embedded]), _config(tmp_path))
    assert [8.0, 6.0, 30.0, 20.0] in ds[0][PROPOSALS].tolist()
    assert ds.cache_path(0) != _config(tmp_path).cache_path(tmp_path / "x.json")
    assert ds.cache_path(0).is_file()


def test_a_data_module_wired_with_proposals(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for i in range(3):
        img = np.full((24, 32, 3), 100, np.uint8)
        img[4:14, 6 + i : 20 + i] = (200, 30, 30)
        Image.fromarray(img).save(root / "JPEGImages" / f"{i}.png")
        (root / "Annotations" / f"{i}.xml").write_text(
            "<annotation><size><width>32</width><height>24</height></size><object><name>cell"
            f"</name><bndbox><xmin>{7 + i}</xmin><ymin>5</ymin><xmax>{20 + i}</xmax><ymax>14"
            "</ymax></bndbox></object></annotation>"
        )
    for name, ids in (("train", "0\n1\n"), ("val", "2\n"), ("test", "2\n")):
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text(ids)
    dm = VOCDetectionDataModule(
        str(root),
        proposals=_config(tmp_path),
        augment=DetAugment(hflip=True),
        loader=LoaderConfig(batch_size=2),
    )
    dm.setup()
    assert len(dm.mean) == 3  # the statistics pass read the wrapped images
    batch = next(iter(dm.train_dataloader()))
    assert len(batch[PROPOSALS]) == 2 and batch[PROPOSALS][0].shape[-1] == 4
    val = next(iter(dm.val_dataloader()))
    assert [8.0, 4.0, 22.0, 14.0] in val[PROPOSALS][0].tolist()  # the val image's rectangle
    assert PROPOSALS in dm.spec().keys


def test_cache_key_tells_grey_from_rgb(tmp_path: Path) -> None:
    rgb = _dataset(tmp_path)
    grey = DetectionDataset(rgb.annotations, channels=1)
    cfg = _config(tmp_path)
    assert ProposalDataset(grey, cfg).cache_path(0) != ProposalDataset(rgb, cfg).cache_path(0)
