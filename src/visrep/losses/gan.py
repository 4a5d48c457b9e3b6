"""Adversarial losses: the GAN minimax game and its variants, the Lipschitz constraints of the
Wasserstein critic, and CycleGAN's reconstruction terms (seed 001).

Every loss takes raw discriminator scores (logits for the minimax game, unbounded values for
the critic and LSGAN) of any shape, ``(B,)`` for a DCGAN or ``(B, 1, h, w)`` for a PatchGAN,
and averages over all of their elements; the probability ``D(x) = sigmoid(score)`` is never
formed, so ``log D`` is ``-softplus(-score)`` and ``log(1 - D)`` is ``-softplus(score)``,
exact for any score. Each is a function (the source of truth) and a thin module:

- Goodfellow et al. 2014, eq. 1 and algorithm 1: :func:`d_minimax_loss` (the discriminator's
  ascent written as a descent), :func:`g_minimax_loss` (the saturating generator loss) and
  :func:`g_nonsaturating_loss` (their sec. 3 advice: maximise ``log D(G(z))``);
- Arjovsky et al. 2017, algorithm 1: :func:`critic_loss`, :func:`wasserstein_generator_loss`,
  and weight clipping (:func:`clip_weights_`, :func:`clip_after_step`);
- Gulrajani et al. 2017, eq. 3 and algorithm 1: :func:`gradient_penalty`;
- Mao et al. 2017, eq. 2: :func:`lsgan_d_loss`, :func:`lsgan_g_loss`;
- Zhu et al. 2017, eq. 2 and sec. 5.2: :func:`cycle_consistency_loss`, :func:`identity_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "GAN_LOSSES",
    "CycleConsistencyLoss",
    "DiscriminatorLoss",
    "GANLoss",
    "GeneratorLoss",
    "GradientPenalty",
    "IdentityLoss",
    "check_gan_loss",
    "clip_after_step",
    "clip_weights_",
    "critic_loss",
    "cycle_consistency_loss",
    "d_minimax_loss",
    "discriminator_loss",
    "g_minimax_loss",
    "g_nonsaturating_loss",
    "generator_loss",
    "gradient_penalty",
    "identity_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "wasserstein_generator_loss",
]

GANLoss = Literal["minimax", "nonsaturating", "wasserstein", "lsgan"]
GAN_LOSSES: tuple[str, ...] = get_args(GANLoss)


def _check_pair(name: str, real: Tensor, fake: Tensor) -> None:
    """ShapeError unless both score tensors are non-empty (their shapes may differ: a batch of
    real and one of fake samples need not have the same size)."""
    if real.numel() == 0 or fake.numel() == 0:
        raise ShapeError(
            f"{name}: real scores {tuple(real.shape)} and fake scores {tuple(fake.shape)} "
            "must both be non-empty"
        )


def _check_same(name: str, a: Tensor, b: Tensor, what: tuple[str, str]) -> None:
    if a.shape != b.shape or a.numel() == 0:
        raise ShapeError(
            f"{name}: {what[0]} {tuple(a.shape)} and {what[1]} {tuple(b.shape)} must have the "
            "same non-empty shape"
        )


# -- Goodfellow et al. 2014 ---------------------------------------------------------------------
def d_minimax_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The discriminator's loss ``-(E[log D(x)] + E[log(1 - D(G(z)))])`` (Goodfellow et al.
    2014, eq. 1; algorithm 1 ascends the bracket, this descends its negative). The
    non-saturating game trains the discriminator with the same loss.

    Args:
        real: scores (logits) of data samples, any shape.
        fake: scores of generated samples, any shape.

    Returns:
        A scalar: the binary cross-entropy of real as 1 and fake as 0, each term averaged.

    >>> d_minimax_loss(torch.zeros(3), torch.zeros(2))  # D = 1/2 everywhere: 2 log 2
    tensor(1.3863)
    """
    _check_pair("d_minimax_loss", real, fake)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax_loss(fake: Tensor) -> Tensor:
    """The generator's side of eq. 1, ``E[log(1 - D(G(z)))]`` (Goodfellow et al. 2014,
    algorithm 1). It saturates: where the discriminator rejects samples confidently
    (``D(G(z)) -> 0``) its gradient vanishes (their sec. 3), hence :func:`g_nonsaturating_loss`.

    >>> g_minimax_loss(torch.zeros(4))  # log(1/2)
    tensor(-0.6931)
    """
    if fake.numel() == 0:
        raise ShapeError("g_minimax_loss: fake scores must be non-empty")
    return -F.softplus(fake).mean()


def g_nonsaturating_loss(fake: Tensor) -> Tensor:
    """``-E[log D(G(z))]``: the generator maximises ``log D(G(z))`` instead of minimising
    ``log(1 - D(G(z)))`` (Goodfellow et al. 2014, sec. 3): the same fixed point, strong
    gradients early in training.

    >>> g_nonsaturating_loss(torch.zeros(4))
    tensor(0.6931)
    """
    if fake.numel() == 0:
        raise ShapeError("g_nonsaturating_loss: fake scores must be non-empty")
    return F.softplus(-fake).mean()


