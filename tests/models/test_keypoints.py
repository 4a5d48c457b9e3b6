"""The Convolutional Pose Machine: shapes, stages, the PAF branch, gradients, bad options."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ConfigError
from visrep.models.keypoints import PoseMachine


def _net(**kw) -> PoseMachine:
    torch.manual_seed(0)
    return PoseMachine(
        1, 5, [0.5], [0.25], **{"stages": 3, "width": 8, "pools": 2, "stage_depth": 2, **kw}
    )


def test_stages_give_belief_maps_at_the_stride_and_forward_is_the_last():
    net = _net().eval()
    x = torch.rand(2, 1, 32, 48)
    outs = net.stage_outputs(x)
    assert len(outs) == 3 and net.stride == 4
    assert all(b.shape == (2, 6, 8, 12) and f is None for b, f in outs)
    assert torch.equal(net(x), outs[-1][0])
    # later stages see the earlier beliefs: changing stage 1's output changes stage 2's
    with torch.no_grad():
        net.stages[0].beliefs.bias += 1.0
    assert not torch.allclose(net.stage_outputs(x)[1][0], outs[1][0])


def test_paf_branch_and_every_parameter_gets_a_gradient():
    net = _net(num_limbs=3)
    outs = net.stage_outputs(torch.rand(2, 1, 16, 16))
    assert all(f.shape == (2, 6, 4, 4) for _, f in outs)
    sum(b.square().mean() + f.square().mean() for b, f in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("option", [{"stages": 0}, {"width": 0}, {"pools": -1}, {"num_limbs": 1.5}])
def test_bad_options_raise(option):
    with pytest.raises(ConfigError, match=next(iter(option))):
        _net(**option)
