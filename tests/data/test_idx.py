import gzip

import numpy as np
import pytest

from tests.conftest import write_idx
from visrep.data import IDXDataModule, read_idx
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
    dm = IDXDataModule(root=str(idx_dir), batch_size=8, val_fraction=0.25)
    dm.setup()
    assert dm.image_shape == (1, 12, 12) and dm.num_classes == 3
    assert len(dm.train_set) == 45 and len(dm.val_set) == 15 and len(dm.test_set) == 20
    x, _y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 12, 12) and x.min() >= 0 and x.max() <= 1
    # statistics come from the training split only
    imgs = np.stack([dm.train_set[i][0].numpy() for i in range(len(dm.train_set))])
    assert dm.mean[0] == pytest.approx(imgs.mean(), rel=1e-5)
    assert dm.std[0] == pytest.approx(imgs.std(), rel=1e-4)
