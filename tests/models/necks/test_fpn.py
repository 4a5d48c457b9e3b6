"""FPN neck (Lin et al. 2017): the top-down pathway by hand, identity weights, odd sizes,
module == function, extra levels, bad input."""

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.necks import FPN, fpn, fpn_top_down


def test_top_down_hand_computed_nearest():
    # L0 2x4 zeros, L1 1x2 = [[1, 2]], L2 1x1 = [[10]]: M2 = 10, M1 = [[11, 12]] (10 repeated
    # and cut to 1x2), M0 = nearest 2x of M1 cut to 2x4.
    l0, l1, l2 = (
        torch.zeros(1, 1, 2, 4),
        torch.tensor([[[[1.0, 2.0]]]]),
        torch.full((1, 1, 1, 1), 10.0),
    )
    m0, m1, m2 = fpn_top_down([l0, l1, l2])
    assert m2.equal(l2)
    assert m1.equal(torch.tensor([[[[11.0, 12.0]]]]))
    assert m0.equal(torch.tensor([[[[11.0, 11.0, 12.0, 12.0], [11.0, 11.0, 12.0, 12.0]]]]))


def test_top_down_odd_sizes_align_top_left():
    # A 5x7 level under a 3x4 level (ceil(5/2), ceil(7/2)): pixel (i, j) receives (i//2, j//2).
    coarse = torch.arange(12.0).view(1, 1, 3, 4)
    (m0, _) = fpn_top_down([torch.zeros(1, 1, 5, 7), coarse])
    i, j = torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij")
    assert m0[0, 0].equal(coarse[0, 0][i // 2, j // 2])
    # factor 4 (e.g. strides 4 -> 16) and bilinear mode
    (m0, _) = fpn_top_down([torch.zeros(1, 1, 7, 5), coarse[..., :2, :2]], factors=[4])
    assert m0[0, 0].equal(coarse[0, 0, :2, :2][torch.arange(7)[:, None] // 4, torch.arange(5) // 4])
    lat = torch.randn(2, 3, 6, 8)
    top = torch.randn(2, 3, 3, 4)
    (m0, _) = fpn_top_down([lat, top], mode="bilinear")
    ref = lat + F.interpolate(top, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(m0, ref)


def _identity_fpn(chs: int, n: int) -> FPN:
    neck = FPN([chs] * n, out_channels=chs)
    with torch.no_grad():
        for lat, out in zip(neck.lateral, neck.output, strict=True):
            lat.weight.copy_(torch.eye(chs)[:, :, None, None])
            out.weight.zero_()
            out.weight[:, :, 1, 1] = torch.eye(chs)
            lat.bias.zero_()
            out.bias.zero_()
    return neck


def test_identity_weights_give_level_plus_upsampled_coarser_level():
    # 1x1 laterals and 3x3 outputs set to the identity: P_i = C_i + up2(P_{i+1}) exactly.
    torch.manual_seed(0)
    neck = _identity_fpn(3, 3)
    c = [torch.randn(2, 3, 13, 9), torch.randn(2, 3, 7, 5), torch.randn(2, 3, 4, 3)]
    p = neck(c)
    assert [t.shape[-2:] for t in p] == [t.shape[-2:] for t in c]
    assert p[2].equal(c[2])
    for i in (1, 0):
        up = p[i + 1].repeat_interleave(2, -2).repeat_interleave(2, -1)
        torch.testing.assert_close(p[i], c[i] + up[..., : c[i].shape[-2], : c[i].shape[-1]])


def test_module_equals_function_and_feature_info():
    torch.manual_seed(0)
    neck = FPN(
        [4, 6, 8], out_channels=5, reductions=[4, 8, 32], upsample="bilinear", extra_levels=2
    )
    c = [torch.randn(2, 4, 17, 23), torch.randn(2, 6, 9, 12), torch.randn(2, 8, 3, 3)]
    p = neck(c)
    ref = fpn(
        c,
        [m.weight for m in neck.lateral],
        [m.bias for m in neck.lateral],
        [m.weight for m in neck.output],
        [m.bias for m in neck.output],
        factors=[2, 4],
        mode="bilinear",
        extra_levels=2,
    )
    assert len(p) == 5
    for a, b in zip(p, ref, strict=True):
        assert a.equal(b)
    # The paper's formula, written out with conv2d and interpolate.
    lat = [F.conv2d(x, m.weight, m.bias) for x, m in zip(c, neck.lateral, strict=True)]
    m2 = lat[2]
    m1 = lat[1] + F.interpolate(m2, scale_factor=4, mode="bilinear")[..., :9, :12]
    m0 = lat[0] + F.interpolate(m1, scale_factor=2, mode="bilinear")[..., :17, :23]
    for m, out, pi in zip((m0, m1, m2), neck.output, p, strict=False):
        torch.testing.assert_close(pi, F.conv2d(m, out.weight, out.bias, padding=1))
    assert p[3].equal(p[2][..., ::2, ::2]) and p[4].equal(p[3][..., ::2, ::2])  # P6, P7
    assert [(d["num_chs"], d["reduction"]) for d in neck.feature_info] == [
        (5, 4), (5, 8), (5, 32), (5, 64), (5, 128)
    ]  # fmt: skip
    assert all(x.shape[1] == 5 for x in p)
    p[0].sum().backward()
    assert all(m.weight.grad is not None for m in (*neck.lateral, *neck.output[:1]))


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="reductions"):
        FPN([4, 8], reductions=[4, 6])
    with pytest.raises(ConfigError, match="upsample"):
        FPN([4], upsample="cubic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="in_channels"):
        FPN([])
    neck = FPN([4, 8], out_channels=2)
    with pytest.raises(ShapeError, match=r"feature 1 has shape \(1, 4, 2, 2\), expected \(B, 8"):
        neck([torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 2, 2)])
    with pytest.raises(ShapeError, match="got 1 feature maps for 2 lateral"):
        neck([torch.zeros(1, 4, 4, 4)])
    with pytest.raises(ShapeError, match="smaller than the finer lateral"):
        fpn_top_down([torch.zeros(1, 1, 9, 9), torch.zeros(1, 1, 2, 2)])
    with pytest.raises(ConfigError, match="factors"):
        fpn_top_down([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)], factors=[2, 2])
