"""Robustness measures of a classifier under attack (seed 001, seed 004).

The attacks are :mod:`visrep.attacks`; this module measures with them: accuracy under an attack
(:func:`attack_accuracy`), DeepFool's robustness ``rho_adv = mean ||r(x)||_2 / ||x||_2``
(Moosavi-Dezfooli et al., CVPR 2016) and the accuracy DeepFool's minimal perturbations allow
at a budget (:func:`deepfool_accuracy`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from visrep.attacks import DeepFoolResult, Norm, perturbation_norms
from visrep.errors import ConfigError, ShapeError

__all__ = ["attack_accuracy", "deepfool_accuracy", "rho_adv"]


def rho_adv(x: Tensor, r: Tensor, mask: Tensor | None = None) -> float:
    """DeepFool's robustness measure ``rho_adv = mean ||r(x)||_2 / ||x||_2`` (DeepFool, CVPR 2016).

    Args:
        x: clean images ``(B, ...)``.
        r: their perturbations ``(B, ...)``.
        mask: ``(B,)`` booleans selecting the samples to average (e.g. DeepFool's ``success``);
            ``None``: all.

    >>> round(rho_adv(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.5, 0.0], [0.0, 0.3]])), 6)
    0.2
    """
    if r.shape != x.shape:
        raise ShapeError(f"r must have the shape of x {tuple(x.shape)}, got {tuple(r.shape)}")
    ratio = perturbation_norms(r) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    if mask is not None:
        ratio = ratio[mask]
    return float(ratio.mean()) if ratio.numel() else float("nan")


def deepfool_accuracy(result: DeepFoolResult, y: Tensor, eps: float, norm: Norm = "l2") -> float:
    """Accuracy when DeepFool may use perturbations of norm at most ``eps``.

    A sample counts as correct when the clean prediction is right and DeepFool's perturbation is
    either unsuccessful or larger than ``eps``: an upper bound on the robust accuracy at ``eps``.
    """
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"eps must be >= 0, got {eps}")
    fooled = result.success & (perturbation_norms(result.r, norm) <= eps)
    return int(((result.label == y) & ~fooled).sum()) / max(len(y), 1)


def attack_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Callable[[Tensor, Tensor], Tensor],
    batch_size: int = 256,
) -> float:
    """Accuracy of ``model`` on ``attack(x, y)``, run in batches of ``batch_size``."""
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        with torch.no_grad():
            correct += int((model(attack(xb, yb)).argmax(1) == yb).sum())
    return correct / max(len(x), 1)
