"""DCGAN generator and discriminator sized from the data (Radford et al. 2016, sec. 3), the
WGAN-GP critic without batch norm (Gulrajani et al. 2017, sec. 4), DCGAN's initialisation and
the MLPs of the 2-d toy experiments."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from visrep.errors import ConfigError, ShapeError
from visrep.losses import gradient_penalty
from visrep.models.generative import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    check_gan_size,
    dcgan_init_,
)

SIZES = {8: (4, 1), 28: (7, 2), 32: (4, 3), 64: (4, 4)}


def test_check_gan_size_finds_s0_and_k():
    for side, (s0, k) in SIZES.items():
        assert check_gan_size((side, side)) == (s0, k) and side == s0 * 2**k
    assert check_gan_size(10) == (5, 1) and check_gan_size(24) == (6, 2)
    assert check_gan_size((14, 14)) == (7, 1) and check_gan_size(96) == (6, 4)


@pytest.mark.parametrize("size", [4, 7, 9, 30, 36, 100, (32, 28), (32,), 0])
def test_other_sizes_are_one_config_error_naming_the_option(size):
    with pytest.raises(ConfigError, match=r"^image_size must be square with side s0 \* 2\*\*k"):
        check_gan_size(size)
    with pytest.raises(ConfigError, match=r"^data\.image_size must be square"):
        check_gan_size(size, "data.image_size")
    with pytest.raises(ConfigError, match="image_size"):
        DCGANGenerator(4, 1, size, width=2)
    with pytest.raises(ConfigError, match="image_size"):
        DCGANDiscriminator(1, size, width=2)


@pytest.mark.parametrize("chans", [1, 3])
@pytest.mark.parametrize("side", list(SIZES))
def test_dcgan_is_sized_from_the_data(side, chans):
    s0, k = SIZES[side]
    torch.manual_seed(0)
    g = DCGANGenerator(6, chans, (side, side), width=4)
    d = DCGANDiscriminator(chans, (side, side), width=4)
    z = torch.randn(3, 6)
    x = g(z)
    assert x.shape == (3, chans, side, side)
    assert x.abs().max() <= 1  # tanh
    score = d(x)
    assert score.shape == (3,)
    # the generator: project to (4 * 2**(k-1), s0, s0), then k doublings halving the channels
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == k + 1 and convs[0].kernel_size == (s0, s0)
    assert [c.out_channels for c in convs] == [4 * 2 ** (k - 1 - i) for i in range(k)] + [chans]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs[1:])
    assert g.net[:3](z[:, :, None, None]).shape == (3, 4 * 2 ** (k - 1), s0, s0)
    # the discriminator: k halvings doubling the channels, one s0 x s0 read-out
    dconvs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in dconvs] == [4 * 2**i for i in range(k)] + [1]
    assert dconvs[-1].kernel_size == (s0, s0)
    # batch norm everywhere but the generator's output and the discriminator's input layer
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == k
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == k - 1
    assert isinstance(d.net[1], nn.LeakyReLU) and d.net[1].negative_slope == 0.2
    (score.sum() + x.sum()).backward()
    for m in (g, d):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_the_wgan_gp_critic_has_no_batch_norm_and_scores_samples_independently(norm):
    torch.manual_seed(0)
    critic = DCGANDiscriminator(3, (32, 32), width=4, norm=norm).train()
    assert not any(isinstance(m, _BatchNorm) for m in critic.modules())
    if norm == "layer":  # layer norm: each sample over all of (C, H, W)
        gns = [m for m in critic.modules() if isinstance(m, nn.GroupNorm)]
        assert len(gns) == 2 and all(m.num_groups == 1 for m in gns)
    x = torch.randn(4, 3, 32, 32)
    full = critic(x)
    assert torch.allclose(full[:1], critic(x[:1]), atol=1e-6)  # no batch statistics
    assert torch.allclose(full[1:], critic(x[1:]), atol=1e-6)
    # the batch-norm discriminator in training mode mixes samples: the check above has teeth
    torch.manual_seed(0)
    bn = DCGANDiscriminator(3, (32, 32), width=4, norm="batch").train()
    assert not torch.allclose(bn(x)[:2], bn(x[:2]), atol=1e-4)


def test_instance_norm_discriminator_and_unnormalised_generator():
    d = DCGANDiscriminator(1, (16, 16), width=4, norm="instance")
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 1
    g = DCGANGenerator(3, 1, 16, width=4, norm="none")
    assert not any(isinstance(m, _BatchNorm) for m in g.modules())
    assert all(c.bias is not None for c in g.modules() if isinstance(c, nn.ConvTranspose2d))
    assert d(g(torch.randn(2, 3))).shape == (2,)


def test_dcgan_init_draws_from_the_papers_normals():
    torch.manual_seed(0)
    g = DCGANGenerator(100, 3, (64, 64), width=64)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.01)
    bn = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    scale = torch.cat([m.weight for m in bn]).detach()
    assert scale.mean().item() == pytest.approx(1.0, abs=0.01) and 0.01 < scale.std() < 0.03
    assert all((m.bias == 0).all() for m in bn)
    lin = nn.Linear(500, 400)
    dcgan_init_(lin)
    assert lin.weight.std().item() == pytest.approx(0.02, rel=0.02) and (lin.bias == 0).all()


def test_dcgan_bad_inputs():
    g = DCGANGenerator(8, 1, 28, width=2)
    d = DCGANDiscriminator(1, 28, width=2)
    with pytest.raises(ShapeError, match=r"expected \(B, 8\)"):
        g(torch.randn(2, 8, 1, 1))
    with pytest.raises(ShapeError, match=r"expected \(B, 1, 28, 28\)"):
        d(torch.randn(2, 1, 32, 32))
    with pytest.raises(ConfigError, match=r"^latent_size must be an integer >= 1"):
        DCGANGenerator(0, 1, 28)
    with pytest.raises(ConfigError, match=r"^norm must be one of batch, none, got 'layer'"):
        DCGANGenerator(8, 1, 28, norm="layer")
    with pytest.raises(ConfigError, match=r"^norm must be one of batch, layer, instance, none"):
        DCGANDiscriminator(1, 28, norm="group")


def test_mlps_of_the_toy_experiments():
    g, d = MLPGenerator(), MLPDiscriminator()
    for net, ins, out in ((g, 2, 2), (d, 2, 1)):  # 3 ReLU layers of 512 (Gulrajani et al.)
        lins = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in lins] == [
            (ins, 512),
            (512, 512),
            (512, 512),
            (512, out),
        ]
        assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 3
    torch.manual_seed(0)
    g, d = MLPGenerator(4, 2, hidden=8, depth=2), MLPDiscriminator(2, hidden=8, depth=1)
    x = g(torch.randn(5, 4))
    assert x.shape == (5, 2) and d(x).shape == (5,)
    d(x).sum().backward()
    assert all(p.grad is not None for p in [*g.parameters(), *d.parameters()])
    with pytest.raises(ShapeError, match=r"expected \(B, 4\)"):
        g(torch.randn(5, 2))
    with pytest.raises(ShapeError, match=r"expected \(B, 2\)"):
        d(torch.randn(5, 3))
    with pytest.raises(ConfigError, match=r"^hidden must be an integer >= 1"):
        MLPDiscriminator(hidden=0)


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_critics_take_the_gradient_penalty(norm):
    """Double backward through the critic (in-place LeakyReLU, group norm) works, and the batched
    penalty equals the mean of the one-sample penalties with the same interpolation weights."""
    torch.manual_seed(0)
    for critic, shape in (
        (DCGANDiscriminator(1, (8, 8), width=4, norm=norm).double(), (4, 1, 8, 8)),
        (MLPDiscriminator(hidden=8).double(), (4, 2)),
    ):
        real, fake = torch.randn(*shape, dtype=torch.float64), torch.randn(*shape).double()
        gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
        gp.backward()
        first = next(critic.parameters())
        assert torch.isfinite(gp) and first.grad.abs().sum() > 0
        eps = torch.rand(4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        eps = eps.view(-1, *[1] * (len(shape) - 1))
        xs = eps * real + (1 - eps) * fake
        per = []
        for i in range(4):  # the reference: one sample at a time
            xi = xs[i : i + 1].clone().requires_grad_(True)
            (gi,) = torch.autograd.grad(critic(xi).sum(), xi)
            per.append((gi.norm() - 1) ** 2)
        assert torch.allclose(gp.detach(), torch.stack(per).mean(), rtol=1e-10)
