"""The ResNet baseline of NAIS-Net: same stem/transitions, plain residual blocks x + F(x)."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError
from visrep.models import create_backbone
from visrep.models.backbones.resnet_small import PreActBlock


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_matches_the_naisnet_preset() -> None:
    for channels in ((16, 32, 64), (8, 16, 32)):
        res = create_backbone("resnet_small", in_chans=1, num_classes=10, channels=channels)
        nais = create_backbone("naisnet", in_chans=1, num_classes=10, channels=channels)
        assert abs(_params(res) - _params(nais)) / _params(nais) < 0.01
        # identical stem / transitions: the first layers have the same shapes
        for a, b in ((res.features[0], nais.features[0]), (res.features[3], nais.features[3])):
            assert a.weight.shape == b.weight.shape and a.stride == b.stride


def test_block_is_identity_plus_residual() -> None:
    torch.manual_seed(0)
    blk = PreActBlock(4).eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(blk(x), x + blk.residual(x))
    with torch.no_grad():
        blk.residual[-1].weight.zero_()
    assert torch.equal(blk(x), x)


def test_bad_options_raise() -> None:
    with pytest.raises(ConfigError, match="kernel_size"):
        create_backbone("resnet_small", in_chans=1, num_classes=2, kernel_size=2)
    with pytest.raises(ConfigError, match="blocks_per_stage"):
        create_backbone("resnet_small", in_chans=1, num_classes=2, blocks_per_stage=0)
