"""FCN's bilinear transposed convolution and the size alignment of dense outputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.upsample import (
    BilinearUpsample2d,
    bilinear_kernel,
    bilinear_upsample,
    crop_like,
    pad_like,
    upsample_geometry,
)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
def test_geometry_gives_exact_multiple(factor):
    k, p = upsample_geometry(factor)
    assert k == 2 * factor - factor % 2 and p == math.ceil((factor - 1) / 2)
    x = torch.zeros(1, 2, 5, 8)
    assert bilinear_upsample(x, factor).shape == (1, 2, 5 * factor, 8 * factor)


def test_kernel_is_fcn_upsample_filt():
    # FCN's surgery.upsample_filt(4) = outer([.25, .75, .75, .25]) / (2 * 2) ... spelled out:
    f4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    w = bilinear_kernel(3, 3, 4)
    assert torch.allclose(w[1, 1], torch.outer(f4, f4))
    assert w[0, 1].abs().sum() == 0 and w[2, 0].abs().sum() == 0  # channels stay apart
    f3 = torch.tensor([0.5, 1.0, 0.5])  # odd kernel: centred on its middle tap
    assert torch.allclose(bilinear_kernel(1, 1, 3)[0, 0], torch.outer(f3, f3))
    with pytest.raises(ConfigError, match="in_ch == out_ch"):
        bilinear_kernel(2, 3, 4)


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("size", [(5, 7), (6, 4), (1, 3)])
def test_equals_interpolate_in_the_interior(factor, size):
    # The transposed conv is linear interpolation with zeros outside the input; F.interpolate
    # (align_corners=False) samples (o + 0.5) / f - 0.5 and repeats the edge. They agree exactly
    # on every output pixel whose sample lies inside the input: o in [p, f H - 1 - p] with
    # p = ceil((f - 1) / 2), and nowhere else (for a positive input).
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64) + 0.5
    up = bilinear_upsample(x, factor)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    _, p = upsample_geometry(factor)
    h, w = size[0] * factor, size[1] * factor
    inner = (slice(None), slice(None), slice(p, h - p), slice(p, w - p))
    torch.testing.assert_close(up[inner], ref[inner], rtol=0, atol=1e-12)
    border = torch.ones(h, w, dtype=torch.bool)
    border[p : h - p, p : w - p] = False
    assert ((up - ref).abs() > 1e-9)[..., border].all()  # the border pixels all differ


def test_factor_one_is_identity():
    x = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(bilinear_upsample(x, 1), x)


@pytest.mark.parametrize("learnable", [True, False])
def test_module_equals_function(learnable):
    m = BilinearUpsample2d(3, 4, learnable=learnable)
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(m(x), bilinear_upsample(x, 4))  # diagonal == grouped kernel
    torch.testing.assert_close(m(x), bilinear_upsample(x, 4, m.weight))
    assert [n for n, _ in m.named_parameters()] == (["weight"] if learnable else [])
    assert ("weight" in dict(m.named_buffers())) is not learnable


def test_learnable_gets_gradient_and_gradcheck():
    m = BilinearUpsample2d(2, 2)
    m(torch.randn(1, 2, 3, 3)).square().sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    w = bilinear_kernel(2, 2, 4).double().requires_grad_()
    x = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: bilinear_upsample(x, 2, w), (x, w))


def test_bad_inputs_raise():
    with pytest.raises(ConfigError, match="factor"):
        upsample_geometry(0)
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        bilinear_upsample(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ShapeError, match="weight must be"):
        bilinear_upsample(torch.zeros(1, 2, 4, 4), 2, torch.zeros(2, 2, 3, 3))


def test_crop_like_keeps_top_left_and_pads_bottom_right():
    x = torch.arange(20.0).view(1, 1, 4, 5)
    torch.testing.assert_close(crop_like(x, torch.zeros(2, 3)), x[..., :2, :3])
    y = crop_like(x, (6, 3))
    assert y.shape == (1, 1, 6, 3)
    torch.testing.assert_close(y[..., :4, :], x[..., :3])
    assert y[..., 4:, :].abs().sum() == 0
    torch.testing.assert_close(crop_like(x, x), x)


def test_pad_like_centres():
    x = torch.ones(1, 2, 3)
    y = pad_like(x, (5, 6))
    assert y.shape == (1, 5, 6)
    assert y[0, 1:3, 1:4].sum() == 6 and y.sum() == 6  # 1 row above, 2 below, 1 left, 2 right
    torch.testing.assert_close(pad_like(y, (2, 3)), x)  # crops evenly back
