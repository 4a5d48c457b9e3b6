"""Disparity warping, Godard's disparity network and the classical stereo baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import SHARED_DATA
from visrep.errors import ConfigError, ShapeError
from visrep.models.depth import (
    DisparityNet,
    DisparityWarp,
    MatcherConfig,
    classical_disparity,
    warp_with_disparity,
)

MOTORCYCLE = SHARED_DATA / "stereo" / "skimage-middlebury2014-motorcycle"


def texture(h: int, w: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """A smooth random texture (bilinear upsampling of noise), ``(1, C, H, W)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, channels, h // 4 + 2, w // 4 + 2, generator=g, dtype=torch.float64)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)


def shifted_pair(h: int = 24, w: int = 40, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A right view and the left view it gives at constant disparity ``d`` px: ``L(x) = R(x - d)``."""
    big = texture(h, w + d)
    return big[..., :w], big[..., d:]  # left, right: right(x) = big(x + d) = left(x + d)


def test_zero_disparity_is_the_identity():
    x = texture(9, 13)
    zero = torch.zeros(1, 1, 9, 13, dtype=x.dtype)
    for direction in ("right_to_left", "left_to_right"):
        for units in ("width", "pixels"):
            assert torch.allclose(warp_with_disparity(x, zero, direction, units), x, atol=1e-12)


def test_warping_the_right_view_with_true_disparity_reconstructs_the_left():
    d = 3
    left, right = shifted_pair(d=d)
    w = left.shape[-1]
    disp = torch.full((1, 1, 24, w), float(d), dtype=left.dtype)
    est = warp_with_disparity(right, disp, "right_to_left", "pixels")
    visible = slice(d, None)  # the first d columns look past the right view's border
    assert torch.allclose(est[..., visible], left[..., visible], atol=1e-12)
    # the same disparity as a fraction of the width
    est_w = warp_with_disparity(right, disp / w, "right_to_left", "width")
    assert torch.allclose(est_w, est, atol=1e-12)
    # and the right view from the left one with the right disparity (same constant here)
    est_r = warp_with_disparity(left, disp, "left_to_right", "pixels")
    assert torch.allclose(est_r[..., : w - d], right[..., : w - d], atol=1e-12)
    assert (est[..., visible] - left[..., visible]).abs().max() < 1e-9 < (right - left).abs().mean()


def test_sub_pixel_disparity_is_linear_interpolation():
    row = torch.arange(6.0, dtype=torch.float64).view(1, 1, 1, 6)
    out = warp_with_disparity(row, torch.full((1, 1, 1, 6), 0.25, dtype=torch.float64),
                              "left_to_right", "pixels")  # fmt: skip
    assert torch.allclose(out[0, 0, 0, :5], torch.arange(5, dtype=torch.float64) + 0.25)


@pytest.mark.skipif(not MOTORCYCLE.is_dir(), reason="shared stereo data absent")
def test_middlebury_true_disparity_reconstructs_the_left_view():
    """Motorcycle (500x741, the ground truth in pixels): the photometric error of the warped
    right view against the left, over the known pixels, drops far below that of no warp."""
    from visrep.data.stereo import read_disparity, read_view

    left = read_view(str(MOTORCYCLE / "motorcycle_left.png"))[None]
    right = read_view(str(MOTORCYCLE / "motorcycle_right.png"))[None]
    gt = read_disparity(str(MOTORCYCLE / "motorcycle_disp.npz"))[None]
    known = torch.isfinite(gt)
    # visible: the match x - d lands inside the right view
    xs = torch.arange(gt.shape[-1]).view(1, 1, 1, -1)
    mask = (known & (xs - gt.nan_to_num(0, 0, 0) >= 0)).expand_as(left)
    est = warp_with_disparity(right, torch.where(known, gt, 0), "right_to_left", "pixels")
    warped = (est - left).abs()[mask].mean()
    unwarped = (right - left).abs()[mask].mean()
    print(f"motorcycle L1 warped {float(warped):.4f} vs unwarped {float(unwarped):.4f}")
    assert warped < 0.3 * unwarped, (float(warped), float(unwarped))


def test_gradcheck_with_respect_to_disparity_and_image():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 2, 4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    # away from integer pixel offsets, where bilinear sampling has kinks
    disp = (0.3 + 0.4 * torch.rand(1, 1, 4, 6, dtype=torch.float64, generator=g)) / 6
    disp.requires_grad_(True)
    for direction in ("right_to_left", "left_to_right"):
        assert torch.autograd.gradcheck(
            lambda i, d, dr=direction: warp_with_disparity(i, d, dr), (img, disp)
        )


def test_module_equals_function():
    x, d = texture(8, 10), torch.rand(2, 1, 8, 10, dtype=torch.float64) * 0.2
    x = x.expand(2, -1, -1, -1)
    m = DisparityWarp("left_to_right", "width", "zeros")
    assert torch.equal(m(x, d), warp_with_disparity(x, d, "left_to_right", "width", "zeros"))


def test_warp_bad_input():
    x = torch.zeros(1, 3, 4, 5)
    with pytest.raises(ShapeError, match="disparity has shape"):
        warp_with_disparity(x, torch.zeros(1, 1, 4, 6), "right_to_left")
    with pytest.raises(ShapeError, match="expected \\(B, C, H, W\\)"):
        warp_with_disparity(x[0], torch.zeros(1, 1, 4, 5), "right_to_left")
    with pytest.raises(ConfigError, match="direction"):
        warp_with_disparity(x, torch.zeros(1, 1, 4, 5), "up")


def test_disparity_net_shapes_range_and_gradients():
    torch.manual_seed(0)
    net = DisparityNet(3, encoder_channels=(4, 8, 8, 8), decoder_channels=(8, 8, 4, 4),
                       max_disparity=0.3)  # fmt: skip
    out = net(torch.rand(2, 3, 17, 23))
    assert [tuple(d.shape) for d in out] == [(2, 2, 17, 23), (2, 2, 9, 12), (2, 2, 5, 6),
                                             (2, 2, 3, 3)]  # fmt: skip
    assert all(bool(((d > 0) & (d < 0.3)).all()) for d in out)
    sum(d.mean() for d in out).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_disparity_net_over_a_registered_backbone():
    from functools import partial

    from visrep.models.backbones.cnn import small_cnn

    net = DisparityNet(3, encoder=partial(small_cnn, channels=(4, 8, 8)), scales=3)
    out = net(torch.rand(1, 3, 16, 24))
    assert [tuple(d.shape[-2:]) for d in out] == [(16, 24), (8, 12), (4, 6)]


def test_disparity_net_bad_options():
    with pytest.raises(ConfigError, match="scales"):
        DisparityNet(3, encoder_channels=(4, 8), scales=4)
    with pytest.raises(ConfigError, match="decoder_channels"):
        DisparityNet(3, encoder_channels=(4, 8), decoder_channels=(4,))
    with pytest.raises(ConfigError, match="max_disparity"):
        DisparityNet(3, max_disparity=0)
    with pytest.raises(ShapeError, match="expects"):
        DisparityNet(3, encoder_channels=(4, 8), scales=2)(torch.zeros(1, 1, 8, 8))


def test_classical_matchers_find_a_constant_shift():
    """A textured pair at 6 px: both matchers recover it on the valid interior."""
    d = 6
    big = texture(64, 128 + d, seed=3, channels=1) * 0.8 + 0.1
    left, right = big[..., :128].float(), big[..., d:].float()
    cfg = MatcherConfig(num_disparities=16, bm_block=7, sgbm_block=5)
    for method in ("stereo_bm", "stereo_sgbm"):
        disp, valid = classical_disparity(left, right, method, cfg)
        assert disp.shape == (1, 1, 64, 128) and valid.dtype == torch.bool
        inner = disp[..., 8:-8, 24:-8]
        assert float((inner - d).abs().median()) < 0.5, method
    with pytest.raises(ConfigError, match="method"):
        classical_disparity(left, right, "census")
    with pytest.raises(ConfigError, match="bm_block"):
        MatcherConfig(bm_block=4)


def test_hole_filling_takes_the_left_neighbour():
    from visrep.models.depth import _fill_from_left

    d = np.array([[5.0, -1.0, 7.0, -1.0], [-1.0, -1.0, 2.0, -1.0], [-1.0] * 4], np.float32)
    out = _fill_from_left(d, d >= 0)
    assert out.tolist() == [[5.0, 5.0, 7.0, 7.0], [2.0, 2.0, 2.0, 2.0], [0.0] * 4]