# -- Arjovsky et al. 2017 -----------------------------------------------------------------------
def critic_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``E[f_w(G(z))] - E[f_w(x)]``: the negative of the Kantorovich-Rubinstein estimate of
    ``W(P_r, P_theta)`` that the critic maximises (Arjovsky et al. 2017, eq. 3 and algorithm 1
    line 5, written as a descent).

    >>> critic_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0]))
    tensor(-3.)
    """
    _check_pair("critic_loss", real, fake)
    return fake.mean() - real.mean()


def wasserstein_generator_loss(fake: Tensor) -> Tensor:
    """``-E[f_w(G(z))]`` (Arjovsky et al. 2017, algorithm 1 line 10).

    >>> wasserstein_generator_loss(torch.tensor([1.0, 2.0]))
    tensor(-1.5000)
    """
    if fake.numel() == 0:
        raise ShapeError("wasserstein_generator_loss: fake scores must be non-empty")
    return -fake.mean()


def _check_clip(c: float, option: str) -> float:
    if not (isinstance(c, int | float) and 0 < c < float("inf")):
        raise ConfigError(f"{option} must be a finite number > 0 (the clipping bound c), got {c!r}")
    return float(c)


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> None:
    """Clamp every parameter of ``module`` to ``[-c, c]`` in place: ``w <- clip(w, -c, c)``
    (Arjovsky et al. 2017, algorithm 1 line 7), which keeps the critic in a compact set of
    K-Lipschitz functions.

    >>> lin = nn.Linear(3, 2)
    >>> clip_weights_(lin, 0.01)
    >>> bool(lin.weight.abs().max() <= 0.01)
    True
    """
    c = _check_clip(c, "clip")
    for p in module.parameters():
        p.clamp_(-c, c)


def clip_after_step(
    optimizer: torch.optim.Optimizer, module: nn.Module, c: float
) -> RemovableHandle:
    """Clip ``module``'s parameters to ``[-c, c]`` after every ``optimizer.step()``, through
    :meth:`torch.optim.Optimizer.register_step_post_hook` (Arjovsky et al. 2017, algorithm 1:
    the clip follows each critic update). The parameters are also clipped once now, so the
    critic is inside the constraint set from its first evaluation.

    A Lightning ``LightningOptimizer`` shares the wrapped optimizer's hook table, so either may
    be passed.

    Returns:
        The handle; ``handle.remove()`` stops clipping.
    """
    c = _check_clip(c, "clip")
    clip_weights_(module, c)
    return optimizer.register_step_post_hook(lambda opt, args, kwargs: clip_weights_(module, c))


# -- Gulrajani et al. 2017 ----------------------------------------------------------------------
def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    target: float = 1.0,
) -> Tensor:
    """``E[(||grad_xhat D(xhat)||_2 - target)^2]`` on random interpolates (Gulrajani et al.
    2017, eq. 3 and algorithm 1 lines 6-7; the weight lambda is the caller's).

    Each sample gets its own ``eps ~ U[0, 1]``; ``xhat = eps x + (1 - eps) x~`` with the fake
    batch detached (the penalty trains the critic only). A sample's critic value is the mean
    of its scores (one score, or a PatchGAN's map: the value the critic losses average), so
    the penalty keeps that mean 1-Lipschitz. The gradient of the summed per-sample values gives
    every sample's own gradient, as long as the critic treats samples independently (no batch
    norm: their sec. 4); its norm is taken over all non-batch dimensions (every pixel of every
    channel). ``create_graph=True`` keeps the penalty
    differentiable in the critic's parameters.

    Args:
        critic: maps ``(B, ...)`` to scores of any shape with leading dimension ``B``.
        real: data samples ``(B, ...)``.
        fake: generated samples, the same shape.
        generator: draws ``eps`` (on the generator's device, then moved to ``real``'s);
            None draws from torch's global generator on ``real``'s device.
        target: the gradient norm aimed at (1 for a 1-Lipschitz critic).

    Returns:
        A scalar.
    """
    _check_same("gradient_penalty", real, fake, ("real", "fake"))
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    dev = generator.device if generator is not None else real.device
    eps = torch.rand(shape, generator=generator, device=dev, dtype=real.dtype).to(real.device)
    xhat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(xhat)
    if scores.dim() < 1 or scores.shape[0] != real.shape[0]:
        raise ShapeError(
            f"gradient_penalty: the critic gave scores {tuple(scores.shape)} for a batch of "
            f"{real.shape[0]}; expected a leading batch dimension"
        )
    value = scores.flatten(1).mean(1) if scores.dim() > 1 else scores
    (grad,) = torch.autograd.grad(value.sum(), xhat, create_graph=True)
    norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
    return (norm - target).square().mean()


# -- Mao et al. 2017 ----------------------------------------------------------------------------
def lsgan_d_loss(real: Tensor, fake: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """``1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]`` (Mao et al. 2017, eq. 2; with the 0-1
    coding ``a = 0``, ``b = 1`` of their eq. 9, the one CycleGAN uses).

    >>> lsgan_d_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0]))
    tensor(0.7500)
    """
    _check_pair("lsgan_d_loss", real, fake)
    return 0.5 * (real - b).square().mean() + 0.5 * (fake - a).square().mean()


def lsgan_g_loss(fake: Tensor, c: float = 1.0) -> Tensor:
    """``1/2 E[(D(G(z)) - c)^2]`` (Mao et al. 2017, eq. 2).

    >>> lsgan_g_loss(torch.tensor([0.0, 2.0]))
    tensor(0.5000)
    """
    if fake.numel() == 0:
        raise ShapeError("lsgan_g_loss: fake scores must be non-empty")
    return 0.5 * (fake - c).square().mean()


# -- Zhu et al. 2017 ----------------------------------------------------------------------------
def cycle_consistency_loss(x: Tensor, x_rec: Tensor) -> Tensor:
    """``E[||F(G(x)) - x||_1]``, one direction of the cycle loss (Zhu et al. 2017, eq. 2),
    averaged over every element as their implementation does.

    >>> cycle_consistency_loss(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]]))
    tensor(1.)
    """
    _check_same("cycle_consistency_loss", x, x_rec, ("x", "x_rec"))
    return (x_rec - x).abs().mean()


def identity_loss(x: Tensor, same: Tensor) -> Tensor:
    """``E[||G(y) - y||_1]``: a generator fed an image of its own target domain should return it
    (Zhu et al. 2017, sec. 5.2, after Taigman et al. 2017), averaged over every element.

    >>> identity_loss(torch.ones(2, 3), torch.zeros(2, 3))
    tensor(1.)
    """
    _check_same("identity_loss", x, same, ("x", "same"))
    return (same - x).abs().mean()


# -- dispatch on the kind of game ---------------------------------------------------------------
def check_gan_loss(kind: str, option: str = "loss") -> str:
    """``kind`` if it is one of :data:`GAN_LOSSES`, else ConfigError naming ``option``.

    >>> check_gan_loss("hinge", "model.loss")
    Traceback (most recent call last):
    ...
    visrep.errors.ConfigError: model.loss must be one of minimax, nonsaturating, wasserstein, lsgan, got 'hinge'
    """
    if kind not in GAN_LOSSES:
        raise ConfigError(f"{option} must be one of {', '.join(GAN_LOSSES)}, got {kind!r}")
    return kind


def discriminator_loss(kind: GANLoss, real: Tensor, fake: Tensor) -> Tensor:
    """The discriminator's (critic's) loss of game ``kind``: :func:`d_minimax_loss` for minimax
    and nonsaturating, :func:`critic_loss` for wasserstein, :func:`lsgan_d_loss` for lsgan."""
    check_gan_loss(kind)
    if kind == "wasserstein":
        return critic_loss(real, fake)
    if kind == "lsgan":
        return lsgan_d_loss(real, fake)
    return d_minimax_loss(real, fake)


def generator_loss(kind: GANLoss, fake: Tensor) -> Tensor:
    """The generator's loss of game ``kind`` (:func:`g_minimax_loss`,
    :func:`g_nonsaturating_loss`, :func:`wasserstein_generator_loss` or :func:`lsgan_g_loss`)."""
    check_gan_loss(kind)
    fn = {
        "minimax": g_minimax_loss,
        "nonsaturating": g_nonsaturating_loss,
        "wasserstein": wasserstein_generator_loss,
        "lsgan": lsgan_g_loss,
    }[kind]
    return fn(fake)


class DiscriminatorLoss(nn.Module):
    """Module form of :func:`discriminator_loss` for one game ``kind``."""

    def __init__(self, kind: GANLoss = "nonsaturating") -> None:
        super().__init__()
        self.kind = check_gan_loss(kind)

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        return discriminator_loss(self.kind, real, fake)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class GeneratorLoss(nn.Module):
    """Module form of :func:`generator_loss` for one game ``kind``."""

    def __init__(self, kind: GANLoss = "nonsaturating") -> None:
        super().__init__()
        self.kind = check_gan_loss(kind)

    def forward(self, fake: Tensor) -> Tensor:
        return generator_loss(self.kind, fake)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class GradientPenalty(nn.Module):
    """Module form of :func:`gradient_penalty` holding its ``target`` norm."""

    def __init__(self, target: float = 1.0) -> None:
        super().__init__()
        self.target = float(target)

    def forward(
        self,
        critic: Callable[[Tensor], Tensor],
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return gradient_penalty(critic, real, fake, generator, self.target)

    def extra_repr(self) -> str:
        return f"target={self.target}"


class CycleConsistencyLoss(nn.Module):
    """Module form of :func:`cycle_consistency_loss`."""

    def forward(self, x: Tensor, x_rec: Tensor) -> Tensor:
        return cycle_consistency_loss(x, x_rec)


class IdentityLoss(nn.Module):
    """Module form of :func:`identity_loss`."""

    def forward(self, x: Tensor, same: Tensor) -> Tensor:
        return identity_loss(x, same)
