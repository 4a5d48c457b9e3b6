"""Decoders sized from their encoder: exact output sizes for digits, MNIST-family and ORL images,
both upsampling kinds, the top-left crop, and every parameter trained."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError, ShapeError
from visrep.models import create_backbone
from visrep.models.generative import (
    ConvDecoder,
    MLPDecoder,
    build_decoder,
    feature_shape,
    linear_widths,
    num_stages,
)

SIZES = [(8, 8), (28, 28), (112, 92)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", ["transposed", "upsample"])
def test_conv_decoder_gives_the_image_size_from_the_encoders_map(size, kind):
    enc = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8, 8))
    shape = feature_shape(enc, 1, size)
    # small_cnn rounds up: ceil(H / 8)
    assert shape == (8, -(-size[0] // 8), -(-size[1] // 8))
    dec = ConvDecoder(5, 3, size, shape[0], shape[1:], kind)
    out = dec(torch.randn(2, 5))
    assert out.shape == (2, 3, *size)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters())


def test_stage_count_and_channels():
    assert num_stages((1, 1), (28, 28)) == 5  # 32, cropped to 28
    assert num_stages((14, 12), (112, 92)) == 3  # 112 x 96, cropped to 92
    assert num_stages((7, 7), (28, 28)) == 2  # exact
    dec = ConvDecoder(4, 1, (28, 28), 64, (4, 4))
    convs = [m for m in dec.stages.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [32, 16, 8]  # halved, never below 8
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)


def test_the_overshoot_is_cropped_at_the_top_left():
    """With 28 from 4 the last map is 32x32; the output is its top-left 28x28 (where an encoder
    that rounds sizes up aligns with the image)."""
    dec = ConvDecoder(3, 1, (28, 28), 8, (4, 4)).eval()
    code = torch.randn(2, 3)
    h = dec.out(dec.stages(dec.start(dec.project(code).view(2, 8, 4, 4))))
    assert h.shape[-2:] == (32, 32)
    assert torch.equal(dec(code), h[..., :28, :28])


def test_mlp_decoder_and_mirrored_widths():
    enc = create_backbone("mlp", in_chans=1, num_classes=0, img_size=8, depth=2, width=16)
    assert feature_shape(enc, 1, 8) == (16,)
    assert linear_widths(enc) == [16, 16]
    dec = build_decoder("mlp", 3, 1, (8, 8), (16,), enc)
    assert [m.out_features for m in dec.modules() if isinstance(m, torch.nn.Linear)] == [16, 16, 64]
    assert dec(torch.zeros(4, 3)).shape == (4, 1, 8, 8)
    # a convolutional decoder behind a flat encoder starts from a (64, ceil(H/4), ceil(W/4)) map
    conv = build_decoder("transposed", 3, 1, (8, 8), (16,), enc)
    assert isinstance(conv, ConvDecoder) and conv.start_size == (2, 2)
    assert MLPDecoder(3, 2, (5, 7))(torch.zeros(1, 3)).shape == (1, 2, 5, 7)


def test_feature_shape_restores_the_training_mode():
    enc = create_backbone("small_cnn", in_chans=3, num_classes=0, channels=(4,))
    enc.train()
    feature_shape(enc, 3, (6, 6))
    assert enc.training


def test_bad_options_and_codes():
    with pytest.raises(ConfigError, match="kind"):
        ConvDecoder(3, 1, 8, 4, 2, kind="bilinear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="out_size"):
        ConvDecoder(3, 1, (0, 8), 4, 2)
    with pytest.raises(ConfigError, match="decoder"):
        build_decoder("deconv", 3, 1, (8, 8), (4, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"\(B, 3\)"):
        ConvDecoder(3, 1, 8, 4, 2)(torch.zeros(2, 4))
