"""FGSM and PGD: parity with torchattacks and captum, analytic cases, invariants, module == function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.attacks._digits import torchattacks
from visrep.attacks import (
    FGSM,
    PGD,
    DeepFool,
    deepfool,
    fgsm,
    perturbation_norms,
    pgd,
)
from visrep.errors import ConfigError, DataError, ShapeError

needs_torchattacks = pytest.mark.skipif(torchattacks is None, reason="torchattacks not installed")


def _ce_none() -> nn.Module:
    return nn.CrossEntropyLoss(reduction="none")


def test_model_is_trained(digits_model):
    net, x, y = digits_model
    assert (net(x).argmax(1) == y).float().mean() > 0.85


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@needs_torchattacks
def test_fgsm_matches_torchattacks_and_captum(digits_model):
    from captum.robust import FGSM as CaptumFGSM  # noqa: N811

    net, x, y = digits_model
    ours = fgsm(net, x, y, eps=0.1)
    assert torch.equal(ours, torchattacks.FGSM(net, eps=0.1)(x, y))
    ref = CaptumFGSM(net, loss_func=_ce_none(), lower_bound=0.0, upper_bound=1.0)
    ref.zero_thresh = 0.0  # captum leaves pixels with |grad| < 1e-6 unperturbed by default
    assert torch.equal(ours, ref.perturb(x.clone(), 0.1, y))
    assert (ours - x).abs().max() == pytest.approx(0.1, abs=1e-6)


def test_fgsm_l2_is_the_normalised_gradient(digits_model):
    net, x, y = digits_model
    x = 0.25 + 0.5 * x  # interior pixels: no clamping
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xr), y), xr)
    expected = x + 0.05 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    ours = fgsm(net, x, y, eps=0.05, norm="l2")
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(perturbation_norms(ours - x), torch.full((len(x),), 0.05))


def test_fgsm_default_targets_are_the_predictions(digits_model):
    net, x, _ = digits_model
    assert torch.equal(fgsm(net, x, eps=0.05), fgsm(net, x, net(x).argmax(1), eps=0.05))


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@needs_torchattacks
def test_pgd_linf_matches_torchattacks_and_captum(digits_model):
    from captum.robust import PGD as CaptumPGD  # noqa: N811

    net, x, y = digits_model
    ours = pgd(net, x, y, eps=0.1, step_size=0.02, steps=10, random_start=False)
    ref = torchattacks.PGD(net, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    assert torch.equal(ours, ref)
    cap = CaptumPGD(net, loss_func=_ce_none(), lower_bound=0.0, upper_bound=1.0)
    cap.fgsm.zero_thresh = 0.0
    assert torch.equal(ours, cap.perturb(x.clone(), 0.1, 0.02, 10, y))
    # the same random start: both draw uniform(-eps, eps) from torch's global generator
    torch.manual_seed(3)
    ours = pgd(net, x, y, eps=0.1, step_size=0.02, steps=5)
    torch.manual_seed(3)
    ref = torchattacks.PGD(net, eps=0.1, alpha=0.02, steps=5, random_start=True)(x, y)
    assert torch.equal(ours, ref)


@needs_torchattacks
def test_pgd_l2_matches_torchattacks(digits_model):
    net, x, y = digits_model
    ours = pgd(net, x, y, eps=1.0, step_size=0.2, steps=10, norm="l2", random_start=False)
    ref = torchattacks.PGDL2(net, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 0.5)])
def test_pgd_stays_in_ball_and_box_and_beats_the_clean_loss(digits_model, norm, eps):
    net, x, y = digits_model
    g = torch.Generator().manual_seed(0)
    adv = pgd(net, x, y, eps=eps, steps=10, norm=norm, generator=g)
    assert adv.min() >= 0 and adv.max() <= 1
    assert perturbation_norms(adv - x, norm).max() <= eps + 1e-5
    assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y)
    again = pgd(net, x, y, eps=eps, steps=10, norm=norm, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adv, again)


def test_pgd_l2_random_start_is_inside_the_ball():
    x = torch.full((200, 1, 4, 4), 0.5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    adv = pgd(
        net,
        x,
        eps=0.3,
        step_size=1e-9,
        steps=1,
        norm="l2",
        generator=torch.Generator().manual_seed(1),
    )
    radius = perturbation_norms(adv - x)
    assert radius.max() <= 0.3 + 1e-6
    # uniform in the 16-d ball: P(radius < 0.3 * 0.9) = 0.9^16 ~ 0.19
    assert 0.08 < (radius < 0.27).float().mean() < 0.32


def test_pgd_eps_zero_is_identity(digits_model):
    net, x, y = digits_model
    assert torch.equal(pgd(net, x, y, eps=0.0), x)
    assert torch.equal(pgd(net, x, y, eps=0.0, norm="l2"), x)
    assert torch.equal(fgsm(net, x, y, eps=0.0, norm="l2"), x)
    assert torch.equal(fgsm(net, x, y, eps=0.0), x)


def test_modules_equal_functions(digits_model):
    net, x, y = digits_model
    assert torch.equal(FGSM(0.1, "l2")(net, x, y), fgsm(net, x, y, 0.1, "l2"))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(
        PGD(0.1, steps=3)(net, x, y, generator=g1), pgd(net, x, y, 0.1, steps=3, generator=g2)
    )
    a, b = DeepFool(0.05, 20, 3)(net, x), deepfool(net, x, 0.05, 20, 3)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.iterations, b.iterations)


def test_bad_inputs_raise(digits_model):
    net, x, y = digits_model
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fgsm(net, x * 2 - 0.5, y)
    with pytest.raises(ShapeError, match="float tensor"):
        pgd(net, (x * 255).to(torch.uint8), y)
    with pytest.raises(ShapeError, match="float tensor"):
        deepfool(net, torch.rand(5))
    with pytest.raises(ShapeError, match="class indices"):
        fgsm(net, x, y[:3])
    with pytest.raises(ShapeError, match="class indices"):
        pgd(net, x, y.float())
    with pytest.raises(ConfigError, match="eps"):
        fgsm(net, x, y, eps=-0.1)
    with pytest.raises(ConfigError, match="norm"):
        pgd(net, x, y, norm="l1")
    with pytest.raises(ConfigError, match="steps"):
        pgd(net, x, y, steps=0)
    with pytest.raises(ConfigError, match="step_size"):
        pgd(net, x, y, step_size=-1.0)
    with pytest.raises(ConfigError, match="overshoot"):
        deepfool(net, x, overshoot=-0.1)
    with pytest.raises(ConfigError, match="max_iter"):
        deepfool(net, x, max_iter=0)
    with pytest.raises(ConfigError, match="num_candidates"):
        DeepFool(num_candidates=1)
    with pytest.raises(ConfigError, match="eps"):
        PGD(eps=float("nan"))
    with pytest.raises(ShapeError, match="logits"):
        fgsm(nn.Identity(), x, y)
    with pytest.raises(ShapeError, match="2 classes"):
        deepfool(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), x)
