"""U-Net: the paper's architecture, same-size output, and the border weight map (Eq. 2)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.segmentation.unet import UNet, unet, unet_weight_map


def test_paper_architecture():
    m = unet(1, 2)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    ups = [c for c in m.modules() if isinstance(c, nn.ConvTranspose2d)]
    assert len(convs) + len(ups) == 23  # "In total the network has 23 convolutional layers"
    assert [b[0].out_channels for b in m.down] == [64, 128, 256, 512, 1024]
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.stride) for u in ups] == [
        (c, c // 2, (2, 2), (2, 2)) for c in (1024, 512, 256, 128)
    ]
    assert m.classifier.kernel_size == (1, 1)
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.modules())
    assert any(isinstance(b, nn.BatchNorm2d) for b in UNet(1, 2, 1, 4, batch_norm=True).modules())


@pytest.mark.parametrize("size", [(16, 16), (19, 23), (8, 13)])
def test_same_size_for_any_input(size):
    m = UNet(2, 3, depth=3, width=2)
    assert m(torch.zeros(1, 2, *size)).shape == (1, 3, *size)
    assert UNet(2, 3, depth=0, width=2)(torch.zeros(1, 2, 3, 5)).shape == (1, 3, 3, 5)


def test_bad_input_raises():
    with pytest.raises(ShapeError, match="depth 3 needs H, W >= 8"):
        UNet(1, 2, depth=3, width=2)(torch.zeros(1, 1, 7, 20))
    with pytest.raises(ConfigError, match="depth"):
        UNet(1, 2, depth=-1)


# -- Eq. 2 on hand-made masks ------------------------------------------------------------------------
def _two_strips() -> np.ndarray:
    # 9 x 12: object A in columns 0-3, object B in columns 8-11, background columns 4-7.
    m = np.zeros((9, 12), dtype=np.int64)
    m[:, :4] = 1
    m[:, 8:] = 1
    return m


def test_two_objects_exact():
    w = unet_weight_map(torch.from_numpy(_two_strips()), w0=10, sigma=5)
    assert w.dtype == torch.float32 and w.shape == (9, 12)
    # w_c: 72 object and 36 background pixels of 108 -> 108 / (2 * 72), 108 / (2 * 36).
    # Border: in the gap (columns 4..7) d1 + d2 = (c - 3) + (8 - c) = 5 for every column.
    expected = np.full((9, 12), 0.75)
    expected[:, 4:8] = 1.5 + 10 * math.exp(-(5**2) / (2 * 5**2))
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


def test_two_objects_diagonal_distances():
    # Two single pixels: (0, 0) and (3, 4); at background pixel (0, 4) d1 = 3 (to (3, 4)),
    # d2 = 4 (to (0, 0)), so w = 1 + w0 exp(-49 / (2 sigma^2)) without class balance.
    m = np.zeros((4, 5), dtype=np.int64)
    m[0, 0] = m[3, 4] = 1
    w = unet_weight_map(m, w0=2.0, sigma=3.0, balance=False)
    assert w[0, 4].item() == pytest.approx(1 + 2 * math.exp(-49 / 18))
    d1, d2 = math.hypot(1, 1), math.hypot(2, 3)  # pixel (1, 1)
    assert w[1, 1].item() == pytest.approx(1 + 2 * math.exp(-((d1 + d2) ** 2) / 18))
    assert w[0, 0] == w[3, 4] == 1  # objects get no border term


def test_one_object_or_touching_components_have_no_border_term():
    m = np.zeros((6, 6), dtype=np.int64)
    m[1:3, 1:5] = 1
    torch.testing.assert_close(unet_weight_map(m, balance=False), torch.ones(6, 6))
    m[3:5, 1:5] = 2  # touching the first object: one connected component ...
    torch.testing.assert_close(unet_weight_map(m, balance=False), torch.ones(6, 6))
    w = unet_weight_map(m, balance=False, instances=True)  # ... two instances
    assert (w[m == 0] > 1).all() and (w[m != 0] == 1).all()


def test_weight_map_bad_input():
    with pytest.raises(ShapeError, match=r"\(H, W\) mask"):
        unet_weight_map(np.zeros((1, 4, 4)))
    with pytest.raises(ConfigError, match="sigma"):
        unet_weight_map(np.zeros((4, 4)), sigma=0)
