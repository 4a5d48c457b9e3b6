"""The segmentation modules on the real data in shared/data (skipped where it is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.segmentation import MaskFolderDataModule, PairedFolderDataModule, SegAugment

CAMVID = SHARED_DATA / "camvid-small"
ISBI = SHARED_DATA / "isbi2012-em"


@pytest.mark.skipif(not CAMVID.is_dir(), reason="shared/data/camvid-small is absent")
def test_camvid_small() -> None:
    dm = PairedFolderDataModule(
        str(CAMVID),
        class_names="camvid",
        ignore_index=11,
        crop_size=(96, 128),
        augment=SegAugment(scale=(0.75, 1.5), hflip=True),
        loader=LoaderConfig(batch_size=4),
    )
    dm.setup()
    assert len(dm.val_set) == 101 and len(dm.train_set) + len(dm.test_set) == 367
    spec = dm.spec()
    assert spec.num_classes == 11 and spec.ignore_index == 11 and spec.in_chans == 3
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 3, 96, 128) and b["mask"].shape == (4, 96, 128)
    assert int(b["mask"].max()) <= 11
    v = dm.val_set[0]
    assert v["image"].shape == (3, 180, 240)
    # SegNet's weights (prototxt, full CamVid train): the rare classes weigh most, road least
    w = np.asarray(spec.class_weights)
    assert w.argmin() == 3 and set(np.argsort(w)[-3:]) <= {2, 6, 9, 10}
    assert (w > 0).all()


@pytest.mark.skipif(not ISBI.is_dir(), reason="shared/data/isbi2012-em is absent")
def test_isbi2012() -> None:
    dm = MaskFolderDataModule(
        str(ISBI), class_names="isbi", split=SplitConfig(val_fraction=0.1, test_fraction=0.2)
    )
    dm.setup()
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [21, 3, 6]
    spec = dm.spec()
    assert spec.in_chans == 1 and spec.image_size == (512, 512) and spec.num_classes == 2
    cell = dm.class_pixels[1] / dm.class_pixels.sum()
    assert 0.7 < cell < 0.85  # ~78 % of the pixels are cell interior (255), the rest membrane
