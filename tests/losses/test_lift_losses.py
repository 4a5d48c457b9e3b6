"""LIFT's losses (visrep.losses.lift) on hand-computed cases, through the shared miners."""

from __future__ import annotations

import math

import pytest
import torch

import visrep.losses.lift as lift
import visrep.losses.miners as miners
from visrep.errors import ConfigError, ShapeError
from visrep.losses.lift import (
    LiftLoss,
    lift_class_loss,
    lift_descriptor_losses,
    lift_global_cost,
    lift_pair_loss,
    soft_max_score,
)


def test_soft_max_score_is_log_mean_exp_between_mean_and_max():
    s = torch.tensor([[0.0, 1.0], [2.0, -1.0]])[None]
    want = math.log((1 + math.e**3 + math.e**6 + math.e**-3) / 4) / 3
    assert soft_max_score(s, 3.0).item() == pytest.approx(want, rel=1e-6)
    assert soft_max_score(s, 1e4).item() == pytest.approx(2.0, abs=1e-3)
    assert soft_max_score(s, 1e-4).item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ConfigError):
        soft_max_score(s, 0.0)


def test_class_loss_by_hand():
    s = torch.tensor([0.5, 2.0, -0.5, 0.25]).view(4, 1, 1, 1)
    # positives: (1 - 0.5)^2 = 0.25, 0; negatives: (1 - 0.5)^2 = 0.25, (1 + 0.25)^2 = 1.5625
    got = lift_class_loss(s, torch.tensor([1, 1, -1, -1]))
    assert got.item() == pytest.approx(0.5 * 0.125 + 0.5 * (0.25 + 1.5625) / 2)
    assert lift_class_loss(s[:1], torch.tensor([1])).item() == pytest.approx(0.5 * 0.25)
    with pytest.raises(ShapeError):
        lift_class_loss(s, torch.tensor([1, -1]))


def test_descriptor_losses_by_hand_with_hard_mining():
    """1-D descriptors 0, 1 (P1), 0.1, 1.3 (P2), 0.5 (P3); per anchor the hardest positive and
    the nearest negative (hard_pairs): positives d = .1, .3, .1, .3; negatives d = .5, .5, .4,
    .8, .4."""
    d1, d2, d3 = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.1], [1.3]]), torch.tensor([[0.5]])
    l_pair, l_neg = lift_descriptor_losses(d1, d2, d3, "hard")
    assert l_pair.item() == pytest.approx((0.01 + 0.09 + 0.01 + 0.09) / 4)
    assert l_neg.item() == pytest.approx((0.25 + 0.25 + 0.36 + 0.04 + 0.36) / 5)
    # every pair instead: positives (0, .1), (1, 1.3); 8 negatives
    l_pair, l_neg = lift_descriptor_losses(d1, d2, d3, "all")
    assert l_pair.item() == pytest.approx((0.01 + 0.09) / 2)
    emb = [0.0, 1.0, 0.1, 1.3, 0.5]
    lab = [0, 1, 0, 1, 2]
    neg = [max(0, 1 - abs(a - b)) ** 2 for i, (a, la) in enumerate(zip(emb, lab, strict=True))
           for b, lb in zip(emb[i + 1 :], lab[i + 1 :], strict=True) if la != lb]  # fmt: skip
    assert l_neg.item() == pytest.approx(sum(neg) / len(neg))
    assert lift.PAIR_MINERS is miners.PAIR_MINERS  # the shared miners, not a copy
    with pytest.raises(ConfigError):
        lift_descriptor_losses(d1, d2, d3, "nope")


def test_pair_loss_global_cost_and_module():
    g = torch.Generator().manual_seed(0)
    d1, d2, d3 = (
        torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1) for n in (6, 6, 4)
    )
    assert lift_pair_loss(d1, d2).item() == pytest.approx(
        (d1 - d2).pow(2).sum(1).mean().item(), rel=1e-5
    )
    score, y = torch.randn(10, 1, 5, 5, generator=g), torch.tensor([1] * 6 + [-1] * 4)
    out = lift_global_cost(score, y, d1, d2, d3, class_weight=0.5)
    assert out["loss"].item() == pytest.approx(
        (0.5 * out["class"] + out["pair"] + out["neg"]).item()
    )
    mod = LiftLoss(class_weight=0.5)(score, y, d1, d2, d3)
    assert all(torch.equal(mod[k], out[k]) for k in out)
    with pytest.raises(ShapeError):
        lift_pair_loss(d1, d3)
