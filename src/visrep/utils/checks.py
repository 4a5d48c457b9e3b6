"""Input checks shared by every stage: one-line ``ShapeError``s naming the argument."""

from __future__ import annotations

from torch import Tensor

from visrep.errors import ShapeError


def check_images(x: Tensor, name: str = "images") -> None:
    """Raise :class:`~visrep.errors.ShapeError` unless ``x`` is a batch of images ``(B, C, H, W)``."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{name} must be images of shape (B, C, H, W), got {shape}")
