"""VOCDetectionDataModule on BCCD in shared/data (skipped where it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA
from visrep.data.detection import VOCDetectionDataModule, object_counts

BCCD = SHARED_DATA / "bccd" / "BCCD"


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd is absent")
def test_bccd_counts() -> None:
    s = VOCDetectionDataModule(str(BCCD)).load()  # no warnings: no box passes its image
    assert s.class_names == ["Platelets", "RBC", "WBC"]
    assert (len(s.train), len(s.val), len(s.test)) == (205, 87, 72)
    assert object_counts(s.train, 3).tolist() == [209, 2382, 214]
    assert object_counts(s.val, 3).tolist() == [83, 968, 87]
    assert object_counts(s.test, 3).tolist() == [69, 805, 71]
    total = sum(object_counts(d, 3) for d in (s.train, s.val, s.test))
    assert total.tolist() == [361, 4155, 372]
    files = {a.image for d in (s.train, s.val, s.test) for a in d.annotations}
    assert len(files) == 364  # the three lists are disjoint
    x = s.train[0]
    assert x["image"].shape == (3, 480, 640) and x["boxes"].shape == (len(x["labels"]), 4)
    b = torch.cat([s.train[i]["boxes"] for i in range(5)])
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert b.min() >= 0 and (b[:, [0, 2]] <= 640).all() and (b[:, [1, 3]] <= 480).all()
    assert not np.concatenate([a.difficult for a in s.train.annotations]).any()
