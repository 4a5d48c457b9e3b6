"""Dense SIFT (visrep.models.shallow.sift): parity with OpenCV's descriptors on the same keypoints,
the keypoint grid and its scale levels, RootSIFT, orientation layout and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.shallow import (
    DenseSift,
    dense_keypoints,
    dense_sift,
    root_sift,
    sift_octave,
    to_gray_uint8,
)


def _images(n: int = 3, c: int = 3, h: int = 40, w: int = 52) -> torch.Tensor:
    """Smooth random images (blurred noise), so SIFT sees real gradients."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, c, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic").clamp(0, 1)


def test_descriptors_equal_opencv_on_the_same_keypoints():
    images = _images()
    desc, pos = dense_sift(images, step=5, bin_sizes=(3, 4, 6, 8))
    _, sizes = dense_keypoints(40, 52, 5, (3, 4, 6, 8))
    sift = cv2.SIFT_create()
    for i, img in enumerate(images):
        rgb = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        kps = [
            cv2.KeyPoint(float(x), float(y), float(s), 0.0, 0.0, sift_octave(float(s)))
            for (x, y), s in zip(pos.tolist(), sizes.tolist(), strict=True)
        ]
        kept, ref = sift.compute(gray, kps)
        assert len(kept) == len(kps)
        np.testing.assert_array_equal(desc[i].numpy(), ref)
    assert desc.abs().sum() > 0


def test_octave_is_what_the_sift_detector_assigns_to_that_size():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((160, 160)) * 255).astype(np.uint8), (0, 0), 2)
    kps = cv2.SIFT_create().detect(img, None)
    assert len(kps) > 20
    octaves = {(k.octave & 255) for k in kps}
    assert len(octaves) >= 2  # several octaves, including the doubled image (255 = -1)
    for k in kps:  # the top 8 bits hold the sub-layer offset, not part of the level
        assert sift_octave(k.size) == k.octave & 0xFFFF


def test_keypoint_grid_is_centred_scale_major_and_sized_by_bin():
    pos, sizes = dense_keypoints(10, 13, step=4, bin_sizes=(3, 6))
    xs, ys = torch.tensor([0.0, 4.0, 8.0, 12.0]), torch.tensor([0.5, 4.5, 8.5])
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
    torch.testing.assert_close(pos, torch.cat([grid, grid]))
    torch.testing.assert_close(sizes, torch.tensor([2.0] * 12 + [4.0] * 12))  # bin = 1.5 size


def test_orientation_layout_of_a_horizontal_ramp():
    """A ramp in x has gradient angle 0 everywhere: every bin's mass in orientation 0."""
    ramp = torch.linspace(0.1, 0.9, 48).expand(1, 1, 48, 48)
    desc, pos = dense_sift(ramp, step=8, bin_sizes=(3,))
    inner = (pos[:, 0] > 12) & (pos[:, 0] < 36) & (pos[:, 1] > 12) & (pos[:, 1] < 36)
    d = desc[0, inner].view(-1, 16, 8)
    assert d[..., 0].min() > 0
    assert d[..., 1:].abs().max() == 0


def test_constant_image_has_zero_descriptors_and_grey_equals_rgb():
    desc, _ = dense_sift(torch.full((1, 1, 24, 24), 0.5), step=6)
    assert desc.abs().max() == 0
    gray = _images(2, 1)
    d1, p1 = dense_sift(gray)
    d3, p3 = dense_sift(gray.expand(-1, 3, -1, -1))
    torch.testing.assert_close(d1, d3, rtol=0, atol=0)
    torch.testing.assert_close(p1, p3)


def test_root_sift():
    images = _images(2)
    sift, _ = dense_sift(images, step=8)
    root, _ = dense_sift(images, step=8, root=True)
    torch.testing.assert_close(root, root_sift(sift))
    nz = sift.sum(-1) > 0
    torch.testing.assert_close(root[nz].norm(dim=-1), torch.ones(int(nz.sum())))
    torch.testing.assert_close(root[nz].square(), sift[nz] / sift[nz].sum(-1, keepdim=True))


def test_module_equals_function_and_shapes():
    images = _images(2, h=32, w=32)
    mod = DenseSift(step=4, bin_sizes=(4, 6, 8))
    d, p = mod.describe(images)
    df, pf = dense_sift(images, 4, (4, 6, 8))
    assert d.shape == (2, 3 * 8 * 8, 128) and p.shape == (192, 2) and d.dtype == torch.float32
    torch.testing.assert_close(d, df)
    torch.testing.assert_close(p, pf)
    assert mod.keypoints(32, 32)[0].shape == (192, 2) and mod.num_features == 128
    assert dense_sift(images[:0])[0].shape == (0, 192, 128)


def test_gray_conversion_is_opencv_bt601():
    img = _images(1)
    rgb = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(to_gray_uint8(img)[0], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "words"),
    [
        (torch.rand(3, 32, 32), {}, ShapeError, "(N, C, H, W)"),
        (torch.rand(1, 2, 32, 32), {}, ShapeError, "C = 1 or 3"),
        (torch.randint(0, 255, (1, 1, 8, 8)), {}, ShapeError, "float"),
        (torch.randn(1, 3, 8, 8), {}, DataError, "[0, 1]"),
        (torch.rand(1, 1, 8, 8), {"step": 0}, ConfigError, "step"),
        (torch.rand(1, 1, 8, 8), {"bin_sizes": ()}, ConfigError, "bin_sizes"),
    ],
)
def test_bad_input(images, kwargs, error, words):
    with pytest.raises(error) as e:
        dense_sift(images, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
