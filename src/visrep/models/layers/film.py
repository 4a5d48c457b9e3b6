"""Feature-wise linear modulation (FiLM; Perez et al., "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018; seed 000, "FiLM: Conditioning Layer via Feature Modulation")
and the Gaussian spatial prior of a mask that the spatial modulator of OSMN / ReConvNet turns
into shifts.

``f~_i = gamma_i * f_i + beta_i`` (the seed's equation): per channel ``i``, with ``gamma`` and
``beta`` computed from a conditioning input instead of generating the network's weights. In
video object segmentation (Yang et al. 2018, OSMN; Lattari, Ciccone et al. 2018, ReConvNet) the
scales come from the first frame's object (a visual modulator, per channel) and the shifts from
where the object was in the previous frame (a spatial modulator, per channel AND pixel: a
Gaussian map of the previous mask, scaled and shifted per channel).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.errors import ShapeError

__all__ = ["FiLM", "film", "gaussian_map", "mask_gaussian", "mask_moments"]


def _expand(p: Tensor, x: Tensor, name: str) -> Tensor:
    """``(B, C)`` -> ``(B, C, 1, ..., 1)``; a tensor already with ``x``'s rank is returned as is."""
    if p.dim() == 2:
        p = p.view(*p.shape, *([1] * (x.dim() - 2)))
    if p.dim() != x.dim() or p.shape[:2] != x.shape[:2]:
        raise ShapeError(
            f"film: {name} must be (B, C) = {tuple(x.shape[:2])} or broadcastable "
            f"(B, C, ...) with x's rank, got {tuple(p.shape)} for x {tuple(x.shape)}"
        )
    return p


def film(x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
    """``gamma * x + beta`` per channel (Perez et al. 2018, Eq. 1-2); None leaves that part out.

    Shape: ``x (B, C, *)``; ``gamma``, ``beta`` ``(B, C)`` (one per channel) or ``(B, C, *)``
    (per channel and position, e.g. the spatial modulator's shifts).

    >>> x = torch.ones(1, 2, 2, 2)
    >>> film(x, torch.tensor([[2.0, 3.0]]), torch.tensor([[0.5, -1.0]]))[0, :, 0, 0].tolist()
    [2.5, 2.0]
    """
    out = x
    if gamma is not None:
        out = out * _expand(gamma, x, "gamma")
    if beta is not None:
        out = out + _expand(beta, x, "beta")
    return out


class FiLM(nn.Module):
    """:func:`film` as a module (no parameters: the modulators compute ``gamma`` and ``beta``)."""

    def forward(self, x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
        return film(x, gamma, beta)


def mask_moments(mask: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Mass, centroid and covariance of (soft) masks, in pixel coordinates ``(x, y)``.

    Shape: ``(B, H, W)`` -> mass ``(B,)``, mean ``(B, 2)``, covariance ``(B, 2, 2)`` (of the
    mask as a distribution over pixels; zero where the mask is empty).

    >>> m = torch.zeros(1, 5, 5); m[0, 1:4, 2] = 1
    >>> mass, mu, cov = mask_moments(m)
    >>> mass.item(), mu[0].tolist(), cov[0].diagonal().tolist()
    (3.0, [2.0, 2.0], [0.0, 0.6666666865348816])
    """
    if mask.dim() != 3:
        raise ShapeError(f"mask_moments: masks must be (B, H, W), got {tuple(mask.shape)}")
    _, h, w = mask.shape
    m = mask.float()
    ys = torch.arange(h, dtype=m.dtype, device=m.device)
    xs = torch.arange(w, dtype=m.dtype, device=m.device)
    mass = m.sum((1, 2))
    p = m / mass.clamp(min=eps)[:, None, None]
    px, py = p.sum(1), p.sum(2)  # marginals over x (B, W) and y (B, H)
    mx, my = px @ xs, py @ ys
    dx, dy = xs[None] - mx[:, None], ys[None] - my[:, None]
    vxx, vyy = (px * dx**2).sum(1), (py * dy**2).sum(1)
    vxy = torch.einsum("bhw,bh,bw->b", p, dy, dx)
    cov = torch.stack((torch.stack((vxx, vxy), -1), torch.stack((vxy, vyy), -1)), -2)
    return mass, torch.stack((mx, my), -1), cov


def gaussian_map(mu: Tensor, cov: Tensor, size: tuple[int, int]) -> Tensor:
    """``exp(-(p - mu)^T cov^-1 (p - mu) / 2)`` on the pixel grid ``p = (x, y)``, peak 1.

    Shape: ``mu (B, 2)``, ``cov (B, 2, 2)`` (positive definite) -> ``(B, H, W)``.

    >>> g = gaussian_map(torch.tensor([[2.0, 1.0]]), torch.eye(2)[None], (3, 5))
    >>> g[0, 1, 2].item(), round(g[0, 1, 3].item(), 4)
    (1.0, 0.6065)
    """
    if mu.dim() != 2 or mu.shape[1] != 2 or cov.shape != (mu.shape[0], 2, 2):
        raise ShapeError(
            f"gaussian_map: mu (B, 2) and cov (B, 2, 2) expected, got {tuple(mu.shape)} and "
            f"{tuple(cov.shape)}"
        )
    h, w = size
    inv = torch.linalg.inv(cov)
    ys = torch.arange(h, dtype=cov.dtype, device=cov.device)
    xs = torch.arange(w, dtype=cov.dtype, device=cov.device)
    dx = xs[None, None, :] - mu[:, 0, None, None]  # (B, 1, W)
    dy = ys[None, :, None] - mu[:, 1, None, None]  # (B, H, 1)
    q = (
        inv[:, 0, 0, None, None] * dx**2
        + 2 * inv[:, 0, 1, None, None] * dx * dy
        + inv[:, 1, 1, None, None] * dy**2
    )
    return torch.exp(-0.5 * q)


def mask_gaussian(mask: Tensor, scale: float = 1.0, min_var: float = 1.0) -> Tensor:
    """The Gaussian spatial prior of masks: :func:`gaussian_map` at the mask's centroid ``mu``
    with covariance ``s Sigma + min_var I`` (``Sigma`` the mask's covariance,
    :func:`mask_moments`), peak 1.

    OSMN (Yang et al. 2018, Sec. 3.2) draws a 2-D Gaussian at the previous frame's object
    location and extent; its moments are used here (the full covariance, so an elongated or
    tilted object gives an elongated or tilted prior). ``scale`` widens it (``s``, applied to the
    variance); ``min_var`` keeps a point-like mask from a degenerate covariance. An empty mask
    gives an all-zero map (no prior).

    Shape: ``(B, H, W)`` -> ``(B, H, W)`` float, in ``[0, 1]``.
    """
    mass, mu, cov = mask_moments(mask)
    eye = torch.eye(2, dtype=cov.dtype, device=cov.device)
    g = gaussian_map(mu, cov * scale + eye * min_var, tuple(mask.shape[-2:]))
    return torch.where((mass > 0)[:, None, None], g, torch.zeros_like(g))
