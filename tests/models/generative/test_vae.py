"""The VAE model (Kingma and Welling 2014): the Gaussian encoder's heads, the decoder's
likelihoods, prior samples and the latent grid."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models import VAE, create_backbone
from visrep.models.generative.vae import gaussian_grid


def _vae(**kw) -> VAE:
    torch.manual_seed(0)
    enc = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8))
    return VAE(enc, [0.3], [0.2], 1, (8, 8), **kw).eval()


def test_encoder_heads_and_embedding():
    vae = _vae(latent_size=3)
    x = torch.rand(4, 1, 8, 8)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert torch.equal(vae.embed(x), mu)
    assert torch.equal(vae(x), torch.sigmoid(vae.decoder(mu)))  # the mean of P(X | z = mu)


def test_bernoulli_log_likelihood_by_hand_and_with_sample_dimensions():
    vae = _vae(latent_size=2)
    x = torch.rand(3, 1, 8, 8)
    z = torch.randn(5, 3, 2)  # 5 samples of z for each of the 3 images
    ll = vae.log_likelihood(z, x)
    assert ll.shape == (5, 3)
    logits = vae.decoder(z.reshape(15, 2)).view(5, 3, 1, 8, 8)
    want = -F.binary_cross_entropy_with_logits(logits, x.expand(5, -1, -1, -1, -1),
                                               reduction="none").flatten(2).sum(2)  # fmt: skip
    assert torch.allclose(ll, want, atol=1e-4)


@pytest.mark.parametrize("sigma", [None, 0.1])
def test_gaussian_decoder_eq7(sigma):
    vae = _vae(latent_size=2, likelihood="gaussian", sigma=sigma)
    learned = isinstance(vae.log_sigma, torch.nn.Parameter)
    assert learned == (sigma is None)
    s = 1.0 if sigma is None else sigma
    x, z = torch.rand(2, 1, 8, 8), torch.randn(2, 2)
    mean = vae.decode(z)
    d = 64
    want = (-(x - mean).square().flatten(1).sum(1) / (2 * s * s) - d * math.log(s)
            - d / 2 * math.log(2 * math.pi))  # fmt: skip
    assert torch.allclose(vae.log_likelihood(z, x), want, atol=1e-3)


def test_prior_samples_are_seeded():
    vae = _vae(latent_size=2)
    a = vae.sample(6, torch.Generator().manual_seed(3))
    b = vae.sample(6, torch.Generator().manual_seed(3))
    c = vae.sample(6, torch.Generator().manual_seed(4))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    z = vae.sample_prior(2000, torch.Generator().manual_seed(0))
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


def test_gaussian_grid_follows_kingma_and_wellings_figure_4():
    z, values = gaussian_grid(5)
    q = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, 5))
    assert torch.allclose(values, q, atol=1e-5)
    grid = z.view(5, 5, 2)
    assert torch.equal(grid[0, :, 0], values) and torch.equal(grid[:, 0, 1], values.flip(0))


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="likelihood"):
        _vae(likelihood="poisson")
    with pytest.raises(ConfigError, match="sigma"):
        _vae(likelihood="gaussian", sigma=0.0)
    with pytest.raises(ConfigError, match="latent"):
        _vae(latent_size=0)
    vae = _vae(latent_size=2)
    with pytest.raises(ShapeError):
        vae.log_likelihood(torch.zeros(3, 4), torch.zeros(3, 1, 8, 8))
    with pytest.raises(ConfigError, match="samples"):
        vae.sample(0)
