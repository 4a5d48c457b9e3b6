"""Adversarial losses: hand-computed values of every game (Goodfellow et al. 2014, eq. 1;
Arjovsky et al. 2017; Mao et al. 2017, eq. 2; Zhu et al. 2017, eq. 2), the gradient penalty
against a sample-by-sample autograd computation (Gulrajani et al. 2017, eq. 3), and weight
clipping through the optimiser's step hook (Arjovsky et al. 2017, algorithm 1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visrep.errors import ConfigError, ShapeError
from visrep.losses import (
    GAN_LOSSES,
    CycleConsistencyLoss,
    DiscriminatorLoss,
    GeneratorLoss,
    GradientPenalty,
    IdentityLoss,
    clip_after_step,
    clip_weights_,
    critic_loss,
    cycle_consistency_loss,
    d_minimax_loss,
    discriminator_loss,
    g_minimax_loss,
    g_nonsaturating_loss,
    generator_loss,
    gradient_penalty,
    identity_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    wasserstein_generator_loss,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# -- hand-computed values -----------------------------------------------------------------------
def test_minimax_losses_by_hand():
    """D(x) = 0.8, 0.6 on real samples and D(G(z)) = 0.3, 0.1, 0.2 on fakes."""
    real = torch.tensor([logit(0.8), logit(0.6)])
    fake = torch.tensor([logit(0.3), logit(0.1), logit(0.2)])
    d = -((math.log(0.8) + math.log(0.6)) / 2 + (math.log(0.7) + math.log(0.9) + math.log(0.8)) / 3)
    assert d_minimax_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    g = (math.log(0.7) + math.log(0.9) + math.log(0.8)) / 3  # E[log(1 - D(G(z)))]
    assert g_minimax_loss(fake).item() == pytest.approx(g, rel=1e-6)
    ns = -(math.log(0.3) + math.log(0.1) + math.log(0.2)) / 3  # -E[log D(G(z))]
    assert g_nonsaturating_loss(fake).item() == pytest.approx(ns, rel=1e-6)


def test_minimax_losses_are_exact_for_confident_scores():
    """Logits of +-100 (D = 1 - 4e-44): a sigmoid then log would give log(0) = -inf."""
    big = torch.tensor([100.0])
    assert d_minimax_loss(big, -big).item() == pytest.approx(0.0, abs=1e-30)
    assert g_nonsaturating_loss(-big).item() == pytest.approx(100.0)
    assert d_minimax_loss(-big, big).item() == pytest.approx(200.0)


def test_the_minimax_generator_loss_saturates_and_the_nonsaturating_one_does_not():
    """Goodfellow et al. 2014, sec. 3: early on D rejects fakes (D(G(z)) ~ 0) and
    log(1 - D(G(z))) gives almost no gradient; -log D(G(z)) gives about -1 per logit."""
    fake = torch.tensor([-8.0], requires_grad=True)
    (g1,) = torch.autograd.grad(g_minimax_loss(fake), fake)
    (g2,) = torch.autograd.grad(g_nonsaturating_loss(fake), fake)
    assert abs(g1.item()) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item())  # 3.4e-4
    assert g2.item() == pytest.approx(-1 + torch.sigmoid(torch.tensor(-8.0)).item())


def test_wasserstein_and_lsgan_losses_by_hand_on_patch_maps():
    real = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 2.0]]]])  # (2, 1, 2, 2)
    fake = torch.tensor([[[[-1.0, 0.0], [1.0, 0.0]]]])  # (1, 1, 2, 2)
    assert critic_loss(real, fake).item() == pytest.approx(0.0 - 1.5)  # mean fake - mean real
    assert wasserstein_generator_loss(fake).item() == pytest.approx(0.0)
    # 0.5 mean((real - 1)^2) + 0.5 mean(fake^2): (0+1+4+9+1+1+1+1)/8 = 2.25, (1+0+1+0)/4 = 0.5
    assert lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * 2.25 + 0.5 * 0.5)
    assert lsgan_g_loss(fake).item() == pytest.approx(0.5 * (4 + 1 + 0 + 1) / 4)
    # general a, b, c of eq. 2: b = 2, a = -1, c = 0
    assert lsgan_d_loss(real, fake, a=-1.0, b=2.0).item() == pytest.approx(
        0.5 * (1 + 0 + 1 + 4 + 4 + 4 + 4 + 0) / 8 + 0.5 * (0 + 1 + 4 + 1) / 4
    )
    assert lsgan_g_loss(fake, c=0.0).item() == pytest.approx(0.5 * 2 / 4)


def test_cycle_and_identity_losses_are_l1_means():
    x = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    y = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    assert cycle_consistency_loss(x, y).item() == pytest.approx((1 + 0 + 2 + 0.5) / 4)
    assert identity_loss(x, y).item() == pytest.approx(0.875)
    assert CycleConsistencyLoss()(x, y) == cycle_consistency_loss(x, y)
    assert IdentityLoss()(x, y) == identity_loss(x, y)
    with pytest.raises(ShapeError, match="x_rec"):
        cycle_consistency_loss(x, y[..., :1])


# -- dispatch and modules -----------------------------------------------------------------------
def test_dispatch_and_modules_equal_the_functions():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(5, generator=g), torch.randn(4, 1, 2, 2, generator=g)
    d_fns = {"minimax": d_minimax_loss, "nonsaturating": d_minimax_loss}
    d_fns |= {"wasserstein": critic_loss, "lsgan": lsgan_d_loss}
    g_fns = {"minimax": g_minimax_loss, "nonsaturating": g_nonsaturating_loss}
    g_fns |= {"wasserstein": wasserstein_generator_loss, "lsgan": lsgan_g_loss}
    assert set(GAN_LOSSES) == set(d_fns)
    for kind in GAN_LOSSES:
        assert torch.equal(discriminator_loss(kind, real, fake), d_fns[kind](real, fake))
        assert torch.equal(DiscriminatorLoss(kind)(real, fake), d_fns[kind](real, fake))
        assert torch.equal(generator_loss(kind, fake), g_fns[kind](fake))
        assert torch.equal(GeneratorLoss(kind)(fake), g_fns[kind](fake))


def test_unknown_kind_and_empty_scores_raise():
    with pytest.raises(ConfigError, match=r"^loss must be one of minimax, nonsaturating, "):
        DiscriminatorLoss("hinge")
    with pytest.raises(ConfigError, match="loss"):
        generator_loss("wgan", torch.zeros(2))
    with pytest.raises(ShapeError, match="non-empty"):
        d_minimax_loss(torch.zeros(0), torch.zeros(2))


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    f = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    for kind in GAN_LOSSES:
        assert torch.autograd.gradcheck(lambda a, b, k=kind: discriminator_loss(k, a, b), (r, f))
        assert torch.autograd.gradcheck(lambda b, k=kind: generator_loss(k, b), (f,))


# -- gradient penalty ---------------------------------------------------------------------------
def _critic(map_output: bool) -> nn.Module:
    """A small conv critic without batch norm (per-sample), float64; scores (B,) or a map."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 1, 3, stride=2)]
    if not map_output:
        layers += [nn.Flatten(1), nn.Linear(9, 1), nn.Flatten(0)]
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("map_output", [False, True], ids=["scores", "patch_map"])
def test_gradient_penalty_equals_a_sample_by_sample_autograd_computation(map_output):
    critic = _critic(map_output)
    g = torch.Generator().manual_seed(3)
    real = torch.rand(5, 2, 7, 7, generator=g, dtype=torch.float64)
    fake = torch.rand(5, 2, 7, 7, generator=g, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(7))
    params = list(critic.parameters())  # biases after the last non-linearity get no gradient
    grads = torch.autograd.grad(gp, params, allow_unused=True, materialize_grads=True)

    eps = torch.rand(5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    terms = []
    for i in range(5):  # the reference: one sample at a time
        xi = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (gi,) = torch.autograd.grad(critic(xi).mean(), xi, create_graph=True)  # patch mean
        terms.append((gi.square().sum().sqrt() - 1) ** 2)  # norm over C, H and W
    ref = torch.stack(terms).mean()
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True, materialize_grads=True)
    assert torch.allclose(gp, ref, rtol=1e-10, atol=0)
    assert all(
        torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads, ref_grads, strict=True)
    )
    assert torch.equal(GradientPenalty()(critic, real, fake, torch.Generator().manual_seed(7)), gp)


