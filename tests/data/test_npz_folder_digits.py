import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.cli import main
from visrep.data import (
    DigitsDataModule,
    ImageFolderDataModule,
    NpzDataModule,
    list_images,
    load_image,
)
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.errors import ConfigError, DataError


def test_digits_split_is_seeded_stratified_and_disjoint():
    a, b = DigitsDataModule(split=SplitConfig(seed=3)), DigitsDataModule(split=SplitConfig(seed=3))
    a.setup()
    b.setup()
    assert a.test_set.indices == b.test_set.indices
    tr, va, te = (set(s.indices) for s in (a.train_set, a.val_set, a.test_set))
    assert not (tr & va or tr & te or va & te) and len(tr | va | te) == 1797
    assert len(te) == 360
    c = DigitsDataModule(split=SplitConfig(seed=4))
    c.setup()
    assert c.test_set.indices != a.test_set.indices


def test_digits_train_samples_is_a_seeded_stratified_subset():
    full = DigitsDataModule(split=SplitConfig(seed=3))
    a, b = (
        DigitsDataModule(split=SplitConfig(seed=3, train_samples=100)),
        DigitsDataModule(split=SplitConfig(seed=3, train_samples=100)),
    )
    for dm in (full, a, b):
        dm.setup()
    assert len(a.train_set) == 100 and a.train_set.indices == b.train_set.indices
    assert a.train_set.indices == sorted(a.train_set.indices)
    assert set(a.train_set.indices) < set(full.train_set.indices)
    targets = a.train_set.dataset.targets[np.asarray(a.train_set.indices)]
    assert set(np.asarray(targets).tolist()) == set(range(10))
    assert a.val_set.indices == full.val_set.indices
    assert a.test_set.indices == full.test_set.indices
    everything = DigitsDataModule(split=SplitConfig(seed=3, train_samples=10_000))
    everything.setup()
    assert everything.train_set.indices == full.train_set.indices
    with pytest.raises(ConfigError, match="train_samples"):
        DigitsDataModule(split=SplitConfig(train_samples=0))


def test_cli_accepts_train_samples(capsys):
    with pytest.raises(SystemExit) as e:
        main(
            ["fit", "--config", "quickstart", "--data.split.train_samples", "50", "--print_config"]
        )
    assert e.value.code == 0
    assert "train_samples: 50" in capsys.readouterr().out


def test_npz_single_archive_and_layouts(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 6, 6, 3), dtype=np.uint8)  # NHWC
    y = np.arange(30) % 2
    np.savez(tmp_path / "train.npz", x=x, y=y)
    dm = NpzDataModule(train_path=str(tmp_path / "train.npz"))
    dm.setup()
    assert dm.image_shape == (3, 6, 6) and dm.num_classes == 2
    img = dm.train_set.dataset[0]["image"]
    np.testing.assert_allclose(img.numpy(), x[0].transpose(2, 0, 1) / 255, atol=1e-6)


def test_npz_separate_label_files_kmnist_layout(tmp_path):
    np.savez(tmp_path / "imgs.npz", np.zeros((10, 4, 4), np.uint8))
    np.savez(tmp_path / "labels.npz", np.arange(10) % 5)
    dm = NpzDataModule(
        train_path=str(tmp_path / "imgs.npz"), train_labels_path=str(tmp_path / "labels.npz")
    )
    dm.setup()
    assert dm.num_classes == 5


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 4, 4)), other=np.zeros(3))
    with pytest.raises(DataError, match="no image array 'x'"):
        NpzDataModule(train_path=str(tmp_path / "a.npz")).setup()
    np.savez(tmp_path / "b.npz", x=np.full((3, 4, 4), 7.0), y=np.zeros(3, int))
    with pytest.raises(DataError, match=r"uint8 .* or float in"):
        NpzDataModule(train_path=str(tmp_path / "b.npz")).setup()
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read npz file"):
        NpzDataModule(train_path=str(tmp_path / "c.npz")).setup()


