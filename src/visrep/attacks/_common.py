"""What every attack shares: pixel, target and option checks, logits, loss gradients, norms.

Attacks work in pixel space: ``x`` holds images in ``[0, 1]`` and ``model`` maps pixels to
logits (visrep's :class:`~visrep.models.ImageClassifier` normalises inside), so adversarial
images are clamped to ``[0, 1]``. Per-sample gradients come from one backward pass of a sum,
which is exact only when samples do not interact, so ``model`` must be in eval mode (BatchNorm
with batch statistics couples the samples of a batch).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")
TINY = 1e-12  # keeps divisions by a zero gradient finite (the step is then zero)


def check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"x must be a float tensor (B, ...) of pixels, got {shape}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"x must hold pixels in [0, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )


def check_targets(x: Tensor, y: Tensor | None) -> None:
    if y is None:
        return
    if not isinstance(y, Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"y must be integer class indices of shape ({x.shape[0]},), got {shape}")


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def check_eps(eps: float) -> None:
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"eps must be >= 0, got {eps}")


def check_deepfool_options(overshoot: float, max_iter: int, num_candidates: int) -> None:
    if not overshoot >= 0:
        raise ConfigError(f"overshoot must be >= 0, got {overshoot}")
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, got {max_iter}")
    if num_candidates < 2:
        raise ConfigError(f"num_candidates must be >= 2, got {num_candidates}")


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ShapeError(f"model must return logits (B, num_classes), got {tuple(out.shape)}")
    return out


def view(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample ``(B,)`` tensor shaped to broadcast against ``like`` ``(B, ...)``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``grad_x`` of the mean cross-entropy (the mean keeps parity with torchattacks)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(logits_of(model, x), y)
        return torch.autograd.grad(loss, x)[0]


def predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return logits_of(model, x).argmax(1)


def perturbation_norms(r: Tensor, norm: Norm = "l2") -> Tensor:
    """Per-sample L2 or L-inf norm of a perturbation.

    Shape: ``(B, ...) -> (B,)``.

    >>> perturbation_norms(torch.tensor([[3.0, -4.0]]), "l2"), perturbation_norms(torch.tensor([[3.0, -4.0]]), "linf")
    (tensor([5.]), tensor([4.]))
    """
    check_norm(norm)
    flat = r.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)
