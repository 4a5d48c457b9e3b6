"""FCN: level choice by reduction, skip fusion, fixed final upsampling, pretrained encoders."""

import functools

import pytest
import torch

from visrep.errors import ConfigError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.backbones.resnet import resnet18
from visrep.models.backbones.resnet_small import resnet_small
from visrep.models.layers.upsample import bilinear_upsample, crop_like
from visrep.models.segmentation import fcn8s, fcn16s, fcn32s
from visrep.models.segmentation.encoder import DilatedCNN

TINY = (4, 4, 8, 8, 8)


def test_default_encoder_has_vgg_strides_and_levels_are_picked_by_reduction():
    m = fcn8s(3, 2, encoder_channels=TINY)
    assert isinstance(m.encoder, DilatedCNN)
    assert [d["reduction"] for d in m.encoder.feature_info] == [2, 4, 8, 16, 32]
    assert m.levels == [4, 3, 2]  # strides 32, 16, 8 as in the paper
    assert fcn16s(3, 2, encoder_channels=TINY).levels == [4, 3]
    assert fcn32s(3, 2, encoder_channels=TINY).levels == [4]
    assert m.upsample.factor == 8 and not m.upsample.learnable  # fixed final, learned 2x
    assert all(u.factor == 2 and u.learnable for u in m.up2)
    assert fcn16s(3, 2, encoder_channels=TINY).upsample.factor == 16
    assert fcn32s(3, 2, encoder_channels=TINY).upsample.factor == 32
    assert fcn32s(3, 2, encoder_channels=TINY, learn_final_upsample=True).upsample.learnable


def test_other_backbones_relative_reductions():
    # small_cnn: reductions 2, 4, 8 -> FCN-8s fuses levels of reduction 8, 4 and 2.
    m = fcn8s(1, 3, encoder=functools.partial(small_cnn, channels=(4, 4, 8)))
    assert m.levels == [2, 1, 0] and m.upsample.factor == 2
    # timm's ResNet with small stem: reductions 1, 1, 2, 4, 8; the deeper of equal ones is used.
    r = fcn16s(3, 2, encoder=functools.partial(resnet18, small_stem=True))
    assert r.levels == [4, 3]
    assert r(torch.zeros(2, 3, 31, 45)).shape == (2, 2, 31, 45)


def test_missing_levels_raise_one_line():
    enc = functools.partial(small_cnn, channels=(4,))  # only reduction 2
    with pytest.raises(ConfigError, match=r"reduction \[2, 1\]; small_cnn has \[2\]") as e:
        fcn16s(1, 2, encoder=enc)
    assert "\n" not in str(e.value)
    enc2 = functools.partial(small_cnn, channels=(4, 4))  # reductions 2, 4: no quarter of 4
    with pytest.raises(ConfigError, match=r"FCN with 2 skip\(s\) needs .* \[4, 2, 1\]"):
        fcn8s(1, 2, encoder=enc2)


def test_fcn8s_is_the_paper_graph():
    # Recompute FCN-8s from its parts: score, 2x up, crop, add, 2x up, crop, add, 8x up, crop.
    torch.manual_seed(0)
    m = fcn8s(3, 4, encoder_channels=TINY).eval()
    for s in m.score[1:]:  # make the skips matter (they start at zero)
        torch.nn.init.normal_(s.weight)
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        f = m.encoder.forward_intermediates(x)
        y = m.score[0](f[4])
        s4 = m.score[1](f[3])
        y = crop_like(m.up2[0](y), s4) + s4
        s3 = m.score[2](f[2])
        y = crop_like(m.up2[1](y), s3) + s3
        expected = crop_like(bilinear_upsample(y, 8), x)
        torch.testing.assert_close(m(x), expected)


def test_skips_start_at_zero():
    # Sec. 4.2: the new skip score layers start at zero, so training starts from the coarser net.
    m = fcn16s(3, 2, encoder_channels=TINY)
    assert m.score[1].weight.abs().sum() == 0 and m.score[1].bias.abs().sum() == 0


def test_pretrained_encoder(tmp_path):
    torch.manual_seed(1)
    enc = resnet_small(3, 10, channels=(4, 8, 8, 8))
    torch.save(enc.state_dict(), tmp_path / "enc.pt")
    m = fcn8s(
        3,
        2,
        encoder=functools.partial(resnet_small, channels=(4, 8, 8, 8)),
        pretrained_path=str(tmp_path / "enc.pt"),
    )
    for k, v in m.encoder.state_dict().items():
        if not k.startswith("head."):
            torch.testing.assert_close(v, enc.state_dict()[k])
