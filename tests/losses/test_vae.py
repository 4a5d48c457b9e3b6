import math

import pytest
import torch
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from visrep.errors import ConfigError, ShapeError
from visrep.losses import (
    bernoulli_log_likelihood,
    elbo,
    gaussian_kl,
    gaussian_log_likelihood,
    importance_weighted_nll,
    log_normal_diag,
    log_standard_normal,
    reparameterize,
)

N_MC = 200_000


def _posterior_params(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(3, 4, dtype=torch.float64, generator=g)
    logvar = torch.randn(3, 4, dtype=torch.float64, generator=g) * 0.7
    return mu, logvar


def test_reparameterized_samples_have_the_right_mean_and_variance_and_gradient():
    mu, logvar = _posterior_params(1)
    g = torch.Generator().manual_seed(2)
    z = reparameterize(mu.expand(N_MC, 3, 4), logvar.expand(N_MC, 3, 4), g)
    var = logvar.exp()
    # the sample mean has std sqrt(var / N), the sample variance ~ var sqrt(2 / N): 5 of each
    assert bool(((z.mean(0) - mu).abs() < 5 * (var / N_MC).sqrt()).all())
    assert bool(((z.var(0) - var).abs() < 5 * var * math.sqrt(2 / N_MC)).all())
    # z = mu + exp(logvar / 2) eps: dz/dmu = 1, dz/dlogvar = (z - mu) / 2
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z = reparameterize(m, lv, torch.Generator().manual_seed(3))
    gm, glv = torch.autograd.grad(z.sum(), (m, lv))
    torch.testing.assert_close(gm, torch.ones_like(mu))
    torch.testing.assert_close(glv, (z - mu).detach() / 2)
    again = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, z.detach())


def test_closed_form_kl_equals_monte_carlo_and_torch():
    mu, logvar = _posterior_params(4)
    kl = gaussian_kl(mu, logvar)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl, ref)
    # KL = E_q[log q(z) - log p(z)]; 200k samples per row, tolerance 5 standard errors.
    z = reparameterize(
        mu.expand(N_MC, 3, 4), logvar.expand(N_MC, 3, 4), torch.Generator().manual_seed(5)
    )
    ratio = log_normal_diag(z.reshape(-1, 4), mu.repeat(N_MC, 1), logvar.repeat(N_MC, 1))
    ratio = (ratio - log_standard_normal(z.reshape(-1, 4))).view(N_MC, 3)
    stderr = ratio.std(0) / math.sqrt(N_MC)
    assert bool(((ratio.mean(0) - kl).abs() < 5 * stderr).all()), (ratio.mean(0), kl, stderr)
    assert float(stderr.max()) < 0.02  # the test can tell a wrong KL apart
    assert torch.equal(gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))


def test_likelihoods_equal_torch_distributions():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 1, 4, 4, dtype=torch.float64, generator=g) * 3
    x = (torch.rand(3, 1, 4, 4, generator=g) > 0.5).to(torch.float64)
    ref = Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), ref)
    mean = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=g)
    xg = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=g)
    ref = Normal(mean, math.exp(-0.7)).log_prob(xg).sum((1, 2, 3))
    torch.testing.assert_close(gaussian_log_likelihood(mean, xg, -0.7), ref)
    per_pixel = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=g) * 0.3
    ref = Normal(mean, per_pixel.exp()).log_prob(xg).sum((1, 2, 3))
    torch.testing.assert_close(gaussian_log_likelihood(mean, xg, per_pixel), ref)
    z, mu, lv = (torch.randn(5, 3, dtype=torch.float64, generator=g) for _ in range(3))
    torch.testing.assert_close(
        log_normal_diag(z, mu, lv), Normal(mu, (0.5 * lv).exp()).log_prob(z).sum(1)
    )
    torch.testing.assert_close(log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(1))


