"""Adversarial attacks and robustness measures: FGSM, PGD and DeepFool (seed 001, seed 004).

Every attack works in pixel space: ``x`` holds images in ``[0, 1]`` and ``model`` maps pixels to
logits (visrep's :class:`~visrep.models.ImageClassifier` normalises inside), so adversarial
images are clamped to ``[0, 1]``. Attacks are batched over samples; per-sample gradients come from
one backward pass of a sum, which is exact only when samples do not interact, so ``model`` must
be in eval mode (BatchNorm with batch statistics couples the samples of a batch).

- FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
  ICLR 2015, Sec. 4: ``x + eps sign(grad_x J(theta, x, y))``; ``norm="l2"`` is the fast gradient
  method with the L2-normalised gradient (Miyato et al., ICLR 2017).
- PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018,
  Sec. 2.1: ``x_{t+1} = Pi_{x+S}(x_t + alpha sign(grad_x L))`` for the L-inf ball, steepest ascent
  with the normalised gradient for the L2 ball; optional uniform random start inside the ball.
- DeepFool: Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: A Simple and Accurate Method to Fool
  Deep Neural Networks", CVPR 2016, Algorithm 2 (multi-class, L2), with the robustness measure
  ``rho_adv = mean ||r(x)||_2 / ||x||_2`` used in its experiments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "FGSM",
    "NORMS",
    "PGD",
    "DeepFool",
    "DeepFoolResult",
    "Norm",
    "attack_accuracy",
    "deepfool",
    "deepfool_accuracy",
    "fgsm",
    "perturbation_norms",
    "pgd",
    "rho_adv",
]

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")
_TINY = 1e-12  # keeps divisions by a zero gradient finite (the step is then zero)


# --------------------------------------------------------------------------------------- checks
def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"x must be a float tensor (B, ...) of pixels, got {shape}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"x must hold pixels in [0, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )


def _check_targets(x: Tensor, y: Tensor | None) -> None:
    if y is None:
        return
    if not isinstance(y, Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ShapeError(f"y must be integer class indices of shape ({x.shape[0]},), got {shape}")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _check_eps(eps: float) -> None:
    if not eps >= 0:  # also rejects NaN
        raise ConfigError(f"eps must be >= 0, got {eps}")


def _check_deepfool_options(overshoot: float, max_iter: int, num_candidates: int) -> None:
    if not overshoot >= 0:
        raise ConfigError(f"overshoot must be >= 0, got {overshoot}")
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, got {max_iter}")
    if num_candidates < 2:
        raise ConfigError(f"num_candidates must be >= 2, got {num_candidates}")


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ShapeError(f"model must return logits (B, num_classes), got {tuple(out.shape)}")
    return out


def _view(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample ``(B,)`` tensor shaped to broadcast against ``like`` ``(B, ...)``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``grad_x`` of the mean cross-entropy (the mean keeps parity with torchattacks)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(_logits(model, x), y)
        return torch.autograd.grad(loss, x)[0]


def _predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return _logits(model, x).argmax(1)


def perturbation_norms(r: Tensor, norm: Norm = "l2") -> Tensor:
    """Per-sample L2 or L-inf norm of a perturbation.

    Shape: ``(B, ...) -> (B,)``.

    >>> perturbation_norms(torch.tensor([[3.0, -4.0]]), "l2"), perturbation_norms(torch.tensor([[3.0, -4.0]]), "linf")
    (tensor([5.]), tensor([4.]))
    """
    _check_norm(norm)
    flat = r.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


# ------------------------------------------------------------------------------------- FGSM/PGD
def fgsm(
    model: nn.Module, x: Tensor, y: Tensor | None = None, eps: float = 0.03, norm: Norm = "linf"
) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015, Sec. 4), clamped to ``[0, 1]``.

    Args:
        model: pixels -> logits, in eval mode.
        x: clean images in ``[0, 1]``.
        y: labels; ``None`` attacks the model's own predictions (avoids label leaking,
            Kurakin et al. 2017).
        eps: the budget: L-inf ``eps sign(g)``, or L2 ``eps g / ||g||_2``.
        norm: ``"linf"`` (FGSM) or ``"l2"`` (fast gradient method).

    Returns:
        Adversarial images, same shape as ``x``. Shape: ``(B, ...)``.
    """
    _check_images(x)
    _check_targets(x, y)
    _check_eps(eps)
    _check_norm(norm)
    y = _predict(model, x) if y is None else y
    g = _loss_grad(model, x, y)
    step = g.sign() if norm == "linf" else g / _view(g.flatten(1).norm(dim=1) + 1e-10, g)
    return (x + eps * step).clamp(0, 1).detach()


