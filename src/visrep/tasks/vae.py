"""Variational autoencoders (Kingma and Welling, ICLR 2014; Doersch 2016; seed 001, eq. 3-14),
trained on the ELBO, optionally beta-weighted (Higgins et al., ICLR 2017).

Per image the loss is ``-ELBO_beta = -E_q[log P(X | z)] + beta KL(q(z | X) || N(0, I))``, one
reparameterised sample of ``z`` per image (eq. 13-14 and the reparameterisation trick), averaged
over the batch. Validation and test draw their samples from generators seeded by the batch
index, so their numbers do not change between evaluations of the same weights.

Metrics, in nats per image (``beta`` = 1 for ``elbo``, ``nll``):

- ``val/loss``, ``test/loss``: the training objective (the negative ELBO when ``beta`` = 1);
- ``val/recon``, ``test/recon``: ``-E_q[log P(X | z)]`` (one sample); ``val/kl``, ``test/kl``;
- ``test/elbo``: the ELBO itself, a lower bound of ``log P(X)``;
- ``test/nll``: ``-log P(X)`` estimated with ``iw_samples`` importance samples from ``q``
  (Burda, Grosse and Salakhutdinov, ICLR 2016: the bound tightens as ``k`` grows; at ``k`` = 1 it
  is the negative ELBO), via :func:`visrep.losses.vae.importance_weighted_nll`.

Under the ``bernoulli`` likelihood these are Bernoulli log-likelihoods of the [0, 1] intensities
(the convention of Kingma and Welling and the MNIST literature; not a normalised density of
continuous pixels); under the ``gaussian`` likelihood they are densities in nats of pixels scaled
to [0, 1] (so they can be negative).

Artifacts after test: ``plots/reconstructions.png``, ``plots/samples.png`` (64 decoded prior
samples), ``plots/interpolations.png`` (decoded points on the segments between the posterior
means of test images), and for ``latent_size`` 2 ``plots/manifold.png`` (decoded latents on a
grid of Gaussian quantiles, Kingma and Welling's fig. 4) and ``plots/latent_scatter.png``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE
from visrep.errors import ConfigError
from visrep.losses.vae import elbo, gaussian_kl, importance_weighted_nll
from visrep.models.backbones.cnn import small_cnn
from visrep.models.generative import VAE
from visrep.models.generative.decoders import DecoderKind
from visrep.models.generative.vae import Likelihood, check_vae_options, gaussian_grid
from visrep.models.interface import BackboneFactory
from visrep.plots.generation import plot_image_grid, plot_interpolations, plot_latent_manifold
from visrep.runs import RunDir
from visrep.tasks.autoencoder import GenerativeTaskMixin
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig

__all__ = ["VAETask"]

Batch = dict[str, Any]
_SAMPLES = 64  # prior samples in plots/samples.png
_PAIRS, _STEPS = 8, 10  # interpolations: rows and images per row
_GRID = 20  # the 2-d manifold: GRID x GRID decoded latents


class VAETask(GenerativeTaskMixin, Task):
    """Trains a :class:`~visrep.models.generative.VAE` on the (beta-weighted) ELBO.

    Args:
        backbone: the encoder, any registered backbone with its options; built for the data.
        latent_size: dimension of ``z`` (>= 1).
        likelihood: ``bernoulli`` or ``gaussian`` decoder (eq. 7).
        sigma: the Gaussian decoder's fixed standard deviation (pixels in [0, 1]); null learns
            one global ``log sigma``.
        beta: weight of the KL term (beta-VAE, Higgins et al. 2017; 1 is the ELBO).
        decoder: ``transposed``, ``upsample`` or ``mlp``.
        pool: encode from the backbone's pooled features instead of its flattened map.
        iw_samples: importance samples ``k`` of the test NLL (Burda et al. 2016).
        optim: optimiser and schedule.
    """

    def __init__(
        self,
        backbone: BackboneFactory = small_cnn,
        latent_size: int = 32,
        likelihood: Likelihood = "bernoulli",
        sigma: float | None = None,
        beta: float = 1.0,
        decoder: DecoderKind = "transposed",
        pool: bool = False,
        iw_samples: int = 100,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(backbone, decoder, optim)
        check_vae_options(latent_size, likelihood, sigma, "model.")  # the VAE's own checks
        checks = {
            "beta": (beta, beta >= 0, ">= 0"),
            "iw_samples": (iw_samples, iw_samples >= 1, ">= 1"),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"model.{name} must be {expected}, got {value!r}")
        self.save_hyperparameters()
        self.hparams["backbone"] = self.backbone_spec  # plain data, whatever form was given

    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        self.net = VAE(
            self.build_encoder(spec), spec.mean, spec.std, spec.in_chans, spec.image_size,
            hp.latent_size, hp.likelihood, hp.sigma, hp.decoder, hp.pool,
        )  # fmt: skip
        self.test_nll = MeanMetric()

    # -- the objective -----------------------------------------------------------------------------
    def terms(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per image: ``log P(X | z)`` at one reparameterised ``z``, ``KL(q || p)``, and ``mu``."""
        mu, logvar = self.net.encode(x)
        z = self.net.reparameterize(mu, logvar, generator)
        return self.net.log_likelihood(z, x), gaussian_kl(mu, logvar), mu

    def _values(self, ll: Tensor, kl: Tensor) -> dict[str, Tensor]:
        return {
            "loss": -elbo(ll, kl, self.hparams.beta).mean(),
            "recon": -ll.mean(),
            "kl": kl.mean(),
        }

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x = batch[IMAGE]
        ll, kl, _ = self.terms(x)
        values = self._values(ll, kl)
        self._log("train", values, len(x))
        return values["loss"]

    def _generator(self, batch_idx: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(batch_idx)

    def _eval_step(self, batch: Batch, batch_idx: int, stage: str) -> tuple[Tensor, Tensor]:
        x = batch[IMAGE]
        ll, kl, mu = self.terms(x, self._generator(batch_idx))
        values = self._values(ll, kl)
        if stage == "test":
            values["elbo"] = elbo(ll, kl).mean()
        self._log(stage, values, len(x))
        return x, mu

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, mu = self._eval_step(batch, batch_idx, "test")
        nll = importance_weighted_nll(
            self.net.encode, self.net.log_likelihood, x, k=self.hparams.iw_samples,
            generator=self._generator(batch_idx),
        )  # fmt: skip
        self.test_nll.update(nll)
        self.log("test/nll", self.test_nll, batch_size=len(x))
        self.collect(batch, batch_idx, self.net.decode(mu), mu)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Per image: its ``elbo`` (one seeded sample, nats) and the ``mse`` per pixel of its
        reconstruction from the posterior mean."""
        x = batch[IMAGE]
        ll, kl, mu = self.terms(x, self._generator(batch_idx))
        return {"elbo": elbo(ll, kl), "mse": (self.net.decode(mu) - x).square().flatten(1).mean(1)}

    # -- artifacts ---------------------------------------------------------------------------------
    @torch.no_grad()
    def test_results(self) -> dict[str, Any]:
        out = super().test_results()
        g = torch.Generator().manual_seed(0)
        out["samples"] = self.net.sample(_SAMPLES, g).cpu()
        if "reconstructions" in out:
            x = out["reconstructions"][0].to(self.device)
            mu = self.net.encode(x)[0]
            pairs = min(_PAIRS, len(mu) // 2)
            if pairs:
                a, b = mu[:pairs], mu[pairs : 2 * pairs]
                t = torch.linspace(0, 1, _STEPS, device=mu.device).view(1, -1, 1)
                z = a[:, None] + t * (b - a)[:, None]  # (pairs, steps, latent)
                frames = self.net.decode(z.flatten(0, 1))
                out["interpolations"] = frames.view(pairs, _STEPS, *frames.shape[1:]).cpu()
        if self.hparams.latent_size == 2:
            z, values = gaussian_grid(_GRID)
            out["manifold"] = (self.net.decode(z.to(self.device)).cpu(), values)
        return out

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the shared plots, then ``samples.png``, ``interpolations.png`` and, for a
        2-d latent space, ``manifold.png``."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        super().write_artifacts(run, stage)
        plot_image_grid(results["samples"], run.plots / "samples.png",
                        title="decoded samples of the prior N(0, I) (means of P(X | z))")  # fmt: skip
        if "interpolations" in results:
            plot_interpolations(results["interpolations"], run.plots / "interpolations.png",
                                title="latent interpolations between test images")  # fmt: skip
        if "manifold" in results:
            images, values = results["manifold"]
            plot_latent_manifold(images, values, run.plots / "manifold.png",
                                 title="decoded latents at Gaussian quantiles 0.05..0.95")  # fmt: skip
        self._test_results = None
        return {}
