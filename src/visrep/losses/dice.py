"""Soft Dice loss for dense classification (Milletari et al., V-Net, 3DV 2016, Eq. 1).

For each class ``c``: ``D_c = 2 sum_i p_ic g_ic / (sum_i p_ic^2 + sum_i g_ic^2)`` over the pixels
of the batch that are not ignored, with ``p`` the softmax probabilities and ``g`` the one-hot
target; the loss is ``1 - mean_c D_c`` over the classes present in the target or the prediction
(a class absent from both would give 0/0 and is left out, as ``eps`` alone would count it as
perfect).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ShapeError


def dice_loss(
    logits: Tensor, target: Tensor, ignore_index: int | None = None, eps: float = 1e-6
) -> Tensor:
    """``1 - mean_c D_c`` of softmax(``logits``) against class ids ``target``.

    Args:
        logits: ``(B, L, H, W)`` scores.
        target: ``(B, H, W)`` class ids in ``[0, L)``, or ``ignore_index``.
        ignore_index: target value of pixels that do not count.
        eps: keeps the ratio finite when a class has tiny mass.

    Returns:
        A scalar in ``[0, 1]``.

    >>> t = torch.tensor([[[0, 1], [1, 1]]])
    >>> perfect = 50.0 * F.one_hot(t, 2).permute(0, 3, 1, 2).float()
    >>> float(dice_loss(perfect, t)) < 1e-6
    True
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ShapeError(
            f"dice_loss: logits (B, L, H, W) and target (B, H, W), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    n = logits.shape[1]
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target))
    p = logits.softmax(1) * valid[:, None]
    g = F.one_hot(t, n).permute(0, 3, 1, 2).to(p.dtype) * valid[:, None]
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    denom = (p * p).sum(dims) + (g * g).sum(dims)
    present = g.sum(dims) + p.detach().sum(dims) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if bool(present.any()) else logits.sum() * 0


class DiceLoss(nn.Module):
    """Module form of :func:`dice_loss`."""

    def __init__(self, ignore_index: int | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return dice_loss(logits, target, self.ignore_index, self.eps)
