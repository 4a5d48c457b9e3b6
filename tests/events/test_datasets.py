"""Event data sets: the three layouts, seeded stratified splits, caching, loaders, real N-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.errors import ConfigError, DataError
from visrep.events import (
    EventBatch,
    EventFileDataset,
    EventFolderDataModule,
    EventStream,
    NCarsDataModule,
    NMNISTDataModule,
    find_layout,
    write_events,
)
from visrep.events.io import read_events
from visrep.events.transforms import HorizontalFlip, MaxEvents, SpatialCrop

NMNIST_SMALL = SHARED_DATA / "nmnist-small"


def digit_stream(label: int, seed: int, size: tuple[int, int] = (34, 34)) -> EventStream:
    """Events along a short line whose orientation is ``label * 45`` degrees, at a random place
    (so classes are learnable by a translation-invariant CNN)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(80, 120))
    w, h = size
    r = min(w, h) / 4
    cx, cy = rng.uniform(r, w - 1 - r), rng.uniform(r, h - 1 - r)
    s = rng.uniform(-r, r, n)
    a = label * np.pi / 4
    x = np.clip(np.rint(cx + s * np.cos(a)), 0, w - 1).astype(int)
    y = np.clip(np.rint(cy + s * np.sin(a)), 0, h - 1).astype(int)
    t = np.sort(rng.integers(0, 300_000, n))
    return EventStream(x=x, y=y, t=t, p=rng.integers(0, 2, n), sensor_size=size)


