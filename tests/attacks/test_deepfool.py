"""DeepFool: parity with torchattacks, closed-form linear cases, batching, invariants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.attacks._digits import torchattacks
from visrep.attacks import (
    deepfool,
    perturbation_norms,
)

needs_torchattacks = pytest.mark.skipif(torchattacks is None, reason="torchattacks not installed")


@needs_torchattacks
def test_deepfool_matches_torchattacks_inside_the_box(digits_model):
    """Away from the bounds both follow Algorithm 2; torchattacks moves away from the given label,
    so it gets the model's own predictions (DeepFool's k_hat(x)). One-step samples match exactly;
    later steps differ by where the overshoot goes (torchattacks overshoots every step, we
    overshoot r_tot), so norms agree within a few percent."""
    net, x, _ = digits_model
    x = 0.25 + 0.5 * x
    pred = net(x).argmax(1)
    ours = deepfool(net, x, overshoot=0.02, max_iter=50)
    ref = torchattacks.DeepFool(net, steps=50, overshoot=0.02)(x, pred)
    ref_fooled = net(ref).argmax(1) != pred
    assert ours.success.float().mean() == ref_fooled.float().mean() == 1.0
    ours_n, ref_n = perturbation_norms(ours.r), perturbation_norms(ref - x)
    torch.testing.assert_close(ours_n, ref_n, rtol=0.03, atol=0)
    assert ours_n.median() == pytest.approx(float(ref_n.median()), rel=0.01)
    one = ours.iterations == 1
    assert one.float().mean() > 0.8
    torch.testing.assert_close(ours.x_adv[one], ref[one], atol=1e-5, rtol=0)
    assert torch.equal(ours.label, pred)


@needs_torchattacks
def test_deepfool_in_the_box_fools_more_than_torchattacks_at_the_same_norms(digits_model):
    """On raw digits (many pixels at 0) torchattacks' clamped, overshot steps can converge onto
    the boundary without crossing it; ours must not, and must not pay for it in norm."""
    net, x, _ = digits_model
    pred = net(x).argmax(1)
    ours = deepfool(net, x)
    ref = torchattacks.DeepFool(net, steps=50, overshoot=0.02)(x, pred)
    ref_fooled = net(ref).argmax(1) != pred
    assert ours.success.float().mean() >= max(ref_fooled.float().mean(), 0.95)
    both = ours.success & ref_fooled
    ratio = perturbation_norms(ours.r[both]).median() / perturbation_norms((ref - x)[both]).median()
    assert 0.97 < ratio < 1.03
    assert ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
    torch.testing.assert_close(ours.r, ours.x_adv - x)


def test_every_successful_deepfool_example_changes_the_class(digits_model):
    net, x, _ = digits_model
    res = deepfool(net, x, overshoot=0.02)
    after = net(res.x_adv).argmax(1)
    before = net(x).argmax(1)
    assert res.success.any()
    assert (after[res.success] != before[res.success]).all()
    assert torch.equal(res.success, after != before)
    assert torch.equal(res.adv_label, after)
    assert (res.iterations[res.success] >= 1).all()


def test_deepfool_batched_equals_per_sample(digits_model):
    """Fooled samples are frozen: a batch gives each sample what it gets alone."""
    net, x, _ = digits_model
    batch = deepfool(net, x[:16])
    for i in range(16):
        one = deepfool(net, x[i : i + 1])
        torch.testing.assert_close(batch.x_adv[i : i + 1], one.x_adv, atol=1e-5, rtol=0)
        assert batch.iterations[i] == one.iterations[0]


@pytest.mark.parametrize("overshoot", [0.0, 0.02, 0.5])
def test_deepfool_binary_linear_is_the_closed_form_projection(overshoot):
    """For f(x) = W x + b with 2 classes, r = (1 + eta) (-f'(x) / ||w'||^2) w' (the binary affine case of the paper)."""
    torch.manual_seed(0)
    lin = nn.Linear(16, 2).double()
    net = nn.Sequential(nn.Flatten(), lin)
    x = 0.45 + 0.1 * torch.rand(32, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        lin.bias -= lin.weight @ torch.full((16,), 0.5, dtype=torch.float64)
        f = net(x)
    label = f.argmax(1)
    other = 1 - label
    w = lin.weight[other] - lin.weight[label]  # (B, 16)
    fdiff = f.gather(1, other[:, None]) - f.gather(1, label[:, None])  # (B, 1), < 0
    expected = (1 + overshoot) * (-fdiff / (w**2).sum(1, keepdim=True)) * w
    res = deepfool(net, x, overshoot=overshoot)
    torch.testing.assert_close(res.r.flatten(1), expected.detach(), rtol=1e-9, atol=1e-12)
    distance = fdiff.abs().squeeze(1) / w.norm(dim=1)
    torch.testing.assert_close(perturbation_norms(res.r), (1 + overshoot) * distance.detach())
    if overshoot > 0:  # without overshoot x + r lies on the hyperplane, where the label is a tie
        assert res.success.all() and (res.iterations == 1).all()


def test_deepfool_multiclass_linear_reaches_the_closest_hyperplane():
    """Affine multi-class: one step to the closest boundary, ||r|| = (1 + eta) min_k |f'_k| / ||w'_k||."""
    torch.manual_seed(1)
    lin = nn.Linear(16, 5).double()
    net = nn.Sequential(nn.Flatten(), lin)
    with torch.no_grad():
        lin.bias -= lin.weight @ torch.full((16,), 0.5, dtype=torch.float64)
    x = 0.45 + 0.1 * torch.rand(32, 1, 4, 4, dtype=torch.float64)
    f = net(x).detach()
    label = f.argmax(1)
    w = lin.weight.detach()[None] - lin.weight.detach()[label][:, None]  # (B, 5, 16)
    dist = (f - f.gather(1, label[:, None])).abs() / w.norm(dim=2)
    dist[torch.arange(32), label] = float("inf")
    res = deepfool(net, x, overshoot=0.02)
    torch.testing.assert_close(perturbation_norms(res.r), 1.02 * dist.min(1).values)
    assert res.success.all() and (res.iterations == 1).all()
    assert torch.equal(res.adv_label, dist.argmin(1))
