"""U-Net: the paper's architecture, same-size output, the border weight map (Eq. 2), and the
U-Net over an encoder (parity with segmentation_models_pytorch's Unet)."""

import functools
import math

import jsonargparse
import numpy as np
import pytest
import torch
from torch import nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.resnet import resnet18
from visrep.models.backbones.resnet_small import resnet_small
from visrep.models.segmentation import SEGMENTERS, SegmenterFactory
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


# -- U-Net over an encoder (segmentation_models_pytorch's Unet decoder) --------------------------
def _resnet18_unet(num_classes: int = 11) -> UNet:
    return SEGMENTERS.build(
        {"class_path": "unet", "init_args": {"encoder": "resnet18"}}, 3, num_classes
    )


def test_encoder_unet_architecture():
    m = _resnet18_unet()
    assert type(m.encoder) is resnet18 and not hasattr(m, "down")
    blocks = [(b.conv1[0].in_channels, b.conv1[0].out_channels) for b in m.decoder.blocks]
    # in + skip -> out: 512+256, 256+128, 128+64, 64+64 (the stem), 32 (no skip) to the input size.
    assert blocks == [(768, 256), (384, 128), (192, 64), (128, 32), (32, 16)]
    assert all(
        isinstance(b.conv1[1], nn.BatchNorm2d) and b.conv1[0].bias is None for b in m.decoder.blocks
    )
    assert m.classifier.kernel_size == (3, 3) and m.classifier.in_channels == 16
    # smp.Unet("resnet18", encoder_weights=None, classes=11) has 14,329,659 parameters.
    assert sum(p.numel() for p in m.parameters()) == 14_329_659
    assert sum(p.numel() for p in m.decoder.parameters()) == 3_151_552


def test_encoder_unet_equals_smp_unet_with_the_same_weights():
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    ref = smp.Unet("resnet18", encoder_weights=None, classes=11).eval()
    m = _resnet18_unet().eval()
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())
    sd = {k.replace("segmentation_head.0.", "classifier."): v for k, v in ref.state_dict().items()}
    m.load_state_dict(sd)  # strict: the same module names, encoder included
    with torch.no_grad():
        for size in [(64, 96), (45, 71)]:
            x = torch.randn(2, 3, *size)
            torch.testing.assert_close(m(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (19, 23), (5, 3)])
def test_encoder_unet_same_size_for_any_input(size):
    enc = functools.partial(resnet_small, channels=(4, 8, 8))  # reductions 1, 2, 4: 2 blocks
    m = unet(2, 3, encoder=enc)
    assert [b.conv2[0].out_channels for b in m.decoder.blocks] == [32, 16]
    assert m(torch.randn(2, 2, *size)).shape == (2, 3, *size)
    m = unet(2, 3, encoder=resnet18, decoder_channels=(8, 8, 8, 8, 4))
    y = m(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size) and torch.isfinite(y).all()


def test_encoder_unet_bad_config():
    with pytest.raises(ConfigError, match=r"decoder_channels must be 5 positive channels"):
        unet(3, 2, encoder=resnet18, decoder_channels=(8, 8))
    with pytest.raises(ConfigError, match="need an encoder"):
        unet(3, 2, decoder_channels=(8,))


def test_cli_options_build_the_encoder_unet():
    parser = jsonargparse.ArgumentParser(exit_on_error=False)

    def task(model: SegmenterFactory = unet) -> SegmenterFactory:
        return model

    parser.add_function_arguments(task, "model")
    argv = ["--model.model", "unet", "--model.model.encoder", "resnet_small"]
    argv += ["--model.model.encoder.channels", "[4,8]", "--model.model.decoder_channels", "[6]"]
    m = parser.instantiate(parser.parse_args(argv)).model.model(3, 2)
    assert type(m) is unet and type(m.encoder) is resnet_small
    assert m.decoder.out_channels == 6 and m(torch.zeros(2, 3, 9, 7)).shape == (2, 2, 9, 7)


def test_encoder_unet_initialised_as_smp():
    # He-uniform decoder convolutions: bound sqrt(6 / fan_in); Glorot head, zero bias.
    torch.manual_seed(0)
    m = unet(3, 11, encoder=resnet18)
    w = m.decoder.blocks[0].conv1[0].weight
    bound = math.sqrt(6 / (768 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    head = m.classifier.weight
    glorot = math.sqrt(6 / (16 * 9 + 11 * 9))
    assert head.abs().max() <= glorot and head.abs().max() > 0.95 * glorot
    assert not m.classifier.bias.any()