def test_gradcheck_kl_and_likelihoods():
    g = torch.Generator().manual_seed(7)

    def r(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g).requires_grad_()

    x = torch.rand(2, 1, 3, 3, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(gaussian_kl, (r(2, 3), r(2, 3)))
    assert torch.autograd.gradcheck(lambda lg: bernoulli_log_likelihood(lg, x), (r(2, 1, 3, 3),))
    assert torch.autograd.gradcheck(
        lambda m, s: gaussian_log_likelihood(m, x, s), (r(2, 1, 3, 3), r(1, 1, 3, 3))
    )
    assert torch.autograd.gradcheck(log_normal_diag, (r(2, 3), r(2, 3), r(2, 3)))
    assert torch.autograd.gradcheck(log_standard_normal, (r(2, 3),))


def test_elbo_and_bad_input():
    ll, kl = torch.tensor([-3.0, -5.0]), torch.tensor([1.0, 2.0])
    torch.testing.assert_close(elbo(ll, kl), torch.tensor([-4.0, -7.0]))
    torch.testing.assert_close(elbo(ll, kl, beta=4.0), torch.tensor([-7.0, -13.0]))
    with pytest.raises(ConfigError, match="beta"):
        elbo(ll, kl, beta=-1.0)
    with pytest.raises(ShapeError, match="elbo"):
        elbo(ll, kl[:1])
    with pytest.raises(ShapeError, match="mu and logvar"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ShapeError, match="mu and logvar"):
        reparameterize(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ShapeError, match="logits and x"):
        bernoulli_log_likelihood(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ShapeError, match="log_sigma"):
        gaussian_log_likelihood(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3))


# --- importance-weighted NLL on a linear-Gaussian model -----------------------------------------


def _linear_gaussian(seed: int = 8):
    """z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_5), W with orthogonal columns so that the exact
    posterior N(S W^T (x - b) / s^2, S), S = (I + W^T W / s^2)^-1, is diagonal; p(x) = N(b, W W^T
    + s^2 I)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64, generator=g))
    w = q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64, generator=g)
    s = 0.5
    px = MultivariateNormal(b, w @ w.T + s**2 * torch.eye(5, dtype=torch.float64))
    eps = torch.randn(64, 5, dtype=torch.float64, generator=g)
    x = b + eps @ torch.linalg.cholesky(px.covariance_matrix).T  # 64 draws of p(x)
    post_var = 1 / (1 + (w * w).sum(0) / s**2)

    def exact(x):
        mu = (x - b) @ w / s**2 * post_var
        return mu, post_var.log().expand_as(mu)

    def decode(z, x):
        return gaussian_log_likelihood(z @ w.T + b, x, math.log(s))

    return x, -px.log_prob(x), exact, decode


def test_iw_nll_with_the_exact_posterior_is_the_exact_nll_for_any_k():
    x, nll, exact, decode = _linear_gaussian()
    for k, chunk in ((1, 1), (7, 3), (100, 10)):
        got = importance_weighted_nll(exact, decode, x, k, chunk, torch.Generator().manual_seed(k))
        torch.testing.assert_close(got, nll, rtol=0, atol=1e-9)


def test_iw_nll_with_a_worse_posterior_is_an_upper_bound_decreasing_in_k():
    x, nll, exact, decode = _linear_gaussian()

    def worse(x):
        mu, logvar = exact(x)
        return 0.6 * mu + 0.3, logvar + 1.0

    g = torch.Generator().manual_seed(9)
    means = [
        float(importance_weighted_nll(worse, decode, x, k, 50, g).mean())
        for k in (1, 10, 100, 1000)
    ]
    true = float(nll.mean())
    # Burda et al. theorem 1 holds in expectation; here (64 points, seed 9) the k = 1000 mean is
    # 3e-4 nats above -log p(x), within the noise of one estimate, hence the 0.01 slack there.
    assert means[0] > means[1] > means[2] > means[3] > true - 0.01 and means[2] > true
    assert means[0] - true > 1.0 and means[3] - true < 0.1 * (means[0] - true)
    # k = 1 is the negative one-sample ELBO of the same draw
    mu, logvar = worse(x)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(10))
    one = -(decode(z, x) + log_standard_normal(z) - log_normal_diag(z, mu, logvar))
    got = importance_weighted_nll(worse, decode, x, 1, 1, torch.Generator().manual_seed(10))
    torch.testing.assert_close(got, one)


def test_iw_nll_bad_input():
    x, _, exact, decode = _linear_gaussian()
    with pytest.raises(ConfigError, match="k and chunk"):
        importance_weighted_nll(exact, decode, x, k=0)
    with pytest.raises(ShapeError, match="decode_log_likelihood"):
        importance_weighted_nll(exact, lambda z, x: decode(z, x)[:-1], x, k=2)
