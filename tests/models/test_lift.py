"""LIFT's networks and glue (visrep.models.correspondence.lift): differentiable crops fed by the
soft-argmax, rotation by ORI's angle, unit descriptors, non-maximum suppression, run time."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visrep.data.correspondence.lift_patches import crop_patches
from visrep.errors import ConfigError, ShapeError
from visrep.models.correspondence.lift import (
    GHH,
    LIFT,
    LiftDescriptor,
    crop,
    ghh,
    nms,
    orientation_angle,
)
from visrep.models.layers.heatmaps import soft_argmax


def _smooth(size: int, centre: float, angle: float = 0.0) -> torch.Tensor:
    """A smooth, asymmetric pattern ``f(R(angle)^T (p - c))`` on a ``size x size`` grid: the
    pattern rotated by ``angle`` about ``c``."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")  # fmt: skip
    dx, dy = xs - centre, ys - centre
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # R^T (p - c)
    return (torch.exp(-((u - 4) ** 2 + v**2) / 32) + 0.5 * torch.exp(-(u**2 + (v + 6) ** 2) / 18))[
        None, None
    ]


def test_soft_argmax_location_feeds_a_differentiable_crop():
    """gradcheck of score map -> soft-argmax -> crop through the sampler (float64)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    score = torch.rand(1, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)

    def f(s):
        xy = soft_argmax(s, beta=2.0) + 3.0  # map pixel -> image pixel
        return crop(image, xy[:, None], 2.5, 0.3, 4)

    assert torch.autograd.gradcheck(f, (score,))
    centres = torch.tensor([[[5.3, 6.1], [4.7, 5.2]]], dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([[0.2, -0.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, a: crop(image, c, 2.5, a, 3), (centres, angle))


def test_crop_matches_the_data_stage_crop_and_reads_pixels():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 1, 20, 16, generator=g)
    centres = torch.rand(2, 5, 2, generator=g) * 10 + 3
    want = crop_patches(image, centres, 3.0, 0.4, 6)
    torch.testing.assert_close(crop(image, centres, 3.0, 0.4, 6), want)
    # radius s / 2 at a pixel centre of an even crop: the crop IS the image block
    block = crop(image, torch.tensor([[[7.5, 9.5]]] * 2), 3.0, 0.0, 6)
    torch.testing.assert_close(block[:, 0], image[:, :, 7:13, 5:11])


@pytest.mark.parametrize("angle", [0.6, -1.2, 2.5])
def test_rotation_by_the_ori_angle_undoes_a_rotated_patch(angle):
    """A patch rotated by ``angle`` comes back upright when ORI outputs (sin, cos) of it."""
    size, c = 48, 23.5
    upright, rotated = _smooth(size, c).float(), _smooth(size, c, angle).float()

    class Fixed(nn.Module):
        def forward(self, x):
            return torch.tensor([[math.sin(angle), math.cos(angle)]]).expand(len(x), 2)

    net = LIFT(crop_size=24)
    net.ori, net.desc = Fixed(), nn.Flatten()  # the "descriptor" is the rotated crop itself
    got, a = net.describe_at(rotated, torch.tensor([[[c, c]]]))
    assert a.item() == pytest.approx(angle, abs=1e-6)
    assert orientation_angle(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.pi / 2)
    want = crop(upright, torch.tensor([[[c, c]]]), 12, 0.0, 24).flatten()
    assert (got.flatten() - want).abs().max() < 0.015 * want.abs().max()
    unrotated = crop(rotated, torch.tensor([[[c, c]]]), 12, 0.0, 24).flatten()
    assert (unrotated - want).abs().max() > 0.2 * want.abs().max()  # the test can fail


def test_descriptors_have_unit_norm_and_ghh_is_its_formula():
    torch.manual_seed(0)
    d = LiftDescriptor(32, dim=24, width=8)(torch.rand(7, 1, 32, 32))
    assert d.shape == (7, 24)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(7))
    out = LIFT(crop_size=20, det_kernel=5, dim=8, ori_width=4, desc_width=4)(
        torch.rand(3, 1, 32, 32)
    )
    torch.testing.assert_close(out["desc"].norm(dim=1), torch.ones(3))
    assert out["score"].shape == (3, 1, 28, 28) and out["xy"].shape == (3, 2)
    x = torch.randn(2, 32, 3, 3)
    groups = x.view(2, 2, 4, 4, 3, 3).amax(3)
    want = groups[:, :, 0] - groups[:, :, 1] + groups[:, :, 2] - groups[:, :, 3]
    torch.testing.assert_close(ghh(x, 4, 4), want)
    torch.testing.assert_close(GHH(4, 4)(x), ghh(x, 4, 4))
    with pytest.raises(ShapeError):
        ghh(torch.zeros(1, 6, 2, 2), 4, 4)
    with pytest.raises(ConfigError):
        LiftDescriptor(16)


def test_nms_picks_the_local_maxima_of_a_synthetic_map():
    ys, xs = torch.meshgrid(torch.arange(30.0), torch.arange(40.0), indexing="ij")
    peaks = [(10, 8, 3.0), (30, 20, 2.0), (13, 9, 1.0), (20, 15, 1.5), (1, 1, 5.0)]
    score = sum(h * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2) for x, y, h in peaks)[
        None, None
    ]
    xy, value, valid = nms(score, radius=4, num=10, border=3)
    got = xy[0][valid[0]].tolist()
    # (13, 9) lies within 4 px of the stronger (10, 8); (1, 1) is in the border
    assert got[:3] == [[10.0, 8.0], [30.0, 20.0], [20.0, 15.0]]
    kept = value[0][valid[0]]
    torch.testing.assert_close(kept[:3], score[0, 0, [8, 20, 15], [10, 30, 20]])
    assert (kept[3:] < 1e-3).all()  # only the flat far field (ties) is left
    with pytest.raises(ShapeError):
        nms(score[0], 4, 10)


def test_extract_is_batched_and_consistent_with_one_keypoint_at_a_time():
    torch.manual_seed(0)
    net = LIFT(crop_size=20, det_kernel=5, dim=8, ori_width=4, desc_width=4).eval()
    image = torch.rand(1, 1, 48, 56)
    kp, desc = net.extract(image, num=20, nms_radius=3)
    assert kp.shape[1] == 5 and 1 <= len(kp) <= 20 and desc.shape == (len(kp), 8)
    assert (kp[:, 0] >= 10).all() and (kp[:, 0] <= 56 - 11).all() and (kp[:, 2] == 10).all()
    with torch.no_grad():
        one, a = net.describe_at(image, kp[3:4, :2][None])
    torch.testing.assert_close(one[0, 0], desc[3], atol=1e-5, rtol=1e-4)
    assert a[0, 0].item() == pytest.approx(kp[3, 3].item(), abs=1e-5)
    with pytest.raises(ShapeError):
        net.extract(torch.rand(1, 3, 20, 20))