def test_folder_tree_held_out_splits(folder_tree):
    dm = ImageFolderDataModule(
        root=str(folder_tree),
        loader=LoaderConfig(batch_size=4),
        split=SplitConfig(test_fraction=0.25, val_fraction=0.2),
    )
    dm.setup()
    assert dm.class_names == ["cat", "dog", "owl"] and dm.image_shape == (3, 10, 10)
    assert len(dm.test_set) == 6
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["image"], batch["label"]
    assert x.shape == (4, 3, 10, 10)
    # the dominant channel is the class
    assert (x.mean((2, 3)).argmax(1) == y).all()


def test_folder_cache_matches_streaming(folder_tree):
    a = ImageFolderDataModule(root=str(folder_tree), cache=True, channels=1, image_size=8)
    b = ImageFolderDataModule(root=str(folder_tree), cache=False, channels=1, image_size=8)
    a.setup()
    b.setup()
    assert a.image_shape == (1, 8, 8)
    for i in (0, 5):
        xa, ya = a.train_set[i].values()
        xb, yb = b.train_set[i].values()
        assert ya == yb and (xa - xb).abs().max() < 1 / 255 + 1e-6


def test_folder_with_split_dirs(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (5, 5), 40 * i).save(tmp_path / split / c / f"{i}.png")
    dm = ImageFolderDataModule(root=str(tmp_path), split=SplitConfig(val_fraction=0.25))
    dm.setup()
    assert len(dm.test_set) == 4 and dm.image_shape == (1, 5, 5)


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="has no images in class sub-folders"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup()
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataModule(root=str(tmp_path / "missing"))
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*x\.png"):
        ImageFolderDataModule(root=str(tmp_path / "bad")).setup()


def test_list_images(tmp_path, folder_tree):
    assert len(list_images(folder_tree)) == 24
    assert list_images(folder_tree / "cat" / "0.png") == [str(folder_tree / "cat" / "0.png")]
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DataError, match="is not an image"):
        list_images(tmp_path / "t.txt")


@pytest.mark.skipif(not (SHARED_DATA / "kmnist").is_dir(), reason="../shared/data/kmnist absent")
def test_real_kmnist_npz():
    root = SHARED_DATA / "kmnist" / "KMNIST"
    dm = NpzDataModule(
        train_path=str(root / "kmnist-test-imgs.npz"),
        train_labels_path=str(root / "kmnist-test-labels.npz"),
    )
    dm.setup()
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 10_000


