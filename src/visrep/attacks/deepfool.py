"""DeepFool: the smallest L2 perturbation that changes the predicted class (seed 004).

Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: A Simple and Accurate Method to Fool Deep Neural
Networks", CVPR 2016, Algorithm 2 (multi-class, L2). The robustness measure of its experiments,
``rho_adv``, is :func:`visrep.analysis.robustness.rho_adv`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from visrep.attacks._common import (
    TINY,
    check_deepfool_options,
    check_images,
    logits_of,
    predict,
)
from visrep.errors import ShapeError

__all__ = ["DeepFool", "DeepFoolResult", "deepfool"]


@dataclass
class DeepFoolResult:
    """What :func:`deepfool` found for each sample.

    Attributes:
        x_adv: adversarial images ``x + r`` in ``[0, 1]``, ``(B, ...)``.
        r: the perturbation ``x_adv - x`` (overshoot included), ``(B, ...)``.
        iterations: linearisation steps taken, ``(B,)``.
        success: whether ``model(x_adv)`` predicts another class than ``model(x)``, ``(B,)``.
        label: the model's prediction on ``x`` (the ``k_hat(x_0)`` of Algorithm 2), ``(B,)``.
        adv_label: the model's prediction on ``x_adv``, ``(B,)``.
    """

    x_adv: Tensor
    r: Tensor
    iterations: Tensor
    success: Tensor
    label: Tensor
    adv_label: Tensor


def deepfool(
    model: nn.Module,
    x: Tensor,
    overshoot: float = 0.02,
    max_iter: int = 50,
    num_candidates: int = 10,
) -> DeepFoolResult:
    """Multi-class DeepFool: the smallest L2 perturbation that changes the predicted class.

    Algorithm 2 of Moosavi-Dezfooli et al. (CVPR 2016): at ``x_i = x + r_tot`` the classifier is
    linearised, ``w'_k = grad f_k - grad f_{k_hat}``, ``f'_k = f_k - f_{k_hat}``; the closest
    boundary is ``l = argmin_k |f'_k| / ||w'_k||_2`` and the step is
    ``r_i = |f'_l| / ||w'_l||_2^2 w'_l``, ``x_{i+1} = x_i + r_i``. A sample stops when
    the label changes at ``x + (1 + overshoot) r_tot``, the returned adversarial image (checking
    the overshot point, as the authors' code does, makes the label change at the returned image
    the stopping rule). As in the authors' code, only the ``num_candidates`` classes with the
    highest clean logits are candidates. In pixel space ``x_{i+1}`` and the overshot image are
    projected onto ``[0, 1]``. Samples are processed as a batch: each iteration runs, on the
    samples not yet fooled, one forward and ``num_candidates - 1`` backward passes, and one
    forward pass to check the new labels; fooled samples stay frozen.

    Args:
        model: pixels -> logits, in eval mode.
        x: clean images in ``[0, 1]``.
        overshoot: ``eta``: the final perturbation is ``(1 + eta) r_tot``, which pushes the image
            across the boundary that ``x + r_tot`` reaches.
        max_iter: at most this many linearisation steps per sample.
        num_candidates: classes considered (the clean top-k, the predicted class included).

    Returns:
        A :class:`DeepFoolResult`; ``success`` is measured by a final forward pass of ``x_adv``.
    """
    check_images(x)
    check_deepfool_options(overshoot, max_iter, num_candidates)
    x = x.detach()
    with torch.no_grad():
        logits0 = logits_of(model, x)
    if logits0.shape[1] < 2:
        raise ShapeError(f"DeepFool needs at least 2 classes, the model has {logits0.shape[1]}")
    cand = logits0.topk(min(num_candidates, logits0.shape[1]), dim=1).indices  # (B, k)
    label = cand[:, 0]
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0 = x[idx]
        with torch.enable_grad():
            xi = (x0 + r_tot[idx]).requires_grad_(True)
            f = logits_of(model, xi).gather(1, cand[idx])  # (n, k): column 0 is k_hat
            f_diff = f[:, 1:] - f[:, :1]  # f'_k, (n, k - 1)
            k = f_diff.shape[1]
            w = torch.stack(
                [
                    torch.autograd.grad(f_diff[:, j].sum(), xi, retain_graph=j < k - 1)[0]
                    for j in range(k)
                ],
                dim=1,
            ).flatten(2)  # w'_k, (n, k - 1, D)
        f_abs = f_diff.detach().abs()
        w_norm = w.norm(dim=2).clamp_min(TINY)
        rows = torch.arange(len(idx), device=x.device)
        best = (f_abs / w_norm).argmin(1)  # the closest linearised boundary l
        coef = f_abs[rows, best] / w_norm[rows, best] ** 2
        r_i = (coef[:, None] * w[rows, best]).view_as(xi)  # the projection onto it, r_i
        r_tot[idx] = (xi.detach() + r_i).clamp(0, 1) - x0
        x_adv[idx] = (x0 + (1 + overshoot) * r_tot[idx]).clamp(0, 1)
        iterations[idx] += 1
        with torch.no_grad():
            active[idx] = logits_of(model, x_adv[idx]).argmax(1) == label[idx]
    adv_label = predict(model, x_adv)
    return DeepFoolResult(x_adv, x_adv - x, iterations, adv_label != label, label, adv_label)


class DeepFool(nn.Module):
    """:func:`deepfool` with its options held: ``DeepFool(overshoot=0.02)(model, x)``."""

    def __init__(
        self, overshoot: float = 0.02, max_iter: int = 50, num_candidates: int = 10
    ) -> None:
        super().__init__()
        check_deepfool_options(overshoot, max_iter, num_candidates)
        self.overshoot, self.max_iter, self.num_candidates = overshoot, max_iter, num_candidates

    def forward(self, model: nn.Module, x: Tensor) -> DeepFoolResult:
        return deepfool(model, x, self.overshoot, self.max_iter, self.num_candidates)