def test_gradient_penalty_norm_is_over_all_non_batch_dimensions():
    """A linear critic <w, x> has gradient w everywhere: the penalty is (||w||_F - 1)^2 with the
    norm over channels, rows and columns (a norm over one axis would give a different value)."""
    w = torch.ones(2, 3, 3, dtype=torch.float64)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(4, 2, 3, 3, dtype=torch.float64), torch.rand(4, 2, 3, 3)
    gp = gradient_penalty(critic, real, fake.double())
    assert gp.item() == pytest.approx((math.sqrt(18) - 1) ** 2)
    assert gradient_penalty(critic, real, fake.double(), target=0.0).item() == pytest.approx(18)


def test_gradient_penalty_is_twice_differentiable_in_the_critic_weights():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(3, 4, generator=g, dtype=torch.float64)
    fake = torch.randn(3, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def gp(w):
        def critic(x):
            return torch.tanh(x @ w).sum(1)

        return gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(gp, (w,))


def test_gradient_penalty_trains_the_critic_only_and_checks_shapes():
    critic = _critic(False)
    real = torch.rand(2, 2, 7, 7, dtype=torch.float64)
    fake = torch.rand(2, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    gradient_penalty(critic, real, fake).backward()
    assert fake.grad is None  # the fake batch is detached
    assert critic[0].weight.grad is not None and critic[0].weight.grad.abs().sum() > 0
    with pytest.raises(ShapeError, match="real"):
        gradient_penalty(critic, real, fake[:1])
    with pytest.raises(ShapeError, match="leading batch"):
        gradient_penalty(lambda x: x.sum(), real, fake)


# -- weight clipping ----------------------------------------------------------------------------
def test_clipping_keeps_every_critic_parameter_in_range_after_optimizer_steps():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    opt = torch.optim.RMSprop(critic.parameters(), lr=0.05)  # Arjovsky et al.'s optimiser
    c = 0.01
    assert max(p.abs().max() for p in critic.parameters()) > c  # default init exceeds c
    handle = clip_after_step(opt, critic, c)
    params = list(critic.parameters())
    assert all(p.abs().max() <= c for p in params)  # clipped once at registration
    x = torch.randn(32, 3)
    for _ in range(5):
        opt.zero_grad()
        critic_loss(critic(x[:16]), critic(x[16:] + 1)).backward()
        opt.step()
        assert all(p.abs().max() <= c for p in params)
        assert any((p.abs() == c).any() for p in params)  # the clip acted at this step
    handle.remove()
    opt.zero_grad()
    critic_loss(critic(x[:16]), critic(x[16:] + 1)).backward()
    opt.step()
    assert max(p.abs().max() for p in params) > c  # no hook, no clip


def test_clip_weights_in_place_and_bad_bound():
    lin = nn.Linear(4, 4)
    nn.init.uniform_(lin.weight, -1, 1)
    before = lin.weight.detach().clone()
    clip_weights_(lin, 0.3)
    assert torch.equal(lin.weight.detach(), before.clamp(-0.3, 0.3))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ConfigError, match=r"^clip must be a finite number > 0"):
            clip_after_step(torch.optim.SGD(lin.parameters(), lr=0.1), lin, bad)
