"""Batched, vectorised image augmentation: random crop with padding, flip, colour jitter.

Applied to whole batches after they reach the device (GPU-friendly, no per-sample Python work),
with randomness from an explicit ``torch.Generator`` when given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import ShapeError


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentations; all off by default.

    Attributes:
        crop_padding: pad by this many pixels (zeros) and crop back at a random offset (0 = off).
        hflip: flip horizontally with probability 0.5.
        brightness: multiply by a factor drawn uniformly from ``[1 - b, 1 + b]``.
        contrast: blend with the image mean by a factor from ``[1 - c, 1 + c]``.
        saturation: blend with the grey image by a factor from ``[1 - s, 1 + s]`` (RGB only).
    """

    crop_padding: int = 0
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(
            self.crop_padding or self.hflip or self.brightness or self.contrast or self.saturation
        )


def _uniform(
    n: int, low: float, high: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    r = torch.rand(
        n, generator=generator, device=like.device if generator is None else generator.device
    )
    return (low + (high - low) * r).to(like.device, like.dtype)


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad each image by ``padding`` and crop it back to its size at a random offset.

    Shape: ``(B, C, H, W) -> (B, C, H, W)``.

    >>> x = torch.arange(4.0).view(1, 1, 2, 2)
    >>> random_crop(x, 0).equal(x)
    True
    """
    if padding <= 0:
        return x
    B, C, H, W = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    dev = generator.device if generator is not None else x.device
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=dev).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=dev).to(x.device)
    rows = oy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(W, device=x.device)  # (B, W)
    xp = xp.gather(2, rows[:, None, :, None].expand(B, C, H, xp.shape[3]))
    return xp.gather(3, cols[:, None, None, :].expand(B, C, H, W))


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability ``p``. Shape: ``(B, C, H, W)``."""
    flip = _uniform(x.shape[0], 0.0, 1.0, x, generator) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


BT601_LUMA = (0.299, 0.587, 0.114)


def rgb_to_luma(x: Tensor, dim: int = -3) -> Tensor:
    """ITU-R BT.601 luma ``Y' = 0.299 R + 0.587 G + 0.114 B`` of RGB along ``dim`` (kept, size 1).

    The weights of ``cv2.cvtColor(RGB2GRAY)`` and PIL's ``convert("L")`` (torchvision's
    ``rgb_to_grayscale`` uses 0.2989 for R). Computed in ``x``'s floating dtype, unrounded.

    Shape: ``(..., 3, H, W) -> (..., 1, H, W)`` for the default ``dim``.

    >>> round(rgb_to_luma(torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1)).item(), 3)
    124.2
    """
    if x.shape[dim] != 3:
        raise ShapeError(f"rgb_to_luma expects 3 channels along dim {dim}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    shape = [1] * x.ndim
    shape[dim] = 3
    return (x * x.new_tensor(BT601_LUMA).view(shape)).sum(dim, keepdim=True)


def _grey(x: Tensor) -> Tensor:
    return rgb_to_luma(x, 1) if x.shape[1] == 3 else x.mean(1, keepdim=True)


def color_jitter(
    x: Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-image brightness, contrast and saturation jitter (torchvision's definitions, fixed order).

    Shape: ``(B, C, H, W)``, values in ``[0, 1]``; output clamped to ``[0, 1]``.
    """
    B = x.shape[0]
    if brightness > 0:
        f = _uniform(B, 1 - brightness, 1 + brightness, x, generator).view(B, 1, 1, 1)
        x = (x * f).clamp(0, 1)
    if contrast > 0:
        f = _uniform(B, 1 - contrast, 1 + contrast, x, generator).view(B, 1, 1, 1)
        m = _grey(x).mean((1, 2, 3), keepdim=True)
        x = (m + f * (x - m)).clamp(0, 1)
    if saturation > 0 and x.shape[1] == 3:
        f = _uniform(B, 1 - saturation, 1 + saturation, x, generator).view(B, 1, 1, 1)
        g = _grey(x)
        x = (g + f * (x - g)).clamp(0, 1)
    return x


def augment_batch(
    x: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> Tensor:
    """Apply the augmentations of ``cfg`` to a batch of images in ``[0, 1]``."""
    if cfg.crop_padding:
        x = random_crop(x, cfg.crop_padding, generator)
    if cfg.hflip:
        x = random_hflip(x, 0.5, generator)
    if cfg.brightness or cfg.contrast or cfg.saturation:
        x = color_jitter(x, cfg.brightness, cfg.contrast, cfg.saturation, generator)
    return x