def write_nmnist_folders(
    root: Path, classes: int = 3, per_class: int = 6, ext: str = ".bin"
) -> Path:
    """N-MNIST's ``Train/<digit>/*.bin`` + ``Test/<digit>/*.bin`` with small synthetic streams."""
    for k, (split, n) in enumerate((("Train", per_class), ("Test", max(per_class // 3, 1)))):
        for c in range(classes):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(n):
                path = root / split / str(c) / f"{i:05d}{ext}"
                write_events(digit_stream(c, 1000 * k + 100 * c + i), path)
    return root


def write_list_layout(root: Path, n_train: int = 30, n_test: int = 9, classes: int = 3) -> Path:
    """SLAYER's NMNISTsmall layout: ``<id>.bs2`` files and ``train*.txt`` / ``test*.txt`` lists."""
    root.mkdir(parents=True)
    for name, ids in (
        ("train30.txt", range(1, n_train + 1)),
        ("test9.txt", range(100, 100 + n_test)),
    ):
        lines = ["#sample #class"]
        for i in ids:
            label = i % classes
            write_events(digit_stream(label, i), root / f"{i}.bin")
            (root / f"{i}.bin").rename(root / f"{i}.bs2")
            lines.append(f"{i}\t{label}")
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_layouts_are_found(tmp_path: Path) -> None:
    nm = find_layout(write_nmnist_folders(tmp_path / "nm"))
    assert nm.kind == "split folders" and set(nm.splits) == {"train", "test"}
    assert len(nm.splits["train"]) == 18 and nm.class_names() == ["0", "1", "2"]
    # N-Caltech101: class folders only; N-Cars: "<name>_train" / "<name>_test" split folders
    for c in ("airplanes", "ant"):
        (tmp_path / "cal" / c).mkdir(parents=True)
        for i in range(3):
            write_events(digit_stream(i, i), tmp_path / "cal" / c / f"image_{i:04d}.bin")
    cal = find_layout(tmp_path / "cal")
    assert cal.kind == "class folders" and cal.class_names() == ["airplanes", "ant"]
    for split in ("n-cars_train", "n-cars_test"):
        for c in ("background", "cars"):
            (tmp_path / "cars" / split / c).mkdir(parents=True)
            write_events(
                digit_stream(1, 0, (120, 100)), tmp_path / "cars" / split / c / "obj_td.npz"
            )
    cars = find_layout(tmp_path / "cars")
    assert set(cars.splits) == {"train", "test"} and cars.class_names() == ["background", "cars"]
    # the list layout, found below a root whose "test" folder is no split of class folders
    lst = find_layout(
        write_list_layout(tmp_path / "deep" / "test" / "files" / "NMNISTsmall").parents[2]
    )
    assert (
        lst.kind == "list files" and len(lst.splits["train"]) == 30 and len(lst.splits["test"]) == 9
    )
    assert lst.splits["train"][0] == (str(tmp_path / "deep/test/files/NMNISTsmall/1.bs2"), "1")


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        find_layout(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no event data set found"):
        find_layout(tmp_path / "empty")
    root = write_list_layout(tmp_path / "lst")
    (root / "7.bs2").unlink()
    with pytest.raises(DataError, match=r"train30.txt: sample '7' has no event file"):
        find_layout(root)
    (root / "train30.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"train30.txt:1: expected 'id label'"):
        find_layout(root)


def test_file_dataset_reads_and_caches(tmp_path: Path) -> None:
    write_nmnist_folders(tmp_path / "nm", classes=2, per_class=2)
    files = sorted(str(p) for p in (tmp_path / "nm").rglob("*.bin"))
    plain = EventFileDataset(files, [0] * len(files), (34, 34))
    cached = EventFileDataset(files, [0] * len(files), (34, 34), cache_dir=tmp_path / "cache")
    for i in range(len(files)):
        a = plain[i]["events"]
        b = cached[i]["events"]  # decoded, then written to the cache
        c = cached[i]["events"]  # read back from the cache
        assert a.sensor_size == (34, 34) == c.sensor_size
        assert all(np.array_equal(getattr(a, k), getattr(c, k)) for k in "xytp")
        assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "xytp")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == len(files)
    capped = EventFileDataset(
        files, [1] * len(files), (34, 34), transforms=[MaxEvents(10, "first")]
    )
    s, y = capped[0].values()
    assert len(s) == 10 and y == 1


def test_nmnist_module_splits_are_stratified_and_seeded(tmp_path: Path) -> None:
    root = write_list_layout(tmp_path / "lst", n_train=60, n_test=9)
    dm = NMNISTDataModule(
        root=str(root),
        loader=LoaderConfig(batch_size=8),
        split=SplitConfig(val_fraction=0.2, seed=3),
    )
    dm.setup()
    spec = dm.spec()
    assert (spec.family, spec.num_classes, spec.sensor_size) == ("events", 3, (34, 34))
    assert spec.class_names == ("0", "1", "2") and spec.image_size == (34, 34)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (48, 12, 9)
    val_labels = [dm.val_set[i]["label"] for i in range(len(dm.val_set))]
    assert np.bincount(val_labels).tolist() == [4, 4, 4]  # stratified
    again = NMNISTDataModule(root=str(root), split=SplitConfig(val_fraction=0.2, seed=3))
    again.setup()
    other = NMNISTDataModule(root=str(root), split=SplitConfig(val_fraction=0.2, seed=4))
    other.setup()
    assert list(again.val_set.indices) == list(dm.val_set.indices)
    assert list(other.val_set.indices) != list(dm.val_set.indices)
    batch = next(iter(dm.train_dataloader()))
    events, targets = batch["events"], batch["label"]
    assert isinstance(events, EventBatch) and len(events) == 8 and targets.shape == (8,)
    assert events.sensor_size == (34, 34)
    names = dm.sample_names()
    assert len(names) == 9 and names[0].endswith("100.bs2")


def test_folder_module_sensor_sizes_and_held_out_test(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "cal" / c).mkdir(parents=True)
        for i in range(10):
            write_events(digit_stream(i % 2, i, (50, 40)), tmp_path / "cal" / c / f"{i}.npz")
    dm = EventFolderDataModule(
        root=str(tmp_path / "cal"), split=SplitConfig(test_fraction=0.2, val_fraction=0.25)
    )
    dm.setup()
    assert dm.sensor_size == (50, 40)  # from the first file
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 4, 4)
    assert NCarsDataModule(root=str(tmp_path / "cal")).requested_sensor_size == (120, 100)
    cropped = EventFolderDataModule(
        root=str(tmp_path / "cal"), transforms=[SpatialCrop((30, 20), position="center")]
    )
    cropped.setup()
    assert cropped.spec().sensor_size == (30, 20)  # the model sees the crop


def test_train_augmentation_is_seeded(tmp_path: Path) -> None:
    root = write_list_layout(tmp_path / "lst")
    dm = NMNISTDataModule(
        root=str(root), train_transforms=[HorizontalFlip(0.5)], loader=LoaderConfig(batch_size=30)
    )
    dm.setup()
    events = next(iter(dm.train_dataloader()))["events"]
    a = dm.augment(events, np.random.default_rng(0))
    b = dm.augment(events, np.random.default_rng(0))
    assert torch_equal(a.x, b.x) and not torch_equal(a.x, events.x)
    flipped = [not torch_equal(a.stream(i).x, events.stream(i).x) for i in range(len(events))]
    assert 0 < sum(flipped) < len(events)  # per sample, with probability 0.5
    cropping = NMNISTDataModule(root=str(root), train_transforms=[SpatialCrop((20, 20))])
    with pytest.raises(ConfigError, match="must keep the sensor size"):
        cropping.augment(events, np.random.default_rng(0))


def torch_equal(a, b) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def test_real_nmnist_small() -> None:
    if not NMNIST_SMALL.is_dir():
        pytest.skip("shared/data/nmnist-small not available")
    layout = find_layout(NMNIST_SMALL)
    assert layout.kind == "list files"
    assert len(layout.splits["train"]) == 1000 and len(layout.splits["test"]) == 100
    labels = [int(lab) for _, lab in layout.splits["train"]]
    assert np.bincount(labels).tolist() == [
        97,
        116,
        99,
        93,
        105,
        92,
        94,
        117,
        87,
        100,
    ]  # PROVENANCE
    s = read_events(layout.splits["train"][0][0], (34, 34))
    assert len(s) == 4681 and int(s.t[0]) == 893 and int(s.t[-1]) == 305_924  # PROVENANCE
