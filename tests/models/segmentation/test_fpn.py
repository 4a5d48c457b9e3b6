"""Semantic FPN (Panoptic FPN's semantic branch): levels, branch structure, odd sizes, encoders."""

from functools import partial

import pytest
import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.models.backbones.resnet import resnet18
from visrep.models.backbones.resnet_small import resnet_small
from visrep.models.necks.fpn import pyramid_levels
from visrep.models.segmentation import SEGMENTERS, SemanticFPN, fpn


def test_paper_defaults_on_resnet18():
    m = fpn(3, 11, encoder=resnet18)
    # C2..C5 (strides 4..32): the stem's stride-2 level is left out.
    assert [m.encoder.feature_info[i]["reduction"] for i in m.levels] == [4, 8, 16, 32]
    assert [c.in_channels for c in m.neck.lateral] == [64, 128, 256, 512]
    assert {c.out_channels for c in (*m.neck.lateral, *m.neck.output)} == {256}
    # Branches: P2 one conv stage, P3..P5 one, two, three conv-GN-ReLU-2x-upsample stages.
    convs = [[c for c in b if isinstance(c, nn.Conv2d)] for b in m.branches]
    ups = [[u for u in b if isinstance(u, nn.Upsample)] for b in m.branches]
    assert [len(c) for c in convs] == [1, 1, 2, 3] and [len(u) for u in ups] == [0, 1, 2, 3]
    assert all(c[0].in_channels == 256 and c[-1].out_channels == 128 for c in convs)
    gns = [g for b in m.branches for g in b if isinstance(g, nn.GroupNorm)]
    assert len(gns) == 7 and all(g.num_groups == 32 for g in gns)
    assert all(u.mode == "bilinear" and u.scale_factor == 2 for b in ups for u in b)
    assert m.classifier.kernel_size == (1, 1) and m.classifier.in_channels == 128
    assert m.min_reduction == 4
    with torch.no_grad():
        assert m.eval()(torch.zeros(1, 3, 37, 50)).shape == (1, 11, 37, 50)


@pytest.mark.parametrize("size", [(33, 47), (17, 9), (64, 64), (5, 3)])
def test_output_at_input_size_for_odd_sizes(size):
    torch.manual_seed(0)
    m = fpn(3, 4, encoder_channels=(4, 4, 8, 8, 8), fpn_channels=8, head_channels=8, norm="bn")
    x = torch.randn(2, 3, *size)
    y = m(x)
    assert y.shape == (2, 4, *size) and torch.isfinite(y).all()


def test_resnet_small_encoder_uses_every_level():
    # resnet_small's levels have reductions 1, 2, 4: three pyramid levels, no final upsampling.
    m = fpn(1, 3, encoder=partial(resnet_small, channels=(4, 8, 8)), fpn_channels=8,
            head_channels=8)  # fmt: skip
    assert m.levels == [0, 1, 2] and m.min_reduction == 1
    assert m(torch.randn(2, 1, 15, 10)).shape == (2, 3, 15, 10)


def test_forward_is_the_sum_of_the_branches():
    # Recompute the head by hand from the neck's outputs.
    torch.manual_seed(0)
    m = fpn(3, 2, encoder_channels=(4, 4, 8, 8, 8), fpn_channels=8, head_channels=8).eval()
    x = torch.randn(1, 3, 32, 96)  # divisible by 32: no cropping
    with torch.no_grad():
        p = m.neck(m.encoder.forward_intermediates(x, indices=m.levels))
        assert [t.shape[-1] for t in p] == [24, 12, 6, 3]
        s = sum(b(t) for b, t in zip(m.branches, p, strict=True))
        ref = torch.nn.functional.interpolate(m.classifier(s), scale_factor=4, mode="bilinear")
        torch.testing.assert_close(m(x), ref)


def test_pyramid_levels_and_bad_config():
    info = [{"reduction": r} for r in (1, 1, 2, 4)]  # a small-stem ResNet's duplicated level
    assert pyramid_levels(info, 4) == [1, 2, 3] and pyramid_levels(info, 2) == [2, 3]
    with pytest.raises(ConfigError, match="num_levels"):
        pyramid_levels(info, 0)
    with pytest.raises(ConfigError, match="norm"):
        SemanticFPN(3, 2, encoder_channels=(4, 4), norm="ln")  # type: ignore[arg-type]
    m = SEGMENTERS.build(
        {"class_path": "fpn", "init_args": {"encoder": "resnet_small", "fpn_channels": 8}}, 3, 2
    )
    assert type(m) is fpn and type(m.encoder) is resnet_small