def _npz_pair(tmp_path, **test_arrays):
    x = np.random.default_rng(2).integers(0, 255, (12, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(12) % 3)
    np.savez(tmp_path / "test.npz", **test_arrays)
    return NpzDataModule(
        train_path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
    )


def test_npz_corrupt_archives_name_the_file(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    data = (_npz_pair(tmp_path, x=x, y=np.arange(6) % 3), (tmp_path / "test.npz").read_bytes())[1]
    flipped = bytearray(data)
    flipped[data.index(b"\x93NUMPY") + 200] ^= 1  # payload byte: the member fails its CRC
    for name, content in (("zero", b""), ("cut", data[: len(data) // 2]), ("crc", flipped)):
        (tmp_path / "test.npz").write_bytes(content)
        with pytest.raises(DataError, match=r"cannot read npz file .*test\.npz'") as info:
            NpzDataModule(
                train_path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
            ).setup()
        assert "\n" not in str(info.value), name
    np.save(tmp_path / "test.npy", x)
    (tmp_path / "test.npz").write_bytes((tmp_path / "test.npy").read_bytes())
    with pytest.raises(DataError, match=r"test\.npz' is a single \.npy array"):
        NpzDataModule(train_path=str(tmp_path / "test.npz")).setup()


def test_npz_bad_labels_and_images_name_the_file(tmp_path):
    x, y = np.zeros((6, 4, 4), np.uint8), np.arange(6) % 3
    with pytest.raises(DataError, match=r"test\.npz: labels must be class indices .*\[-2, 0\]"):
        _npz_pair(tmp_path, x=x, y=y - 2).setup()
    with pytest.raises(DataError, match=r"test\.npz: labels must be class indices"):
        _npz_pair(tmp_path, x=x, y=y + 2**40).setup()  # not 2**40 class names
    with pytest.raises(DataError, match=r"test\.npz: holds no images"):
        _npz_pair(tmp_path, x=x[:0], y=y[:0]).setup()
    with pytest.raises(DataError, match=r"test\.npz: 6 images but 5 labels"):
        _npz_pair(tmp_path, x=x, y=y[:5]).setup()
    with pytest.raises(DataError, match=r"test\.npz: image array has shape \(6, 0, 4\)"):
        _npz_pair(tmp_path, x=x[:, :0], y=y).setup()
    for bad in (np.nan, np.inf):
        xf = np.full((6, 4, 4), 0.5, np.float32)
        xf[3, 1, 1] = bad
        with pytest.raises(
            DataError, match=r"test\.npz: images must be uint8 .* float in \[0, 1\]"
        ):
            _npz_pair(tmp_path, x=xf, y=y).setup()
    np.savez(tmp_path / "imgs.npz", x)
    np.savez(tmp_path / "labels.npz", np.arange(5))
    with pytest.raises(DataError, match=r"imgs\.npz has 6 images but .*labels\.npz has 5 labels"):
        NpzDataModule(
            train_path=str(tmp_path / "imgs.npz"), train_labels_path=str(tmp_path / "labels.npz")
        ).setup()


def test_npz_class_names_must_cover_the_labels(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.arange(6) % 3)
    with pytest.raises(DataError, match=r"labels go up to 2 but data.class_names lists 2"):
        NpzDataModule(train_path=str(tmp_path / "a.npz"), class_names=["a", "b"]).setup()


def test_broken_png_decoding_is_a_data_error(tmp_path):
    import io
    import struct

    buf = io.BytesIO()
    img = np.random.default_rng(5).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(img).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    i = data.index(b"IDAT")
    data[i - 4 : i] = struct.pack(">I", struct.unpack(">I", data[i - 4 : i])[0] - 32)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for j in range(3):
            (tmp_path / c / f"{j}.png").write_bytes(buf.getvalue())
    (tmp_path / "a" / "0.png").write_bytes(data)  # opens (header fine), fails to decode
    with pytest.raises(DataError, match=r"cannot read image .*0\.png.*broken PNG"):
        load_image(tmp_path / "a" / "0.png", 3)
    with pytest.raises(DataError, match=r"cannot read image .*0\.png"):
        ImageFolderDataModule(root=str(tmp_path), cache=True).setup()


@pytest.mark.parametrize("kind", ["png16", "pgm65535", "pgm1000"])
def test_load_image_scales_16_bit_grey(tmp_path, kind: str) -> None:
    """16-bit PNG and PGM (maxval > 255) scale to [0, 1] by their maxval; PIL's convert("L")
    would clip every value above 255 to white."""
    values, maxval = np.array([[32768, 256, 0]], dtype=np.uint16), 65535
    if kind == "pgm1000":
        values, maxval = np.array([[500, 1000, 0]], dtype=np.uint16), 1000
    path = tmp_path / ("a.png" if kind == "png16" else "a.pgm")
    if kind == "png16":
        Image.fromarray(values).save(path)
    else:
        path.write_bytes(f"P5 3 1 {maxval}\n".encode() + values.astype(">u2").tobytes())
    want = torch.from_numpy(values / maxval).float()
    # Pillow rescales a maxval-1000 PGM to 16 bits: half a 16-bit step of rounding
    torch.testing.assert_close(load_image(path, 1), want[None], atol=1 / 65535, rtol=0)
    rgb = load_image(path, 3, (2, 6))
    assert rgb.shape == (3, 2, 6) and torch.equal(rgb[0], rgb[2])
