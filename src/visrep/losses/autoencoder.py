"""Autoencoder objectives: the reconstruction loss of eq. 1 (seed 001) and the "additional
constraints" it needs: an L1 penalty for sparse codes, and input corruption for the denoising
criterion (Vincent, Larochelle, Bengio and Manzagol, ICML 2008; Vincent et al., JMLR 2010).

Each is a function (the source of truth) and a module holding its options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "NOISES",
    "Corrupt",
    "L1Sparsity",
    "Noise",
    "ReconstructionLoss",
    "check_noise",
    "corrupt",
    "l1_sparsity",
    "reconstruction_loss",
]

Noise = Literal["gaussian", "masking", "salt_pepper"]
NOISES = ("gaussian", "masking", "salt_pepper")


def reconstruction_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """``||x' - x||^2`` per sample: eq. 1's term, summed over every pixel of each sample.

    Args:
        x_hat: reconstructions ``(B, ...)``.
        x: targets of the same shape (for the denoising criterion: the clean inputs).

    Returns:
        ``(B,)``.

    >>> reconstruction_loss(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
    tensor([4., 4.])
    """
    if x_hat.shape != x.shape or x.dim() < 1:
        raise ShapeError(
            f"reconstruction_loss: x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have "
            "the same (B, ...) shape"
        )
    return (x_hat - x).square().flatten(1).sum(1) if x.dim() > 1 else (x_hat - x).square()


def l1_sparsity(code: Tensor) -> Tensor:
    """``||code||_1`` per sample, the sparsity penalty on codes (Ng's sparse-autoencoder notes;
    Goodfellow, Bengio and Courville 2016, sec. 14.2.1).

    Shape: ``(B, D) -> (B,)``.

    >>> l1_sparsity(torch.tensor([[1.0, -2.0], [0.0, 0.5]]))
    tensor([3.0000, 0.5000])
    """
    if code.dim() != 2:
        raise ShapeError(f"l1_sparsity expects codes (B, D), got {tuple(code.shape)}")
    return code.abs().sum(1)


def check_noise(noise: str | None, level: float, option: str = "noise") -> None:
    """``ConfigError`` unless ``noise`` is None or one of :data:`NOISES` and ``level`` fits it
    (a fraction in [0, 1] for masking and salt-and-pepper, a standard deviation >= 0 for
    Gaussian noise)."""
    if noise is None:
        return
    if noise not in NOISES:
        raise ConfigError(f"{option} must be one of {', '.join(NOISES)} or null, got {noise!r}")
    if noise == "gaussian" and not level >= 0:
        raise ConfigError(f"{option}_level (Gaussian standard deviation) must be >= 0, got {level}")
    if noise != "gaussian" and not 0 <= level <= 1:
        raise ConfigError(f"{option}_level ({noise} fraction) must be in [0, 1], got {level}")


def _chosen(x: Tensor, fraction: float, generator: torch.Generator | None) -> Tensor:
    """A mask of exactly ``round(fraction * d)`` components per sample, chosen uniformly."""
    b, d = len(x), x[0].numel()
    k = round(fraction * d)
    u = _draw(torch.rand, (b, d), x, generator)
    # the components with the k smallest uniforms of each row: a uniformly random k-subset
    idx = u.topk(k, dim=1, largest=False).indices
    return torch.zeros(b, d, dtype=torch.bool, device=x.device).scatter_(1, idx, True).view_as(x)


def _draw(
    draw: Callable[..., Tensor], shape: Sequence[int], x: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``draw(shape)`` (``torch.rand`` / ``torch.randn``) on ``x``'s device from torch's global
    generator of that device, or on ``generator``'s device (then moved to ``x``'s)."""
    dev = generator.device if generator is not None else x.device
    return draw(tuple(shape), generator=generator, device=dev).to(x.device)


def corrupt(
    x: Tensor, noise: Noise, level: float, generator: torch.Generator | None = None
) -> Tensor:
    """The corrupted input ``x~ ~ q_D(x~ | x)`` of a denoising autoencoder (Vincent et al. 2008).

    - ``masking``: a fixed number ``round(level * d)`` of the ``d`` components (pixels times
      channels) of each sample, chosen at random, forced to 0 (Vincent et al. 2008, sec. 2.3);
    - ``salt_pepper``: as many components set to 0 or 1 (each with probability 1/2, the
      minimum and maximum of pixels in [0, 1]; Vincent et al. 2010, sec. 4.2);
    - ``gaussian``: additive isotropic noise ``N(0, level^2)`` (Vincent et al. 2010), not clipped.

    The denoising loss compares the reconstruction of ``corrupt(x)`` with the clean ``x``.
    Without a generator the noise is drawn on ``x``'s device (torch's global generator there:
    no host draw copied to the accelerator each step); with one, on the generator's device, so
    a CPU generator gives the same noise for inputs on any device.

    Args:
        x: images ``(B, ...)`` in [0, 1].
        noise: ``masking``, ``salt_pepper`` or ``gaussian``.
        level: the fraction of components (masking, salt-and-pepper) or the standard deviation.
        generator: the random generator (None: torch's global one).

    Returns:
        A new tensor shaped like ``x``; ``x`` is not modified.

    >>> x = torch.ones(2, 1, 4, 4)
    >>> (corrupt(x, "masking", 0.25) == 0).flatten(1).sum(1)
    tensor([4, 4])
    """
    check_noise(noise, level)
    if x.dim() < 2:
        raise ShapeError(f"corrupt expects a batch (B, ...), got {tuple(x.shape)}")
    if noise == "gaussian":
        return x + level * _draw(torch.randn, x.shape, x, generator).to(x.dtype)
    mask = _chosen(x, level, generator)
    if noise == "masking":
        return x.masked_fill(mask, 0.0)
    salt = _draw(torch.rand, x.shape, x, generator) < 0.5
    return torch.where(mask, salt.to(x.dtype), x)


class ReconstructionLoss(nn.Module):
    """:func:`reconstruction_loss` averaged over the batch (``mean``) or summed as eq. 1 (``sum``)."""

    def __init__(self, reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be mean or sum, got {reduction!r}")
        self.reduction = reduction

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        per_sample = reconstruction_loss(x_hat, x)
        return per_sample.mean() if self.reduction == "mean" else per_sample.sum()


class L1Sparsity(nn.Module):
    """``weight`` times the batch mean of :func:`l1_sparsity`."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not weight >= 0:
            raise ConfigError(f"sparsity weight must be >= 0, got {weight}")
        self.weight = weight

    def forward(self, code: Tensor) -> Tensor:
        return self.weight * l1_sparsity(code).mean()


class Corrupt(nn.Module):
    """:func:`corrupt` with its options; corrupts in training mode only (identity in eval).

    Args:
        noise: ``masking``, ``salt_pepper`` or ``gaussian``.
        level: the fraction of components or the standard deviation.
    """

    def __init__(self, noise: Noise, level: float) -> None:
        super().__init__()
        check_noise(noise, level)
        self.noise, self.level = noise, level

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return corrupt(x, self.noise, self.level, generator) if self.training else x

    def extra_repr(self) -> str:
        return f"{self.noise}, level={self.level}"
