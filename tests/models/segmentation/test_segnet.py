"""SegNet: pooling indices and unpooling (exact), the paper's two architectures."""

import numpy as np
import pytest
import torch
from torch import nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.segmentation.segnet import (
    MaxPoolIndices,
    MaxUnpool,
    max_pool_indices,
    max_unpool,
    segnet,
    segnet_basic,
)


def _reference_unpool(x: np.ndarray) -> np.ndarray:
    # Each 2x2 window (the last row / column alone for odd sizes) keeps its maximum in place.
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(0, h, 2):
                for j in range(0, w, 2):
                    win = x[b, c, i : i + 2, j : j + 2]
                    di, dj = np.unravel_index(np.argmax(win), win.shape)
                    out[b, c, i + di, j + dj] = win[di, dj]
    return out


@pytest.mark.parametrize("size", [(4, 6), (5, 7), (1, 3), (6, 1), (9, 8)])
def test_unpool_puts_each_value_back_at_its_index(size):
    g = torch.Generator().manual_seed(0)
    n = 2 * 3 * size[0] * size[1]
    x = torch.randperm(n, generator=g).float().view(2, 3, *size)  # distinct values: one argmax
    y, idx = max_pool_indices(x)
    assert y.shape == (2, 3, (size[0] + 1) // 2, (size[1] + 1) // 2)  # ceil mode
    out = max_unpool(y, idx, size)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), _reference_unpool(x.numpy()))
    # and literally: the flat index of every pooled value holds that value
    flat = out.flatten(2)
    torch.testing.assert_close(flat.gather(2, idx.flatten(2)), y.flatten(2))
    assert (out != 0).sum() == (y != 0).sum()


def test_modules_equal_functions_and_bad_input():
    x = torch.randn(1, 2, 5, 5)
    y, idx = MaxPoolIndices()(x)
    y2, idx2 = max_pool_indices(x)
    torch.testing.assert_close(y, y2)
    assert torch.equal(idx, idx2)
    torch.testing.assert_close(MaxUnpool()(y, idx, (5, 5)), max_unpool(y, idx, (5, 5)))
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        max_pool_indices(torch.zeros(5, 5))
    with pytest.raises(ShapeError, match="differ"):
        max_unpool(y, idx[..., :1], (5, 5))


def _convs(m: nn.Module) -> list[nn.Conv2d]:
    return [c for c in m.modules() if isinstance(c, nn.Conv2d)]


def test_segnet_basic_is_the_paper_architecture():
    m = segnet_basic(3, 11)
    enc, dec = _convs(m.encoder), _convs(m.decoder)
    assert len(enc) == len(dec) == 4
    assert all(c.kernel_size == (7, 7) and c.out_channels == 64 for c in enc + dec)
    assert all(c.bias is None for c in enc + dec)
    assert not any(isinstance(r, nn.ReLU) for r in m.decoder.modules())  # no ReLU in decoder
    assert sum(isinstance(b, nn.BatchNorm2d) for b in m.decoder.modules()) == 4
    assert m.classifier.kernel_size == (1, 1) and m.classifier.out_channels == 11


def test_segnet_is_vgg16_mirrored():
    m = segnet(3, 12)
    enc, dec = _convs(m.encoder), _convs(m.decoder)
    assert len(enc) == 13  # VGG-16's convolutional layers
    assert [c.out_channels for c in enc] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert len(dec) + 1 == 13  # the classifier is the last decoder conv (conv1_1_D)
    # decoder in run order (deepest stage first), as the reference conv5_3_D ... conv1_2_D
    run = [c.out_channels for stage in reversed(m.decoder) for c in _convs(stage)]
    assert run == [512] * 5 + [256] + [256] * 2 + [128] + [128, 64] + [64]
    assert m.classifier.kernel_size == (3, 3) and m.classifier.out_channels == 12
    assert all(isinstance(s[-1], nn.ReLU) for s in m.decoder)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="one length"):
        segnet(3, 2, channels=(4, 8), convs_per_stage=(1,))
    with pytest.raises(ConfigError, match="odd"):
        segnet(3, 2, channels=(4,), convs_per_stage=(2,), kernel_size=4)
    with pytest.raises(ConfigError, match="stages and width"):
        segnet_basic(3, 2, stages=0)
    with pytest.raises(ShapeError, match=r"expects \(B, 3, H, W\)"):
        segnet_basic(3, 2, width=2)(torch.zeros(1, 1, 8, 8))
