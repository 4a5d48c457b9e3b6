"""Identity folders split by identity (visrep.data.embedding.identity), on tiny PGM trees and
on ORL's faces in shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from visrep.data import IdentityFolderDataModule, IdentitySplit, LoaderConfig, load_image
from visrep.data.embedding import scan_identity_folders, split_identities
from visrep.errors import ConfigError, DataError

ORL = SHARED_DATA / "orl-faces"

# The PGM P5 header layouts of the netpbm spec: any whitespace between the fields, and
# '#' comments up to the end of a line anywhere before the maxval.
HEADERS = {
    "one-line": b"P5 6 4 255\n",
    "three-line": b"P5\n6 4\n255\n",
    "comments": b"P5\n# made by a scanner\n6 # width\n4\n# maxval next\n255\n",
    "tabs-crlf": b"P5\t6\r\n4  255\n",
}


def pgm(path: Path, pixels: np.ndarray, header: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + pixels.astype(np.uint8).tobytes())
    return path


def pixels(i: int) -> np.ndarray:
    """A distinct (4, 6) uint8 image per number i."""
    return (np.arange(24).reshape(4, 6) * 7 + 13 * i) % 256


def tree(root: Path, people: int = 12, images: int = 3) -> Path:
    """``root/p<i>/<j>.pgm``, PGM headers cycling through HEADERS; image (i, j) is
    pixels(100 i + j)."""
    heads = list(HEADERS.values())
    for i in range(1, people + 1):
        for j in range(1, images + 1):
            pgm(root / f"p{i}" / f"{j}.pgm", pixels(100 * i + j), heads[(i + j) % len(heads)])
    return root


@pytest.mark.parametrize("kind", list(HEADERS))
def test_pgm_headers_read_exactly(tmp_path, kind):
    want = pixels(3)
    f = pgm(tmp_path / f"{kind}.pgm", want, HEADERS[kind])
    got = load_image(f, channels=1)
    assert got.shape == (1, 4, 6)
    assert torch.equal(
        (got[0] * 255).round().to(torch.uint8), torch.from_numpy(want.astype(np.uint8))
    )
    assert torch.equal(load_image(f, channels=3), got.expand(3, 4, 6))


def test_module_reads_every_sample_with_its_global_identity_label(tmp_path):
    root = tree(tmp_path / "faces")
    dm = IdentityFolderDataModule(str(root), identities=IdentitySplit(val=2, test=3, seed=1))
    dm.setup()
    spec = dm.spec()
    names = [f"p{i}" for i in range(1, 13)]  # natural order: p2 before p10
    assert spec.family == "identity" and spec.class_names == tuple(names)
    assert (spec.num_classes, spec.in_chans, spec.image_size) == (12, 1, (4, 6))
    for split in ("train", "val", "test"):
        ds, ids = getattr(dm, f"{split}_set"), dm.identity_splits[split]
        files = dm.sample_names(split)
        assert len(ds) == len(files) == 3 * len(ids)
        for k in range(len(ds)):
            person, image = Path(files[k]).parent.name, int(Path(files[k]).stem)
            assert person == ids[k // 3] and image == k % 3 + 1  # identity, then natural order
            assert ds[k]["label"] == names.index(person)
            want = pixels(100 * int(person[1:]) + image).astype(np.float32) / 255
            assert np.allclose(ds[k]["image"][0].numpy(), want)
    labels = dm.train_labels()
    assert labels.tolist() == [dm.train_set[k]["label"] for k in range(len(dm.train_set))]
    train = np.stack(
        [pixels(100 * int(n[1:]) + j) for n in dm.identity_splits["train"] for j in (1, 2, 3)]
    )
    assert np.allclose(spec.mean, [train.mean() / 255]) and np.allclose(
        spec.std, [train.std() / 255]
    )


def test_cached_and_resized_rgb(tmp_path):
    root = tree(tmp_path / "faces", people=6)
    kw = {"channels": 3, "image_size": (8, 5), "identities": IdentitySplit(val=0, test=2)}
    cached = IdentityFolderDataModule(str(root), cache=True, **kw)
    disk = IdentityFolderDataModule(str(root), **kw)
    cached.setup(), disk.setup()
    assert cached.val_set is None and cached.spec().in_chans == 3
    for k in range(len(disk.test_set)):
        a, b = cached.test_set[k], disk.test_set[k]
        assert a["image"].shape == (3, 8, 5) and a["label"] == b["label"]
        assert torch.allclose(a["image"], b["image"], atol=1 / 255)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize(("val", "test"), [(5, 10), (0.1, 0.25), (0, 2), (2, 0.5)])
def test_identity_splits_are_disjoint_and_cover_everyone(seed, val, test):
    names = [f"s{i}" for i in range(1, 41)]
    train, v, t = split_identities(names, IdentitySplit(val=val, test=test, seed=seed))
    assert not (set(train) & set(v)) and not (set(train) & set(t)) and not (set(v) & set(t))
    assert sorted(train + v + t) == sorted(names)
    n_val = val if isinstance(val, int) else int(np.ceil(val * 40))
    n_test = test if isinstance(test, int) else int(np.ceil(test * 40))
    assert (len(v), len(t)) == (n_val, n_test)
    assert split_identities(names, IdentitySplit(val=val, test=test, seed=seed)) == (train, v, t)


def test_seeds_choose_different_identities_and_explicit_lists_win():
    names = [f"s{i}" for i in range(1, 41)]
    tests = {tuple(split_identities(names, IdentitySplit(seed=s))[2]) for s in range(5)}
    assert len(tests) == 5
    fixed = IdentitySplit(test_identities=("s40", "s3"), val_identities=["s7", "s8"], seed=3)
    train, val, test = split_identities(names, fixed)
    assert (val, test, len(train)) == (["s7", "s8"], ["s3", "s40"], 36)


@pytest.mark.parametrize(
    ("split", "match"),
    [
        (IdentitySplit(val=1), r"data.identities.val: 1 validation identity; use 0"),
        (IdentitySplit(test=1), r"data.identities.test: 1 test identities; verification needs"),
        (IdentitySplit(val=20, test=19), r"40 identities leave 1 for training"),
        (IdentitySplit(test_identities=("s41",)), r"test_identities: \['s41'\] are not identity"),
        (
            IdentitySplit(test_identities=("s1", "s2"), val_identities=("s2", "s3")),
            r"\['s2'\] are in both val_identities and test_identities",
        ),
    ],
)
def test_bad_identity_splits_are_config_errors(split, match):
    with pytest.raises(ConfigError, match=match):
        split_identities([f"s{i}" for i in range(1, 41)], split)


@pytest.mark.parametrize("bad", [{"val": -1}, {"test": 1.5}, {"val": True}, {"test": "3"}])
def test_identity_split_options_are_checked(bad):
    with pytest.raises(ConfigError, match=r"data.identities.(val|test) must be a count >= 0"):
        IdentitySplit(**bad)


@pytest.mark.parametrize("n", [0, 1])
def test_an_identity_folder_with_fewer_than_two_images_is_an_error(tmp_path, n):
    root = tree(tmp_path / "faces", people=4)
    for f in sorted((root / "p3").iterdir())[n:]:
        f.unlink()
    dm = IdentityFolderDataModule(str(root), identities=IdentitySplit(val=0, test=2))
    with pytest.raises(DataError, match=rf"identity folder '.*p3' has {n} image\(s\); verif"):
        dm.setup()


def test_missing_root_or_pairs_file_and_empty_root(tmp_path):
    with pytest.raises(DataError, match=r"data.root .* is not a folder"):
        IdentityFolderDataModule(str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"data.pairs .* is not a file"):
        IdentityFolderDataModule(str(tmp_path), pairs=str(tmp_path / "pairs.txt"))
    with pytest.raises(DataError, match="has no identity folders"):
        scan_identity_folders(tmp_path)


def test_pair_file_indexes_the_test_set(tmp_path):
    root = tree(tmp_path / "faces", people=6)
    (tmp_path / "pairs.txt").write_text("2\np2 1 3\np5 3 2\np2 2 p5 1\np5 3 p2 1\n")
    split = IdentitySplit(val=0, test_identities=("p5", "p2"))
    dm = IdentityFolderDataModule(str(root), identities=split, pairs=str(tmp_path / "pairs.txt"))
    dm.setup()
    assert dm.val_pairs is None and dm.test_pairs.dtype == torch.int64
    assert dm.test_pairs.tolist() == [[0, 2, 1], [5, 4, 1], [1, 3, 0], [5, 0, 0]]
    names = dm.sample_names("test")
    assert [Path(names[i]).parts[-2:] for i in (1, 3)] == [("p2", "2.pgm"), ("p5", "1.pgm")]
    (tmp_path / "pairs.txt").write_text("1\np2 1 3\np2 2 p1 1\n")
    dm = IdentityFolderDataModule(str(root), identities=split, pairs=str(tmp_path / "pairs.txt"))
    with pytest.raises(DataError, match=r"pairs.txt:3: identity 'p1' is not in the test split"):
        dm.setup()


def test_pk_batches_of_identities(tmp_path):
    root = tree(tmp_path / "faces", people=12, images=4)
    loader = LoaderConfig(classes_per_batch=3, samples_per_class=2)
    dm = IdentityFolderDataModule(str(root), identities=IdentitySplit(2, 2), loader=loader)
    dm.setup()
    batches = [b["label"].view(3, 2) for b in dm.train_dataloader()]
    assert len(batches) == 8 * 4 // 6  # 8 train identities x 4 images in batches of 3 x 2
    test_ids = {dm.spec().class_names.index(n) for n in dm.identity_splits["test"]}
    for b in batches:
        assert (b == b[:, :1]).all() and len(set(b[:, 0].tolist())) == 3
        assert not set(b.flatten().tolist()) & test_ids


@pytest.mark.skipif(not ORL.is_dir(), reason="shared/data/orl-faces not available")
def test_orl_faces():
    files = scan_identity_folders(ORL)
    assert list(files)[:3] == ["s1", "s2", "s3"] and len(files) == 40
    assert all(len(f) == 10 and Path(f[9]).name == "10.pgm" for f in files.values())
    dm = IdentityFolderDataModule(str(ORL))
    dm.setup()
    spec = dm.spec()
    assert (spec.num_classes, spec.in_chans, spec.image_size) == (40, 1, (112, 92))
    sizes = {k: len(v) for k, v in dm.identity_splits.items()}
    assert sizes == {"train": 25, "val": 5, "test": 10}  # 30 train + val people, 10 test
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (250, 50, 100)
    # Every file, one-line header ("P5 92 112 255") or three-line, decodes to its raw bytes.
    one_line = 0
    for split in ("train", "val", "test"):
        ds = getattr(dm, f"{split}_set")
        for k, f in enumerate(dm.sample_names(split)):
            raw = Path(f).read_bytes()
            one_line += raw.startswith(b"P5 92 112 255\n")
            want = np.frombuffer(raw[-92 * 112 :], np.uint8).reshape(112, 92)
            got = (ds[k]["image"][0] * 255).round().to(torch.uint8).numpy()
            assert np.array_equal(got, want), f
    assert one_line == 20
