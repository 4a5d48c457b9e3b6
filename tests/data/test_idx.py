import gzip
import struct

import numpy as np
import pytest

from tests.conftest import write_idx
from visrep.data import IDXDataModule, read_idx
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.errors import DataError


def test_read_idx_roundtrip_plain_and_gz(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        p = write_idx(tmp_path / f"x{int(gz)}-idx3-ubyte{'.gz' if gz else ''}", a, gz)
        b = read_idx(p)
        assert b.shape == (2, 3, 4) and b.dtype == np.uint8
        np.testing.assert_array_equal(b, a)


def test_read_idx_other_dtypes(tmp_path):
    a = np.array([[1.5, -2.0]], dtype=">f4")
    p = tmp_path / "f.idx"
    p.write_bytes(bytes([0, 0, 0x0D, 2]) + np.array([1, 2], ">u4").tobytes() + a.tobytes())
    np.testing.assert_array_equal(read_idx(p), a)


def test_bad_magic(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="bad magic number 12340803"):
        read_idx(p)


def test_truncated_payload(tmp_path):
    a = np.zeros((4, 5, 5), np.uint8)
    p = write_idx(tmp_path / "t-idx3-ubyte", a)
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"payload is 93 bytes, expected 100 .*truncated"):
        read_idx(p)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6])
    with pytest.raises(DataError, match=r"x-idx3-ubyte\.gz"):
        read_idx(p)


def test_missing_file_and_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is not a folder"):
        IDXDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no train images IDX file"):
        IDXDataModule(root=str(tmp_path)).setup()


def test_datamodule_splits_and_stats(idx_dir):
    dm = IDXDataModule(
        root=str(idx_dir), loader=LoaderConfig(batch_size=8), split=SplitConfig(val_fraction=0.25)
    )
    dm.setup()
    assert dm.image_shape == (1, 12, 12) and dm.num_classes == 3
    assert len(dm.train_set) == 45 and len(dm.val_set) == 15 and len(dm.test_set) == 20
    x = next(iter(dm.train_dataloader()))["image"]
    assert x.shape == (8, 1, 12, 12) and x.min() >= 0 and x.max() <= 1
    # statistics come from the training split only
    imgs = np.stack([dm.train_set[i]["image"].numpy() for i in range(len(dm.train_set))])
    assert dm.mean[0] == pytest.approx(imgs.mean(), rel=1e-5)
    assert dm.std[0] == pytest.approx(imgs.std(), rel=1e-4)


def test_corrupt_deflate_stream_is_a_data_error(tmp_path):
    # a gzip member whose deflate block has the reserved type 3: zlib.error, not EOF or OSError
    p = tmp_path / "z-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"")[:10] + b"\x07" + bytes(16))
    with pytest.raises(DataError, match=r"z-idx3-ubyte\.gz.*cannot decompress"):
        read_idx(p)


def test_dimension_count_and_overflowing_dims(tmp_path):
    p = tmp_path / "d-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 255]) + struct.pack(">255I", *([1] * 255)) + b"\x07")
    with pytest.raises(DataError, match=r"d-idx3-ubyte'.*255 dimensions; expected at most 16"):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4))  # 2**64 wraps to 0
    with pytest.raises(
        DataError, match=r"d-idx3-ubyte'.*payload is 0 bytes, expected 18446744073709551616 "
    ):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 9) + bytes(8))
    with pytest.raises(DataError, match=r"d-idx3-ubyte'.*truncated"):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 5, 5))  # empty, not an mmap error
    assert read_idx(p).shape == (0, 5, 5)


def _idx_root(tmp_path, test_images=None, test_labels=None):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 6)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 4, 4)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n) % 3)
    for kind, content in (("images-idx3", test_images), ("labels-idx1", test_labels)):
        if content is not None:
            (tmp_path / f"t10k-{kind}-ubyte").write_bytes(content)
    return IDXDataModule(root=str(tmp_path), split=SplitConfig(val_fraction=0.25))


def _idx_bytes(a, code):
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def test_datamodule_refuses_bad_splits_naming_the_file(tmp_path):
    dm = _idx_root(
        tmp_path, _idx_bytes(np.zeros((0, 4, 4), ">u1"), 8), _idx_bytes(np.zeros(0, ">u1"), 8)
    )
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: holds no images"):
        dm.setup()
    labels = np.array([0, -1, 1, 0, 1, 0], ">i1")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: labels must be class indices"):
        _idx_root(tmp_path, test_labels=_idx_bytes(labels, 0x09)).setup()
    labels = np.array([0, 2**31 - 1, 1, 0, 1, 0], ">i4")  # not 2**31 class names
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: labels must be class indices"):
        _idx_root(tmp_path, test_labels=_idx_bytes(labels, 0x0C)).setup()
    labels = np.array([0, 1.5, 1, 0, 1, 0], ">f4")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: labels must be a 1-D integer"):
        _idx_root(tmp_path, test_labels=_idx_bytes(labels, 0x0D)).setup()
    nan = np.full((6, 4, 4), np.nan, ">f4")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: images must be uint8"):
        _idx_root(tmp_path, test_images=_idx_bytes(nan, 0x0D)).setup()
    ints = np.full((6, 4, 4), 200, ">i2")  # no known scale to [0, 1]
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: images must be uint8"):
        _idx_root(tmp_path, test_images=_idx_bytes(ints, 0x0B)).setup()
    labels = np.arange(5, dtype=">u1")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte has 6 images but .*t10k-labels"):
        _idx_root(tmp_path, test_labels=_idx_bytes(labels, 8)).setup()


def test_float_images_in_range_are_read(tmp_path):
    x = np.random.default_rng(1).random((6, 4, 4)).astype(">f4")
    dm = _idx_root(tmp_path, test_images=_idx_bytes(x, 0x0D))
    dm.setup()
    img = dm.test_set[2]["image"]
    np.testing.assert_allclose(img.numpy()[0], x[2], rtol=1e-6)
