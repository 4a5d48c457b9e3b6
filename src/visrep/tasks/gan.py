"""Generative adversarial networks (seed 001; Goodfellow et al., NeurIPS 2014), the Wasserstein
GAN (Arjovsky, Chintala and Bottou, ICML 2017) and WGAN-GP (Gulrajani et al., NeurIPS 2017),
trained with manual optimisation.

**The seed's algorithm** (Goodfellow et al. 2014, algorithm 1): ``k`` discriminator steps, each
on a fresh minibatch of real samples and one of noise, then one generator step on a fresh
minibatch of noise. Here every training batch is one discriminator (critic) step, and after
every ``n_critic`` (= ``k``) discriminator steps one generator step follows. The steps are
counted in the buffers ``d_steps`` and ``g_steps`` (kept by checkpoints: a resumed run keeps
its rhythm) and logged as ``train/d_steps``, ``train/g_steps``.

**Games** (``loss``, :mod:`visrep.losses.gan`):

- ``minimax``: D maximises ``log D(x) + log(1 - D(G(z)))`` (eq. 1), G minimises
  ``log(1 - D(G(z)))``;
- ``nonsaturating``: G maximises ``log D(G(z))`` instead (sec. 3: strong gradients early on);
- ``wasserstein``: the critic maximises ``E f(x) - E f(G(z))`` (Arjovsky et al., eq. 3), kept
  Lipschitz by weight clipping (``clip`` = c, their algorithm 1 line 7) or by the gradient
  penalty (``gp_weight`` = lambda, Gulrajani et al. eq. 3); ``train/wasserstein`` is the
  critic's estimate ``E f(x) - E f(G(z))`` of the distance;
- ``lsgan``: least squares (Mao et al., ICCV 2017, eq. 2).

**Optimisers** (``g_optim``, ``d_optim``; the defaults follow each paper, constant rate, no
weight decay): Adam lr 2e-4, betas (0.5, 0.999) for minimax, nonsaturating and lsgan (Radford
et al., ICLR 2016, sec. 4); RMSProp lr 5e-5 for the clipped WGAN (Arjovsky et al., algorithm 1);
Adam lr 1e-4, betas (0, 0.9) for WGAN-GP (Gulrajani et al., algorithm 1). The options given
(:class:`OptimOverrides`: ``--model.d_optim.lr 1e-4``) replace those fields of the game's
default and keep the rest. Each optimiser has its own learning-rate schedule, stepped with its
own steps and as long as the run's steps of it: the discriminator's one step a batch, the
generator's one every ``n_critic`` discriminator steps.

**Multi-device**: each backward reaches one network's parameters only, so DDP needs
``--trainer.strategy ddp_find_unused_parameters_true`` (refused otherwise, in one line).

**EMA** (``ema`` = decay beta): an exponential moving average of the generator's weights after
every generator step, ``theta_ema <- beta theta_ema + (1 - beta) theta`` (Karras et al., ICLR
2018, appendix A.1; Yazici et al., ICLR 2019); buffers (batch-norm statistics) are copied. The
average is ``net``: evaluation, samples, plots and ``visrep generate`` use it.

**Data**: images (``classification`` or ``identity`` data) in [0, 1] are mapped to [-1, 1]
for the discriminator and the generator's tanh output back to [0, 1] for metrics, plots and
files (DCGAN sized from the data's channels and size); points of 2-d mixtures (``mixture2d``
data, :class:`~visrep.data.GaussianMixtureDataModule`) are used as they are, with the MLP GAN
of Gulrajani et al.'s toy experiments (sec. 3.1, fig. 1, and their ``gan_toy.py``).

Evaluation and artifacts: :mod:`visrep.tasks.gan_eval`; schedules, epoch means and the DDP check
(shared with CycleGAN): :mod:`visrep.tasks.gan_training`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, POINT
from visrep.errors import ConfigError
from visrep.losses.gan import (
    check_gan_loss,
    clip_after_step,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)
from visrep.models.generative import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    check_gan_size,
)
from visrep.tasks.base import Task, _check_optim
from visrep.tasks.gan_eval import GANEvaluationMixin
from visrep.tasks.gan_training import (
    EpochMeans,
    check_ddp_strategy,
    optimizer_with_schedule,
    schedule_varies,
)
from visrep.tasks.optim import OptimConfig

__all__ = [
    "EpochMeans",
    "GANTask",
    "GeneratorNet",
    "OptimOverrides",
    "check_ddp_strategy",
    "check_gan_options",
    "check_optim_option",
    "default_gan_optim",
    "ema_update_",
    "optimizer_with_schedule",
    "schedule_varies",
]

Batch = dict[str, Any]
GeneratorKind = Literal["dcgan", "mlp"]
DiscriminatorNorm = Literal["batch", "layer", "instance", "none"]
IMAGE_FAMILIES = ("classification", "identity")


class GeneratorNet(nn.Module):
    """A generator with its latent prior ``N(0, I)``: what sampling code calls (``visrep
    generate``, plots, metrics).

    Args:
        generator: ``z (B, latent_size) -> x`` (images in [-1, 1] through tanh, or points).
        latent_size: dimension of ``z``.
        images: the outputs are images in [-1, 1]: :meth:`decode` maps them to [0, 1].

    >>> net = GeneratorNet(DCGANGenerator(4, 1, (8, 8), width=2), 4, images=True)
    >>> x = net.sample(3, torch.Generator().manual_seed(0))
    >>> x.shape, bool(x.min() >= 0 and x.max() <= 1)
    (torch.Size([3, 1, 8, 8]), True)
    """

    def __init__(self, generator: nn.Module, latent_size: int, images: bool) -> None:
        super().__init__()
        self.generator = generator
        self.latent_size = latent_size
        self.images = images

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents ``z ~ N(0, I)``, ``(n, latent_size)``, drawn on ``generator``'s device
        (the parameters' device without one)."""
        dev = generator.device if generator is not None else next(self.parameters()).device
        return torch.randn(n, self.latent_size, generator=generator, device=dev)

    def raw(self, z: Tensor) -> Tensor:
        """The generator's own output (images in [-1, 1], or points)."""
        return self.generator(z)

    def decode(self, z: Tensor) -> Tensor:
        """Samples for latents ``z``: images in [0, 1] ``(B, C, H, W)``, or points ``(B, D)``."""
        out = self.generator(z)
        return (out + 1) / 2 if self.images else out

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``decode`` of ``n`` prior samples (drawn from ``generator``, moved to the weights)."""
        z = self.sample_prior(n, generator).to(next(self.parameters()).device)
        return self.decode(z)


def default_gan_optim(loss: str, gp_weight: float) -> OptimConfig:
    """Each paper's optimiser for game ``loss`` (constant rate, no weight decay).

    >>> default_gan_optim("wasserstein", 0.0).optimizer, default_gan_optim("wasserstein", 10).betas
    ('rmsprop', (0.0, 0.9))
    """
    if loss == "wasserstein" and gp_weight == 0:  # Arjovsky et al. 2017, algorithm 1
        return OptimConfig(optimizer="rmsprop", lr=5e-5, momentum=0.0, weight_decay=0.0,
                           schedule="constant")  # fmt: skip
    if loss == "wasserstein":  # Gulrajani et al. 2017, algorithm 1
        return OptimConfig(optimizer="adam", lr=1e-4, betas=(0.0, 0.9), weight_decay=0.0,
                           schedule="constant")  # fmt: skip
    # Radford et al. 2016, sec. 4 (and Mao et al. 2017 for LSGAN)
    return OptimConfig(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), weight_decay=0.0,
                       schedule="constant")  # fmt: skip


@dataclass
class OptimOverrides:
    """Fields of an :class:`~visrep.tasks.optim.OptimConfig` to change in a task's default
    optimiser (``--model.d_optim.lr 1e-4``); a field left None keeps the default's value (the
    same fields, documented there).

    >>> check_optim_option(OptimOverrides(lr=1e-3), "d_optim", default_gan_optim("lsgan", 0)).lr
    0.001
    """

    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None
    schedule: Literal["constant", "step", "cosine"] | None = None
    warmup_epochs: float | None = None
    step_size: int | None = None
    gamma: float | None = None
    min_lr_ratio: float | None = None
    decay_all: bool | None = None


_OPTIM_FIELDS = tuple(f.name for f in fields(OptimConfig))


def check_optim_option(
    cfg: OptimOverrides | OptimConfig | dict | None, option: str, default: OptimConfig
) -> OptimConfig:
    """The optimiser of option ``option``: ``default`` with the fields ``cfg`` sets (an
    :class:`OptimOverrides` or a mapping; None fields keep the default's), or ``cfg`` itself
    when it is a whole :class:`OptimConfig`; checked, the messages name ``--model.<option>``."""
    if isinstance(cfg, OptimConfig):
        out = cfg
    else:
        given = {} if cfg is None else vars(cfg) if isinstance(cfg, OptimOverrides) else cfg
        if not isinstance(given, dict):
            raise ConfigError(f"--model.{option} must be a mapping of optimiser options, got "
                              f"{type(cfg).__name__}")  # fmt: skip
        unknown = sorted(set(given) - set(_OPTIM_FIELDS))
        if unknown:
            raise ConfigError(f"--model.{option}: unknown option {unknown[0]!r} (options: "
                              f"{', '.join(_OPTIM_FIELDS)})")  # fmt: skip
        changes = {k: tuple(v) if k == "betas" else v for k, v in given.items() if v is not None}
        out = replace(default, **changes)
    if not (isinstance(out.lr, int | float) and out.lr > 0):
        raise ConfigError(f"--model.{option}.lr must be > 0, got {out.lr}")
    try:
        _check_optim(out)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--model.optim.", f"--model.{option}.")) from None
    return out


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``theta_ema <- decay theta_ema + (1 - decay) theta`` for every parameter, in place and
    vectorised (``torch._foreach_lerp_``); buffers (batch-norm statistics, counters) are copied
    (Karras et al. 2018, appendix A.1).

    >>> a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    >>> _ = a.weight.data.fill_(1.0), b.weight.data.fill_(3.0)
    >>> ema_update_(a, b, 0.9)
    >>> round(a.weight.item(), 4)
    1.2
    """
    ema_params, params = list(ema.parameters()), list(model.parameters())
    if ema_params:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(b)


class GANTask(GANEvaluationMixin, Task):
    """Trains a GAN with the seed's alternating algorithm (see the module).

    Args:
        generator: ``dcgan`` (images, sized from the data) or ``mlp`` (``mixture2d`` points).
        latent_size: dimension of ``z``.
        width: DCGAN channels (the generator's last and the discriminator's first map).
        discriminator_norm: the DCGAN discriminator's normalisation: ``batch`` (DCGAN),
            ``layer`` (the WGAN-GP critic, Gulrajani et al. sec. 4), ``instance`` or ``none``.
        hidden: units per hidden layer of the MLP GAN.
        depth: hidden layers of the MLP GAN.
        loss: the game: ``minimax``, ``nonsaturating``, ``wasserstein`` or ``lsgan``.
        n_critic: discriminator steps per generator step (k of algorithm 1; WGAN: 5).
        clip: clip every critic parameter to ``[-clip, clip]`` after each critic step (WGAN:
            0.01), or None.
        gp_weight: weight lambda of the gradient penalty (WGAN-GP: 10); 0 for none.
        ema: decay of the generator's weight average (e.g. 0.999), or None.
        g_optim: the generator's optimiser and schedule: the fields given replace those of the
            game's paper's (:func:`default_gan_optim`); a whole ``OptimConfig`` replaces it.
        d_optim: the discriminator's (the same default).
        features: a visrep classification run (directory or ``.ckpt``) trained on the same
            domain, whose features give FID and KID and whose classes give mode coverage
            (images only).
        eval_samples: generated samples per validation (FID, KID, 2-d mode coverage); the test
            generates ``min(eval_samples, N // 2)`` for ``N`` real test images
            (:mod:`~visrep.tasks.gan_eval`).
        kid_subset_size: samples per KID subset (>= 2; with ``features`` at most
            ``eval_samples``, the validation images and the held-out test images).
        grid: fixed latent vectors of the progress grids and ``plots/samples.png`` (images).
    """

    families = (*IMAGE_FAMILIES, "mixture2d")

    def __init__(
        self,
        generator: GeneratorKind = "dcgan",
        latent_size: int = 100,
        width: int = 64,
        discriminator_norm: DiscriminatorNorm = "batch",
        hidden: int = 512,
        depth: int = 3,
        loss: Literal["minimax", "nonsaturating", "wasserstein", "lsgan"] = "nonsaturating",
        n_critic: int = 1,
        clip: float | None = None,
        gp_weight: float = 0.0,
        ema: float | None = None,
        g_optim: OptimOverrides | None = None,
        d_optim: OptimOverrides | None = None,
        features: str | None = None,
        eval_samples: int = 2000,
        kid_subset_size: int = 1000,
        grid: int = 64,
    ) -> None:
        super().__init__()
        check_gan_options(generator, latent_size, width, discriminator_norm, hidden, depth,
                          loss, n_critic, clip, gp_weight, ema, features, eval_samples,
                          kid_subset_size, grid)  # fmt: skip
        default = default_gan_optim(loss, gp_weight)
        self.g_optim = check_optim_option(g_optim, "g_optim", default)
        self.d_optim = check_optim_option(d_optim, "d_optim", default)
        self.save_hyperparameters()
        # checkpoints keep the optimisers used, whole (a default changed later keeps them)
        self.hparams["g_optim"] = asdict(self.g_optim)
        self.hparams["d_optim"] = asdict(self.d_optim)
        self.automatic_optimization = False
        # the metric that picks best.ckpt (the CLI reads the instance's): FID for images with a
        # feature extractor; else last.ckpt only. Not the 2-d mode score: the mode metrics do
        # not depend on the real split, so the best of N validations would be the test too
        self.monitor = ("val/fid", "min") if features is not None else None
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        z = torch.randn(grid, latent_size, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_latents", z)  # the progress grids' latents
        self.discriminator: nn.Module | None = None
        self.train_net: GeneratorNet | None = None
        # whether each scheduler (discriminator's, generator's) changes the rate (set with them)
        self._schedules_vary = (True, True)
        self._losses: list[Tensor] = []  # the losses backpropagated for the current batch
        self.init_evaluation()

    def setup(self, stage: str) -> None:
        check_ddp_strategy(self, stage)

    # -- the model, from the data ---------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        hp = self.hparams
        images = spec.family in IMAGE_FAMILIES
        if hp.generator == "dcgan" and not images:
            raise ConfigError(
                f"model.generator dcgan makes images, but the data yields {spec.family!r} "
                "samples: use --model.generator mlp for 2-d mixtures"
            )
        if hp.generator == "mlp" and images:
            raise ConfigError(
                "model.generator mlp makes points (mixture2d data); use --model.generator dcgan "
                f"for {spec.family!r} images"
            )
        if images:
            if spec.in_chans is None or spec.image_size is None:
                raise ConfigError(f"GANTask needs the images' channels and size, got {spec}")
            check_gan_size(spec.image_size, "data image_size (DCGAN)")
            gen: nn.Module = DCGANGenerator(hp.latent_size, spec.in_chans, spec.image_size,
                                            hp.width)  # fmt: skip
            self.discriminator = DCGANDiscriminator(spec.in_chans, spec.image_size, hp.width,
                                                    hp.discriminator_norm)  # fmt: skip
        else:
            if spec.point_dim is None:
                raise ConfigError(f"GANTask needs point_dim of {spec.family!r} data, got None")
            gen = MLPGenerator(hp.latent_size, spec.point_dim, hp.hidden, hp.depth)
            self.discriminator = MLPDiscriminator(spec.point_dim, hp.hidden, hp.depth)
        net = GeneratorNet(gen, hp.latent_size, images)
        if hp.ema is not None:
            self.train_net = net
            self.net = copy.deepcopy(net).requires_grad_(False)
        else:
            self.net = net
        self.build_evaluation(spec)

    @property
    def generator_net(self) -> GeneratorNet:
        """The generator being trained (``net`` itself without EMA)."""
        return self.train_net if self.train_net is not None else self.net

    def forward(self, batch: Batch) -> Tensor:
        """The discriminator's (critic's) raw score of each sample of ``batch`` (``(B,)``);
        samples come from ``net`` (``net.sample``, ``net.decode``)."""
        return self.discriminator(self.to_model(batch))

    def to_model(self, batch: Batch) -> Tensor:
        """The batch's samples as the discriminator sees them: images mapped to [-1, 1]."""
        if self.net.images:
            return batch[IMAGE] * 2 - 1
        return batch[POINT]

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> tuple[list, list]:
        epochs = max(self.trainer.max_epochs or 1, 1)
        # one discriminator step a batch; a generator step after every n_critic of them,
        # counted over the whole run (d_steps): total // n_critic generator steps
        d_total = max(int(self.trainer.estimated_stepping_batches), 1)
        g_total = d_total // self.hparams.n_critic
        d_opt, d_sched = optimizer_with_schedule(self, self.discriminator, self.d_optim,
                                                 "d_optim", d_total / epochs)  # fmt: skip
        g_opt, g_sched = optimizer_with_schedule(self, self.generator_net, self.g_optim,
                                                 "g_optim", g_total / epochs)  # fmt: skip
        if self.hparams.clip is not None:
            clip_after_step(d_opt, self.discriminator, self.hparams.clip)
        # a constant rate without warm-up (each paper's default) has the factor 1 at every step:
        # its scheduler is not stepped (a call a step less), as a plain loop would have none
        self._schedules_vary = tuple(schedule_varies(c) for c in (self.d_optim, self.g_optim))
        return [d_opt, g_opt], [d_sched, g_sched]

    def on_train_start(self) -> None:
        # Python mirrors of the step buffers: the rhythm of the steps needs no device sync
        self._d, self._g = int(self.d_steps), int(self.g_steps)

    def on_train_epoch_start(self) -> None:
        self._means = EpochMeans()

    def discriminator_step(self, real: Tensor) -> dict[str, Tensor]:
        """One discriminator (critic) step on ``real`` against as many fresh fakes."""
        hp, disc = self.hparams, self.discriminator
        d_opt = self.optimizers()[0]
        net = self.generator_net
        with torch.no_grad():
            fake = net.raw(net.sample_prior(len(real)))
        d_real, d_fake = disc(real), disc(fake)
        d_loss = discriminator_loss(hp.loss, d_real, d_fake)
        values = {"d_loss": d_loss.detach(), "d_real": d_real.detach().mean(),
                  "d_fake": d_fake.detach().mean()}  # fmt: skip
        total = d_loss
        if hp.gp_weight > 0:
            gp = gradient_penalty(disc, real, fake)
            total = d_loss + hp.gp_weight * gp
            values["gp"] = gp.detach()
        if hp.loss == "wasserstein":
            values["wasserstein"] = -d_loss.detach()
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        d_opt.step()
        if self._schedules_vary[0]:
            self.lr_schedulers()[0].step()
        self._losses.append(total.detach())
        self.d_steps.add_(1)  # in place: no nn.Module.__setattr__ (about 15 us) a step
        self._d += 1
        return values

    def generator_step(self, n: int) -> dict[str, Tensor]:
        """One generator step on ``n`` fresh latents, then the EMA update."""
        g_opt, disc = self.optimizers()[1], self.discriminator
        net = self.generator_net
        disc.requires_grad_(False)  # no gradients for D's weights here
        try:
            fake = net.raw(net.sample_prior(n))
            g_loss = generator_loss(self.hparams.loss, disc(fake))
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            g_opt.step()
        finally:
            disc.requires_grad_(True)
        if self._schedules_vary[1]:
            self.lr_schedulers()[1].step()
        self._losses.append(g_loss.detach())
        self.g_steps.add_(1)
        self._g += 1
        if self.train_net is not None:
            ema_update_(self.net, self.train_net, self.hparams.ema)
        return {"g_loss": g_loss.detach()}

    def on_before_backward(self, loss: Tensor) -> None:
        """Nothing per backward: :meth:`training_step` checks the batch's losses at once."""

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        real = self.to_model(batch)
        self._losses.clear()
        values = self.discriminator_step(real)
        if self._d % self.hparams.n_critic == 0:
            values |= self.generator_step(len(real))
        # the base's non-finite loss check (a TrainingError), once a batch on the losses of its
        # steps: one device sync instead of one a backward. A non-finite loss stops the run in
        # the batch it appears, before any checkpoint could keep its update
        super().on_before_backward(torch.stack(self._losses))
        self._means.add(values, len(real))
        if self._means.epoch_done(self, batch_idx):
            steps = {"d_steps": float(self._d), "g_steps": float(self._g)}
            self._means.log(self, "train", ("d_loss", "g_loss"), steps)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The discriminator's (critic's) raw score of every sample (``score``)."""
        return {"score": self(batch).float()}


def check_gan_options(
    generator: str, latent_size: int, width: int, discriminator_norm: str, hidden: int,
    depth: int, loss: str, n_critic: int, clip: float | None, gp_weight: float,
    ema: float | None, features: str | None, eval_samples: int, kid_subset_size: int, grid: int,
) -> None:  # fmt: skip
    """GANTask's options, each refused in one line naming ``model.<option>``."""
    check_gan_loss(loss, "model.loss")
    choices = {"generator": (generator, ("dcgan", "mlp")),
               "discriminator_norm": (discriminator_norm, ("batch", "layer", "instance", "none"))}  # fmt: skip
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"model.{name} must be one of {', '.join(allowed)}, got {value!r}")
    positive = {"latent_size": (latent_size, 1), "width": (width, 1), "hidden": (hidden, 1),
                "n_critic": (n_critic, 1), "eval_samples": (eval_samples, 1),
                "kid_subset_size": (kid_subset_size, 2), "grid": (grid, 1)}  # fmt: skip
    for name, (value, low) in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"model.{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"model.depth must be an integer >= 0 (hidden layers), got {depth!r}")
    if clip is not None and not (isinstance(clip, int | float) and 0 < clip < float("inf")):
        raise ConfigError(f"model.clip must be a finite number > 0 (the clipping bound c) or "
                          f"null, got {clip!r}")  # fmt: skip
    if not (isinstance(gp_weight, int | float) and 0 <= gp_weight < float("inf")):
        raise ConfigError(f"model.gp_weight must be a finite number >= 0, got {gp_weight!r}")
    if ema is not None and not (isinstance(ema, int | float) and 0 < ema < 1):
        raise ConfigError(f"model.ema must be a decay in (0, 1) (e.g. 0.999) or null, got {ema!r}")
    if loss == "wasserstein" and clip is None and gp_weight == 0:
        raise ConfigError(
            "model.loss wasserstein needs a Lipschitz critic: set --model.clip 0.01 (WGAN, "
            "Arjovsky et al.) or --model.gp_weight 10 (WGAN-GP, Gulrajani et al.)"
        )
    if gp_weight > 0 and generator == "dcgan" and discriminator_norm == "batch":
        raise ConfigError(
            "model.gp_weight > 0 with a batch-norm critic: the gradient penalty is per sample and "
            "batch norm mixes the samples (Gulrajani et al. 2017, sec. 4): use "
            "--model.discriminator_norm layer (or none)"
        )
    if features is not None and kid_subset_size > eval_samples:
        raise ConfigError(
            f"model.kid_subset_size {kid_subset_size} exceeds model.eval_samples "
            f"{eval_samples}: KID subsets are drawn from the generated samples"
        )
    if features is not None and generator != "dcgan":
        raise ConfigError("model.features (FID, KID, class coverage) needs images: "
                          "--model.generator dcgan")  # fmt: skip
    # options the other generator does not read: refused when set, not silently ignored
    unused = {"mlp": {"width": (width, 64), "discriminator_norm": (discriminator_norm, "batch"),
                      "grid": (grid, 64)},
              "dcgan": {"hidden": (hidden, 512), "depth": (depth, 3)}}[generator]  # fmt: skip
    for name, (value, default) in unused.items():
        if value != default:
            raise ConfigError(f"model.{name} has no effect with --model.generator {generator}; "
                              f"leave it at its default ({default!r})")  # fmt: skip
