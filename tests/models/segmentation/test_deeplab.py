"""DeepLab v3: output stride by dilation (own encoder, timm, timm ResNets), ASPP rates."""

import functools
import math

import pytest
import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.backbones.resnet import resnet18
from visrep.models.backbones.timm_model import timm as timm_backbone
from visrep.models.segmentation.deeplab import ASPP, deeplab
from visrep.models.segmentation.encoder import DilatedCNN

TINY = {"encoder_channels": (4, 4, 8, 8, 8), "aspp_channels": 4}


@pytest.mark.parametrize("os", [8, 16])
def test_dilated_encoder_keeps_the_output_stride(os):
    m = deeplab(3, 2, output_stride=os, **TINY)
    assert [d["reduction"] for d in m.encoder.feature_info] == [
        min(2**i, os) for i in (1, 2, 3, 4, 5)
    ]
    z = m.encoder.forward_intermediates(torch.zeros(1, 3, 37, 50), indices=[-1])[-1]
    assert z.shape[-2:] == (math.ceil(37 / os), math.ceil(50 / os))
    dil = [c.dilation[0] for c in m.encoder.modules() if isinstance(c, nn.Conv2d)]
    assert dil == ([1] * 7 + [2, 2, 4] if os == 8 else [1] * 9 + [2])
    rates = [b[0].dilation[0] for b in m.aspp.branches[1:]]
    assert rates == ([12, 24, 36] if os == 8 else [6, 12, 18])  # scaled to the output stride
    assert m(torch.zeros(2, 3, 37, 50)).shape == (2, 2, 37, 50)


def test_dilation_keeps_receptive_field_weights():
    # Same weights, os 32 vs os 16: the dilated net's last map is the strided one, densified.
    torch.manual_seed(0)
    a = DilatedCNN(1, 0, channels=(2, 2, 2), output_stride=8).eval()
    b = DilatedCNN(1, 0, channels=(2, 2, 2), output_stride=4).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        za, zb = a.forward_features(x), b.forward_features(x)
    # A stride-2 conv is its stride-1 output at even positions; every later conv, dilated by 2,
    # sees at even positions the taps the strided net sees (the algorithme a trous).
    torch.testing.assert_close(zb[..., ::2, ::2], za)


def test_aspp_branches():
    a = ASPP(8, 4, (1, 2, 3))
    assert len(a.branches) == 4 and a.project[0].in_channels == 5 * 4
    assert a(torch.randn(2, 8, 5, 7)).shape == (2, 4, 5, 7)


def test_timm_backbone_uses_timms_output_stride():
    enc = functools.partial(timm_backbone, model_name="resnet18")
    m = deeplab(3, 2, encoder=enc, output_stride=16, aspp_channels=4)
    assert m.encoder.model.layer4[0].conv2.dilation == (2, 2)
    assert m.encoder.feature_info[-1]["reduction"] == 16
    assert m(torch.zeros(2, 3, 33, 40)).shape == (2, 2, 33, 40)


def test_registered_timm_resnet():
    m = deeplab(3, 2, encoder=resnet18, output_stride=8, aspp_channels=4)
    assert type(m.encoder) is resnet18  # the registered class, built with timm's output_stride
    assert m.encoder.layer3[0].conv2.dilation == (2, 2)
    assert m.encoder.layer4[0].conv2.dilation == (4, 4)
    assert "arch" not in m.encoder.__dict__
    assert set(m.encoder.state_dict()) == set(resnet18(3, 0).state_dict())
    small = functools.partial(resnet18, small_stem=True)
    s = deeplab(3, 2, encoder=small, output_stride=8, aspp_channels=4)
    assert s.encoder.feature_info[-1]["reduction"] == 8
    assert s(torch.zeros(2, 3, 17, 21)).shape == (2, 2, 17, 21)
    with pytest.raises(ConfigError, match="small_stem=True cannot have output stride 16"):
        deeplab(3, 2, encoder=small, output_stride=16)


def test_unsupported_encoders_and_options_raise():
    with pytest.raises(ConfigError, match="deeplab cannot dilate encoder small_cnn"):
        deeplab(3, 2, encoder=small_cnn)
    with pytest.raises(ConfigError, match="output_stride must be 8 or 16"):
        deeplab(3, 2, output_stride=32)
    with pytest.raises(ConfigError, match="output_stride must be a power of two"):
        deeplab(3, 2, encoder_channels=(4, 4, 4), output_stride=16)
