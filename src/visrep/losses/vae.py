"""The variational autoencoder's objective (Kingma and Welling 2014, "Auto-Encoding Variational
Bayes"; Doersch 2016, "Tutorial on Variational Autoencoders"; seed 001 eq. 3-14)
and the importance-weighted estimate of ``-log p(x)`` (Burda, Grosse and Salakhutdinov 2016).

Everything is per sample, ``(B,)``, in nats, summed over every non-batch dimension; the ELBO
``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` (seed 001 eq. 10-13) is estimated with reparameterised
samples ``z = mu + sigma * eps`` (the reparameterisation trick) and the KL to the standard
normal prior in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import ConfigError, ShapeError

_LOG_2PI = math.log(2 * math.pi)


def _flat_sum(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return t.reshape(t.shape[0], -1).sum(1)


def _same_shape(a: Tensor, b: Tensor, names: str, who: str) -> None:
    if a.shape != b.shape or a.dim() < 1:
        raise ShapeError(
            f"{who}: {names} must have the same (B, ...) shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A sample of ``N(mu, diag exp(logvar))`` as ``z = mu + exp(logvar / 2) * eps``,
    ``eps ~ N(0, I)``: the reparameterisation trick (Kingma and Welling 2014, section 2.4; seed
    001), which makes the sample differentiable in ``mu`` and ``logvar``.

    Args:
        mu: ``(B, L)`` means.
        logvar: ``(B, L)`` log-variances.
        generator: source of ``eps`` (the global one when None), on any device.

    Returns:
        ``(B, L)``.
    """
    _same_shape(mu, logvar, "mu and logvar", "reparameterize")
    dev = mu.device if generator is None else generator.device
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=dev).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` in closed form, the term seed 001 (eq. 12)
    refers to Doersch 2016 for (Kingma and Welling 2014, appendix B):
    ``1/2 sum(exp(logvar) + mu^2 - 1 - logvar)``.

    Args:
        mu: ``(B, L)`` means.
        logvar: ``(B, L)`` log-variances.

    Returns:
        ``(B,)`` nats.

    >>> gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    _same_shape(mu, logvar, "mu and logvar", "gaussian_kl")
    return 0.5 * _flat_sum(torch.exp(logvar) + mu * mu - 1 - logvar)


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """``log p(x | z)`` of a Bernoulli decoder with ``logits`` (Kingma and Welling 2014,
    appendix C.1): ``sum x log sigmoid(l) + (1 - x) log sigmoid(-l)``, for ``x`` in [0, 1]
    (grey levels are read as probabilities, the usual MNIST practice).

    Args:
        logits: ``(B, ...)`` decoder outputs.
        x: ``(B, ...)`` data in [0, 1].

    Returns:
        ``(B,)`` nats.
    """
    _same_shape(logits, x, "logits and x", "bernoulli_log_likelihood")
    return -_flat_sum(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def gaussian_log_likelihood(mean: Tensor, x: Tensor, log_sigma: float | Tensor = 0.0) -> Tensor:
    """``log N(x | mean, sigma^2 I)`` of a Gaussian decoder (seed 001 eq. 7), with
    its constant: ``sum -(x - mean)^2 / (2 sigma^2) - log sigma - 1/2 log 2 pi``.

    Args:
        mean: ``(B, ...)`` decoder outputs ``f(z)``.
        x: ``(B, ...)`` data.
        log_sigma: ``log sigma``, a number or a tensor broadcastable to ``x`` (learned or per
            pixel).

    Returns:
        ``(B,)`` nats.
    """
    _same_shape(mean, x, "mean and x", "gaussian_log_likelihood")
    if not isinstance(log_sigma, Tensor):
        log_sigma = torch.as_tensor(float(log_sigma), dtype=mean.dtype, device=mean.device)
    try:
        log_sigma = log_sigma.expand_as(x)
    except RuntimeError:
        raise ShapeError(
            f"gaussian_log_likelihood: log_sigma of shape {tuple(log_sigma.shape)} does not "
            f"broadcast to x {tuple(x.shape)}"
        ) from None
    z = (x - mean) * torch.exp(-log_sigma)
    return _flat_sum(-0.5 * z * z - log_sigma - 0.5 * _LOG_2PI)


def log_normal_diag(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z | mu, diag exp(logvar))`` (the encoder's density, seed 001 eq. 9).

    Args:
        z: ``(B, L)`` points.
        mu: ``(B, L)`` means.
        logvar: ``(B, L)`` log-variances.

    Returns:
        ``(B,)`` nats.
    """
    _same_shape(z, mu, "z and mu", "log_normal_diag")
    _same_shape(mu, logvar, "mu and logvar", "log_normal_diag")
    return _flat_sum(-0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)))


def log_standard_normal(z: Tensor) -> Tensor:
    """``log N(z | 0, I)`` (the prior ``p(z)``).

    Args:
        z: ``(B, L)`` points.

    Returns:
        ``(B,)`` nats.
    """
    if z.dim() < 1:
        raise ShapeError(f"log_standard_normal: z must be (B, L), got {tuple(z.shape)}")
    return _flat_sum(-0.5 * (_LOG_2PI + z * z))


def elbo(log_likelihood: Tensor, kl: Tensor, beta: float = 1.0) -> Tensor:
    """The evidence lower bound ``E_q[log p(x|z)] - beta KL(q(z|x) || p(z))``, the right-hand
    side of seed 001 eq. 10-13 and its final objective (Doersch 2016; Kingma and Welling 2014,
    eq. 3); ``beta != 1`` is the beta-VAE of Higgins et al. 2017.

    Args:
        log_likelihood: ``(B,)`` one-sample (or averaged) estimates of ``E_q[log p(x|z)]``.
        kl: ``(B,)`` KL terms, e.g. :func:`gaussian_kl`.
        beta: weight of the KL term, >= 0.

    Returns:
        ``(B,)`` nats (maximise it; the training loss is ``-elbo(...).mean()``).
    """
    if not math.isfinite(beta) or beta < 0:
        raise ConfigError(f"elbo: beta must be a finite number >= 0, got {beta!r}")
    if log_likelihood.shape != kl.shape or log_likelihood.dim() != 1:
        raise ShapeError(
            f"elbo: log_likelihood and kl must both be (B,), got {tuple(log_likelihood.shape)} "
            f"and {tuple(kl.shape)}"
        )
    return log_likelihood - beta * kl


def importance_weighted_nll(
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    decode_log_likelihood: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    k: int = 100,
    chunk: int = 10,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The importance-weighted estimate of ``-log p(x)`` (Burda et al. 2016, "Importance Weighted
    Autoencoders", eq. 8): ``-log 1/k sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``,
    computed with logsumexp. Its expectation upper-bounds ``-log p(x)`` and decreases to it as
    ``k`` grows (their theorem 1); ``k = 1`` is the negative ELBO.

    Args:
        encode: ``x -> (mu, logvar)``, each ``(B, L)``: the Gaussian encoder ``q(z|x)``.
        decode_log_likelihood: ``(z, x) -> (B',)``: ``log p(x|z)`` for ``B'`` latent rows and the
            matching data rows.
        x: ``(B, ...)`` data.
        k: number of importance samples (>= 1).
        chunk: samples per decoder call (the decoder sees ``chunk * B`` rows at a time).
        generator: source of the samples (the global one when None).

    Returns:
        ``(B,)`` nats. Differentiable (the IWAE objective); call under ``torch.no_grad()`` to
        only evaluate.
    """
    if k < 1 or chunk < 1:
        raise ConfigError(f"importance_weighted_nll: k and chunk must be >= 1, got {k}, {chunk}")
    mu, logvar = encode(x)
    _same_shape(mu, logvar, "mu and logvar", "importance_weighted_nll")
    b = x.shape[0]
    if mu.shape[0] != b:
        raise ShapeError(f"importance_weighted_nll: encode gave {mu.shape[0]} rows for {b} samples")
    log_w = []
    for s in range(0, k, chunk):
        c = min(chunk, k - s)
        m, lv = mu.repeat(c, *([1] * (mu.dim() - 1))), logvar.repeat(c, *([1] * (mu.dim() - 1)))
        z = reparameterize(m, lv, generator)
        xr = x.repeat(c, *([1] * (x.dim() - 1)))
        ll = decode_log_likelihood(z, xr)
        if ll.shape != (c * b,):
            raise ShapeError(
                f"importance_weighted_nll: decode_log_likelihood must return ({c * b},), got "
                f"{tuple(ll.shape)}"
            )
        log_w.append((ll + log_standard_normal(z) - log_normal_diag(z, m, lv)).view(c, b))
    return math.log(k) - torch.logsumexp(torch.cat(log_w), dim=0)