def _random_start(x: Tensor, eps: float, norm: Norm, generator: torch.Generator | None) -> Tensor:
    """A uniform sample of the ``eps`` ball around ``x`` (Madry et al. 2018), clamped to [0, 1]."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:  # direction uniform on the sphere, radius ~ eps u^(1/d): uniform in the ball's volume
        u = torch.empty_like(x).normal_(generator=generator)
        u = u / _view(u.flatten(1).norm(dim=1).clamp_min(_TINY), u)
        d = x[0].numel()
        radius = eps * torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device) ** (
            1 / d
        )
        delta = u * _view(radius, u)
    return (x + delta).clamp(0, 1)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    eps: float = 0.03,
    step_size: float | None = None,
    steps: int = 10,
    norm: Norm = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent on the loss (Madry et al. 2018, Sec. 2.1), in an L-inf or L2 ball.

    Each step ascends the cross-entropy (``alpha sign(g)`` for L-inf, ``alpha g / ||g||_2`` for
    L2), projects onto the ``eps`` ball around ``x`` and clamps to ``[0, 1]``.

    Args:
        model: pixels -> logits, in eval mode.
        x: clean images in ``[0, 1]``.
        y: labels; ``None`` attacks the model's own predictions.
        eps: radius of the ball.
        step_size: ``alpha``; default ``2.5 eps / steps``, so the boundary of the ball can be
            reached from any start.
        steps: number of iterations.
        norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform sample of the ball instead of ``x``.
        generator: random generator of the start (``None``: torch's global one).

    Returns:
        Adversarial images with ``||x_adv - x|| <= eps``. Shape: ``(B, ...)``.
    """
    _check_images(x)
    _check_targets(x, y)
    _check_eps(eps)
    _check_norm(norm)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    if not alpha >= 0:
        raise ConfigError(f"step_size must be >= 0, got {step_size}")
    y = _predict(model, x) if y is None else y
    x = x.detach()
    adv = _random_start(x, eps, norm, generator) if random_start and eps > 0 else x.clone()
    for _ in range(steps):
        g = _loss_grad(model, adv, y)
        if norm == "linf":
            adv = adv + alpha * g.sign()
            delta = (adv - x).clamp(-eps, eps)
        else:
            adv = adv + alpha * (g / _view(g.flatten(1).norm(dim=1) + 1e-10, g))
            delta = adv - x
            scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(_TINY)).clamp(max=1.0)
            delta = delta * _view(scale, delta)
        adv = (x + delta).clamp(0, 1)
    return adv.detach()


# ------------------------------------------------------------------------------------- DeepFool
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
    _check_images(x)
    _check_deepfool_options(overshoot, max_iter, num_candidates)
    x = x.detach()
    with torch.no_grad():
        logits0 = _logits(model, x)
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
            f = _logits(model, xi).gather(1, cand[idx])  # (n, k): column 0 is k_hat
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
        w_norm = w.norm(dim=2).clamp_min(_TINY)
        rows = torch.arange(len(idx), device=x.device)
        best = (f_abs / w_norm).argmin(1)  # the closest linearised boundary l
        coef = f_abs[rows, best] / w_norm[rows, best] ** 2
        r_i = (coef[:, None] * w[rows, best]).view_as(xi)  # the projection onto it, r_i
        r_tot[idx] = (xi.detach() + r_i).clamp(0, 1) - x0
        x_adv[idx] = (x0 + (1 + overshoot) * r_tot[idx]).clamp(0, 1)
        iterations[idx] += 1
        with torch.no_grad():
            active[idx] = _logits(model, x_adv[idx]).argmax(1) == label[idx]
    adv_label = _predict(model, x_adv)
    return DeepFoolResult(x_adv, x_adv - x, iterations, adv_label != label, label, adv_label)


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
    ratio = perturbation_norms(r) / x.flatten(1).norm(dim=1).clamp_min(_TINY)
    if mask is not None:
        ratio = ratio[mask]
    return float(ratio.mean()) if ratio.numel() else float("nan")


def deepfool_accuracy(result: DeepFoolResult, y: Tensor, eps: float, norm: Norm = "l2") -> float:
    """Accuracy when DeepFool may use perturbations of norm at most ``eps``.

    A sample counts as correct when the clean prediction is right and DeepFool's perturbation is
    either unsuccessful or larger than ``eps``: an upper bound on the robust accuracy at ``eps``.
    """
    _check_eps(eps)
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
        correct += int((_predict(model, attack(xb, yb)) == yb).sum())
    return correct / max(len(x), 1)


# -------------------------------------------------------------------------------------- modules
class FGSM(nn.Module):
    """:func:`fgsm` with its options held: ``FGSM(eps=0.1)(model, x, y)``."""

    def __init__(self, eps: float = 0.03, norm: Norm = "linf") -> None:
        super().__init__()
        _check_eps(eps)
        _check_norm(norm)
        self.eps, self.norm = eps, norm

    def forward(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        return fgsm(model, x, y, self.eps, self.norm)


class PGD(nn.Module):
    """:func:`pgd` with its options held: ``PGD(eps=0.1, steps=20)(model, x, y)``."""

    def __init__(
        self,
        eps: float = 0.03,
        step_size: float | None = None,
        steps: int = 10,
        norm: Norm = "linf",
        random_start: bool = True,
    ) -> None:
        super().__init__()
        _check_eps(eps)
        _check_norm(norm)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.norm, self.random_start = norm, random_start

    def forward(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return pgd(
            model,
            x,
            y,
            self.eps,
            self.step_size,
            self.steps,
            self.norm,
            self.random_start,
            generator,
        )


class DeepFool(nn.Module):
    """:func:`deepfool` with its options held: ``DeepFool(overshoot=0.02)(model, x)``."""

    def __init__(
        self, overshoot: float = 0.02, max_iter: int = 50, num_candidates: int = 10
    ) -> None:
        super().__init__()
        _check_deepfool_options(overshoot, max_iter, num_candidates)
        self.overshoot, self.max_iter, self.num_candidates = overshoot, max_iter, num_candidates

    def forward(self, model: nn.Module, x: Tensor) -> DeepFoolResult:
        return deepfool(model, x, self.overshoot, self.max_iter, self.num_candidates)
