"""Paths through a latent space: the interpolations that show what a generator learned between
two samples (seed 001, "Generative Adversarial Networks": walking the latent space)."""

from __future__ import annotations

import torch
from torch import Tensor

from visrep.errors import ShapeError

__all__ = ["interpolate_latents"]


def interpolate_latents(a: Tensor, b: Tensor, steps: int, spherical: bool = True) -> Tensor:
    """``steps`` latents from ``a`` to ``b`` (both ``(R, D)``), ends included: ``(R, steps, D)``.

    ``spherical`` interpolates along the great circle (slerp, Shoemake 1985), as White (2016,
    "Sampling generative networks") advises for Gaussian latents: in high dimension a Gaussian
    sample lies near the sphere of radius ``sqrt(D)``, and the chord between two samples passes
    through lower-norm latents the generator never saw; the norm is interpolated linearly. Pairs
    that are (anti)parallel fall back to the straight line.

    >>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    >>> interpolate_latents(a, b, 3)[0, 1]
    tensor([0.7071, 0.7071])
    >>> interpolate_latents(a, b, 3, spherical=False)[0, 1]
    tensor([0.5000, 0.5000])
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ShapeError(f"interpolate_latents: a and b must both be (R, D), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")  # fmt: skip
    if steps < 2:
        raise ShapeError(f"interpolate_latents: steps must be >= 2, got {steps}")
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device).view(1, -1, 1)
    a3, b3 = a[:, None], b[:, None]
    line = a3 + t * (b3 - a3)
    if not spherical:
        return line
    na, nb = a3.norm(dim=-1, keepdim=True), b3.norm(dim=-1, keepdim=True)
    ua, ub = a3 / na.clamp_min(1e-12), b3 / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    ok = sin.abs() > 1e-6
    safe = torch.where(ok, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe
    arc = direction * (na + t * (nb - na))
    return torch.where(ok, arc, line)
