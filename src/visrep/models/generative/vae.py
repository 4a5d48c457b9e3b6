"""The variational autoencoder (Kingma and Welling 2014; Doersch 2016; seed 001, eq. 3-14).

The encoder gives the Gaussian ``P(z | X; Theta_2) = N(mu(X), diag(exp(logvar(X))))`` (eq. 9:
two linear heads over the backbone's features), ``z = mu + sigma * eps`` is reparameterised,
and the decoder gives the likelihood ``P(X | z; Theta)``:

- ``bernoulli``: per-pixel Bernoulli with probabilities ``sigmoid(g(z))`` (Kingma and Welling's
  choice for MNIST; used on intensities in [0, 1] as they do, so its log-likelihood is the
  negative binary cross-entropy, not a normalised density of continuous pixels);
- ``gaussian``: ``N(X | sigmoid(g(z)), sigma^2 I)`` (eq. 7), the means kept in [0, 1], with a
  fixed ``sigma`` or, when ``sigma`` is None, one learned global ``log sigma`` (a single scalar
  shared by every pixel, as in the sigma-VAE of Rybkin et al. 2021); its log-likelihood is a
  density in nats of pixels scaled to [0, 1].

The prior is ``N(0, I)``. Losses, the KL term and the importance-weighted bound live in
:mod:`visrep.losses.vae`; :class:`visrep.tasks.VAETask` trains the model on the ELBO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.losses.vae import bernoulli_log_likelihood, gaussian_log_likelihood, reparameterize
from visrep.models.generative.autoencoder import EncoderDecoder
from visrep.models.generative.decoders import DecoderKind

__all__ = ["VAE", "check_vae_options", "gaussian_grid"]

Likelihood = Literal["bernoulli", "gaussian"]


def gaussian_grid(n: int, low: float = 0.05) -> tuple[Tensor, Tensor]:
    """An ``n x n`` grid of 2-d latents at the Gaussian quantiles ``linspace(low, 1 - low, n)``
    (Kingma and Welling 2014, fig. 4: coordinates spaced evenly on the unit square and mapped
    through the inverse CDF of the prior).

    Returns:
        ``z`` ``(n * n, 2)`` row-major with ``z_2`` decreasing down the rows and ``z_1``
        increasing along them (the layout of
        :func:`~visrep.plots.generation.plot_latent_manifold`), and the ``n`` values.

    >>> z, v = gaussian_grid(3, 0.5 - 0.3413447)
    >>> v.round(decimals=3), z[0].round(decimals=3)
    (tensor([-1.,  0.,  1.]), tensor([-1.,  1.]))
    """
    if n < 1 or not 0 < low < 0.5:
        raise ConfigError(f"gaussian_grid: need n >= 1 and 0 < low < 0.5, got {n} and {low}")
    values = torch.special.ndtri(torch.linspace(low, 1 - low, n, dtype=torch.float64)).float()
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    return torch.stack([z1, z2], -1).view(-1, 2), values


def check_vae_options(
    latent_size: int, likelihood: str, sigma: float | None, prefix: str = ""
) -> None:
    """ConfigError unless ``latent_size >= 1``, ``likelihood`` is bernoulli or gaussian and
    ``sigma`` is None (learned) or > 0; the message names ``<prefix>latent_size`` etc. (the VAE
    task checks its options with ``prefix="model."`` before it has data to build the model).

    >>> check_vae_options(0, "bernoulli", None, "model.")
    Traceback (most recent call last):
    ...
    visrep.errors.ConfigError: model.latent_size must be >= 1, got 0
    """
    checks = {
        "latent_size": (latent_size, latent_size >= 1, ">= 1"),
        "likelihood": (
            likelihood,
            likelihood in ("bernoulli", "gaussian"),
            "bernoulli or gaussian",
        ),
        "sigma": (sigma, sigma is None or sigma > 0, "> 0 or null (learned)"),
    }
    for name, (value, ok, expected) in checks.items():
        if not ok:
            raise ConfigError(f"{prefix}{name} must be {expected}, got {value!r}")


class VAE(EncoderDecoder):
    """Gaussian encoder (eq. 9), reparameterisation, Bernoulli or Gaussian decoder (eq. 7).

    Args:
        encoder, mean, std, in_chans, image_size, decoder, pool, decoder_hidden: see
            :class:`~visrep.models.generative.autoencoder.EncoderDecoder`.
        latent_size: dimension of ``z``.
        likelihood: ``bernoulli`` or ``gaussian`` (see the module docstring).
        sigma: the Gaussian decoder's fixed standard deviation (pixels in [0, 1]); None learns
            one global ``log sigma``. Unused by ``bernoulli``.

    Shape: images ``(B, C, H, W)`` in [0, 1]; ``mu``, ``logvar``, ``z``: ``(B, latent_size)``.

    >>> from visrep.models import create_backbone
    >>> enc = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8))
    >>> vae = VAE(enc, [0.5], [0.3], 1, (8, 8), latent_size=2)
    >>> vae.sample(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 1, 8, 8])
    """

    def __init__(
        self,
        encoder: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int,
        image_size: int | Sequence[int],
        latent_size: int = 32,
        likelihood: Likelihood = "bernoulli",
        sigma: float | None = None,
        decoder: DecoderKind = "transposed",
        pool: bool = False,
        decoder_hidden: Sequence[int] | None = None,
    ) -> None:
        check_vae_options(latent_size, likelihood, sigma)
        super().__init__(
            encoder, mean, std, in_chans, image_size, latent_size, decoder, pool, decoder_hidden
        )
        self.latent_size, self.likelihood = latent_size, likelihood
        self.mu = nn.Linear(self.num_features, latent_size)
        self.logvar = nn.Linear(self.num_features, latent_size)
        if likelihood == "gaussian":
            if sigma is None:
                self.log_sigma = nn.Parameter(torch.zeros(()))
            else:
                self.register_buffer("log_sigma", torch.tensor(math.log(sigma)))

    # -- the encoder q(z | x) -----------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of ``P(z | X; Theta_2)``, each ``(B, latent_size)`` (eq. 9)."""
        h = self.features(x)
        return self.mu(h), self.logvar(h)

    def embed(self, x: Tensor) -> Tensor:
        """The posterior mean ``mu(x)``: the embedding ``visrep embed`` writes."""
        return self.mu(self.features(x))

    # -- the decoder p(x | z) -----------------------------------------------------------------------
    def decode_logits(self, z: Tensor) -> Tensor:
        """The decoder's raw output ``g(z)`` ``(B, C, H, W)`` (logits, or means before sigmoid)."""
        self.check_code(z)
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """The mean of ``P(X | z)``: images ``(B, C, H, W)`` in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def log_likelihood(self, z: Tensor, x: Tensor) -> Tensor:
        """``log P(x | z; Theta)`` in nats, summed over pixels.

        Args:
            z: latents ``(..., B, latent_size)`` (leading sample dimensions allowed).
            x: images ``(B, C, H, W)`` in [0, 1], or already repeated as ``(..., B, C, H, W)``.

        Returns:
            ``z.shape[:-1]``.
        """
        if z.dim() < 2 or z.shape[-1] != self.latent_size:
            raise ShapeError(f"z must be (..., B, {self.latent_size}), got {tuple(z.shape)}")
        lead = z.shape[:-1]
        x = x.expand(*lead, *x.shape[-3:]) if x.dim() == 4 and z.dim() > 2 else x
        if tuple(x.shape[:-3]) != tuple(lead):
            raise ShapeError(f"x {tuple(x.shape)} does not match z {tuple(z.shape)}")
        out = self.decode_logits(z.reshape(-1, self.latent_size))
        x = x.reshape(out.shape)
        if self.likelihood == "bernoulli":
            ll = bernoulli_log_likelihood(out, x)
        else:
            ll = gaussian_log_likelihood(torch.sigmoid(out), x, self.log_sigma)
        return ll.view(lead)

    # -- sampling -----------------------------------------------------------------------------------
    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` (the reparameterisation trick)."""
        return reparameterize(mu, logvar, generator)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents from the prior ``N(0, I)``, ``(n, latent_size)``, on the model's device.

        Drawn on the generator's device (CPU by default) and moved, so a seed gives the same
        latents on every device.
        """
        if n < 1:
            raise ConfigError(f"the number of samples must be >= 1, got {n}")
        device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(n, self.latent_size, generator=generator, device=device)
        return z.to(self.mu.weight.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images decoded from prior samples: the means of ``P(X | z)``, ``(n, C, H, W)``."""
        return self.decode(self.sample_prior(n, generator))

    def forward(self, x: Tensor) -> Tensor:
        """The deterministic reconstruction: the mean of ``P(X | z = mu(x))``."""
        return self.decode(self.encode(x)[0])
