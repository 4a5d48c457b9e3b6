"""Per-channel input normalisation kept inside the model.

Keeping ``(x - mean) / std`` as the model's first layer means checkpoints carry their own
statistics: prediction, attacks and interpretation all work in pixel space ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.errors import ShapeError


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Standardise each channel: ``(x - mean[c]) / std[c]``.

    Shape: x ``(B, C, ...)``, mean and std ``(C,)``.

    >>> normalize(torch.ones(1, 2, 1, 1), torch.tensor([0.5, 1.0]), torch.tensor([0.5, 2.0])).flatten()
    tensor([1., 0.])
    """
    if x.dim() < 2 or x.shape[1] != mean.numel():
        raise ShapeError(
            f"normalize: input has shape {tuple(x.shape)}, expected (B, {mean.numel()}, ...)"
        )
    view = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(view)) / std.view(view)


class Normalize(nn.Module):
    """Module form of :func:`normalize`; statistics are buffers that follow the device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ShapeError(
                f"Normalize: need equal-length mean/std with std > 0, got {mean}, {std}"
            )
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return normalize(x, self.mean, self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
