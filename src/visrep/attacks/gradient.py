"""Gradient attacks in an L-inf or L2 ball: FGSM and PGD (seed 001, seed 004).

- FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
  ICLR 2015, Sec. 4: ``x + eps sign(grad_x J(theta, x, y))``; ``norm="l2"`` is the fast gradient
  method with the L2-normalised gradient (Miyato et al., ICLR 2017).
- PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018,
  Sec. 2.1: ``x_{t+1} = Pi_{x+S}(x_t + alpha sign(grad_x L))`` for the L-inf ball, steepest ascent
  with the normalised gradient for the L2 ball; optional uniform random start inside the ball.

Both are batched over samples; ``model`` must be in eval mode (see :mod:`visrep.attacks._common`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.attacks._common import (
    TINY,
    Norm,
    check_eps,
    check_images,
    check_norm,
    check_targets,
    loss_grad,
    predict,
    view,
)
from visrep.errors import ConfigError

__all__ = ["FGSM", "PGD", "fgsm", "pgd"]


def fgsm(
    model: nn.Module, x: Tensor, y: Tensor | None = None, eps: float = 0.03, norm: Norm = "linf"
) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015, Sec. 4), clamped to ``[0, 1]``.

    Args:
        model: pixels -> logits, in eval mode.
        x: clean images in ``[0, 1]``.
        y: labels; ``None`` attacks the model's own predictions (avoids label leaking,
            Kurakin et al. 2017).
        eps: the budget: L-inf ``eps sign(g)``, or L2 ``eps g / ||g||_2``.
        norm: ``"linf"`` (FGSM) or ``"l2"`` (fast gradient method).

    Returns:
        Adversarial images, same shape as ``x``. Shape: ``(B, ...)``.
    """
    check_images(x)
    check_targets(x, y)
    check_eps(eps)
    check_norm(norm)
    y = predict(model, x) if y is None else y
    g = loss_grad(model, x, y)
    step = g.sign() if norm == "linf" else g / view(g.flatten(1).norm(dim=1) + 1e-10, g)
    return (x + eps * step).clamp(0, 1).detach()


def _random_start(x: Tensor, eps: float, norm: Norm, generator: torch.Generator | None) -> Tensor:
    """A uniform sample of the ``eps`` ball around ``x`` (Madry et al. 2018), clamped to [0, 1]."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:  # direction uniform on the sphere, radius ~ eps u^(1/d): uniform in the ball's volume
        u = torch.empty_like(x).normal_(generator=generator)
        u = u / view(u.flatten(1).norm(dim=1).clamp_min(TINY), u)
        d = x[0].numel()
        radius = eps * torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device) ** (
            1 / d
        )
        delta = u * view(radius, u)
    return (x + delta).clamp(0, 1)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    eps: float = 0.03,
    step_size: float | None = None,
    steps: int = 10,
    norm: Norm = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent on the loss (Madry et al. 2018, Sec. 2.1), in an L-inf or L2 ball.

    Each step ascends the cross-entropy (``alpha sign(g)`` for L-inf, ``alpha g / ||g||_2`` for
    L2), projects onto the ``eps`` ball around ``x`` and clamps to ``[0, 1]``.

    Args:
        model: pixels -> logits, in eval mode.
        x: clean images in ``[0, 1]``.
        y: labels; ``None`` attacks the model's own predictions.
        eps: radius of the ball.
        step_size: ``alpha``; default ``2.5 eps / steps``, so the boundary of the ball can be
            reached from any start.
        steps: number of iterations.
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform sample of the ball instead of ``x``.
        generator: random generator of the start (``None``: torch's global one).

    Returns:
        Adversarial images with ``||x_adv - x|| <= eps``. Shape: ``(B, ...)``.
    """
    check_images(x)
    check_targets(x, y)
    check_eps(eps)
    check_norm(norm)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    if not alpha >= 0:
        raise ConfigError(f"step_size must be >= 0, got {step_size}")
    y = predict(model, x) if y is None else y
    x = x.detach()
    adv = _random_start(x, eps, norm, generator) if random_start and eps > 0 else x.clone()
    for _ in range(steps):
        g = loss_grad(model, adv, y)
        if norm == "linf":
            adv = adv + alpha * g.sign()
            delta = (adv - x).clamp(-eps, eps)
        else:
            adv = adv + alpha * (g / view(g.flatten(1).norm(dim=1) + 1e-10, g))
            delta = adv - x
            scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(TINY)).clamp(max=1.0)
            delta = delta * view(scale, delta)
        adv = (x + delta).clamp(0, 1)
    return adv.detach()


class FGSM(nn.Module):
    """:func:`fgsm` with its options held: ``FGSM(eps=0.1)(model, x, y)``."""

    def __init__(self, eps: float = 0.03, norm: Norm = "linf") -> None:
        super().__init__()
        check_eps(eps)
        check_norm(norm)
        self.eps, self.norm = eps, norm

    def forward(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        return fgsm(model, x, y, self.eps, self.norm)


class PGD(nn.Module):
    """:func:`pgd` with its options held: ``PGD(eps=0.1, steps=20)(model, x, y)``."""

    def __init__(
        self,
        eps: float = 0.03,
        step_size: float | None = None,
        steps: int = 10,
        norm: Norm = "linf",
        random_start: bool = True,
    ) -> None:
        super().__init__()
        check_eps(eps)
        check_norm(norm)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.norm, self.random_start = norm, random_start

    def forward(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return pgd(
            model,
            x,
            y,
            self.eps,
            self.step_size,
            self.steps,
            self.norm,
            self.random_start,
            generator,
        )
