"""LIFT quadruplets (visrep.data.correspondence.lift_patches) from real photographs and known
homographies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visrep.data.correspondence import PairConfig, PhotoSource, render_pair
from visrep.data.correspondence.lift_patches import (
    LiftPatchDataModule,
    crop_theta,
    local_affine,
    make_quadruplets,
)
from visrep.data.correspondence.sources import load_photo, scan_source
from visrep.errors import ConfigError


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def test_local_affine_of_a_similarity():
    a, s = 0.3, 1.5
    H = np.array(
        [[s * np.cos(a), -s * np.sin(a), 4], [s * np.sin(a), s * np.cos(a), -2], [0, 0, 1]]
    )
    q, scale, angle = local_affine(H, np.array([[1.0, 2.0], [5.0, 0.0]]))
    np.testing.assert_allclose(scale, [s, s])
    np.testing.assert_allclose(angle, [a, a])
    np.testing.assert_allclose(q[1], [4 + 5 * s * np.cos(a), -2 + 5 * s * np.sin(a)])


def test_crop_theta_rejects_bad_centres():
    with pytest.raises(Exception, match="centres"):
        crop_theta(torch.zeros(3), 1.0, 0.0, (4, 4))


def test_quadruplets_show_the_same_point_and_are_seeded():
    photo = next(p for p in scan_source(PhotoSource(builtin="skimage")) if p.name == "astronaut")
    image = load_photo(photo)
    out = []
    for _ in range(2):
        rng = np.random.default_rng(3)
        pair = PairConfig(image_size=256, max_rotation=60.0, max_shift=0.05, noise=0.0)
        im1, im2, H = render_pair(image, pair, rng)
        out.append(make_quadruplets(im1, im2, H, 16, 32, rng))
    (patches, angle, _), again = out
    np.testing.assert_array_equal(patches, again[0])
    assert patches.shape[1:] == (4, 32, 32) and patches.dtype == np.uint8 and len(patches) >= 8
    # P2 turned back by the true local rotation looks like P1; P3 and P4 do not
    import cv2

    assert np.abs(np.rad2deg(angle)).min() > 10

    def back(k: int, sign: float) -> np.ndarray:  # cv2: a positive angle turns counter-clockwise
        rot = cv2.getRotationMatrix2D((15.5, 15.5), sign * np.rad2deg(angle[k]), 1.0)
        return cv2.warpAffine(patches[k, 1], rot, (32, 32), flags=cv2.INTER_LINEAR)

    c = (slice(8, 24), slice(8, 24))
    p1 = [patches[k, 0][c].astype(float) for k in range(len(patches))]
    same = [_corr(p1[k], back(k, 1.0)[c].astype(float)) for k in range(len(patches))]
    wrong = [_corr(p1[k], back(k, -1.0)[c].astype(float)) for k in range(len(patches))]
    other = [_corr(p1[k], patches[k, 2][c].astype(float)) for k in range(len(patches))]
    assert np.median(same) > 0.85 and np.median(same) > np.median(wrong) + 0.1
    assert np.median(other) < 0.3


def test_datamodule_splits_by_photo_and_checks_options():
    dm = LiftPatchDataModule(
        sources=[PhotoSource(builtin="skimage")], pairs_per_photo=1,
        pair=PairConfig(image_size=128), points_per_pair=6, patch_size=32,
    )  # fmt: skip
    dm.setup("fit")
    s = dm.train_set[0]
    assert (
        s["patches"].shape == (4, 1, 32, 32) and 0 <= s["patches"].min() <= s["patches"].max() <= 1
    )
    train = {m for m in dm.train_set.dataset.quads.names}
    test = {m for m in dm.test_set.quads.names}
    assert (
        train and test and not ({n.split("#")[0] for n in train} & {n.split("#")[0] for n in test})
    )
    ids = np.concatenate([dm.train_set.dataset.quads.point, dm.test_set.quads.point])
    assert len(np.unique(ids)) == len(ids)
    assert dm.spec().family == "lift" and dm.spec().image_size == (32, 32)
    with pytest.raises(ConfigError, match="patch_size"):
        LiftPatchDataModule(patch_size=8)
