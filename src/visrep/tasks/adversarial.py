"""Adversarial training: train on adversarial examples of each batch (seed 001, seed 004).

Seed 001: "'Adversarial' examples can be used for retraining to improve robustness." The
examples come from :mod:`visrep.attacks`:

- ``pgd``: Madry et al., ICLR 2018, Eq. (2.1): ``min_theta E[max_{||delta|| <= eps} L(x + delta)]``,
  the inner maximisation approximated by PGD with a random start;
- ``fgsm``: Goodfellow et al., ICLR 2015 (one signed-gradient step);
- ``deepfool``: Moosavi-Dezfooli et al., CVPR 2016 (fine-tuning on DeepFool images;
  DeepFool's perturbation is minimal rather than bounded, so ``eps`` is not used).

``ratio`` mixes clean and adversarial samples as Kurakin et al. ("Adversarial Machine Learning
at Scale", ICLR 2017, Eq. 1, lambda = 1): the first ``round(ratio * B)`` samples of each
(shuffled) batch are replaced by their adversarial examples; ``ratio = 1`` is Madry's training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from visrep.attacks import deepfool, fgsm, pgd
from visrep.errors import ConfigError


@dataclass
class AdversarialConfig:
    """How training examples are made adversarial (``--model.adversarial.method pgd`` etc.).

    Attributes:
        method: the attack: pgd, fgsm or deepfool.
        eps: radius of the perturbation ball in pixel units (pgd, fgsm).
        norm: the ball: linf or l2 (pgd, fgsm).
        steps: PGD iterations.
        step_size: PGD step; default ``2.5 eps / steps``.
        random_start: PGD starts from a uniform sample of the ball.
        ratio: fraction of each batch replaced by adversarial examples, in (0, 1].
        overshoot: DeepFool's overshoot.
        max_iter: DeepFool's iterations.
    """

    method: Literal["pgd", "fgsm", "deepfool"] = "pgd"
    eps: float = 0.1
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 7
    step_size: float | None = None
    random_start: bool = True
    ratio: float = 1.0
    overshoot: float = 0.02
    max_iter: int = 50


def as_adversarial_config(cfg: AdversarialConfig | dict | None) -> AdversarialConfig | None:
    """Accept the dataclass, a plain dict (as stored in checkpoints) or None (no adversarial training)."""
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        cfg = AdversarialConfig(**cfg)
    checks = {
        "method": cfg.method in ("pgd", "fgsm", "deepfool"),
        "norm": cfg.norm in ("linf", "l2"),
        "eps": cfg.eps > 0,
        "steps": cfg.steps >= 1,
        "step_size": cfg.step_size is None or cfg.step_size > 0,
        "ratio": 0 < cfg.ratio <= 1,
        "overshoot": cfg.overshoot >= 0,
        "max_iter": cfg.max_iter >= 1,
    }
    expected = {
        "method": "one of pgd, fgsm, deepfool",
        "norm": "linf or l2",
        "eps": "> 0",
        "steps": ">= 1",
        "step_size": "> 0 or null",
        "ratio": "in (0, 1]",
        "overshoot": ">= 0",
        "max_iter": ">= 1",
    }
    for name, ok in checks.items():
        if not ok:
            raise ConfigError(
                f"model.adversarial.{name} must be {expected[name]}, got {getattr(cfg, name)!r}"
            )
    return cfg


def adversarial_examples(net: nn.Module, x: Tensor, y: Tensor, cfg: AdversarialConfig) -> Tensor:
    """The training batch of ``cfg``: the first ``round(ratio * B)`` samples made adversarial.

    The attack runs with ``net`` in eval mode (per-sample gradients, and BatchNorm running
    statistics are not updated by the attack's forward passes); the mode is restored after.

    Args:
        net: pixels -> logits.
        x: clean images in ``[0, 1]``, ``(B, C, H, W)``.
        y: labels, ``(B,)``.
        cfg: the attack and mixing ratio.

    Returns:
        The batch to train on, detached. Shape: ``(B, C, H, W)``.
    """
    n = round(cfg.ratio * len(x))
    if n == 0:
        return x
    was_training = net.training
    net.eval()
    try:
        xa, ya = x[:n], y[:n]
        if cfg.method == "pgd":
            adv = pgd(net, xa, ya, cfg.eps, cfg.step_size, cfg.steps, cfg.norm, cfg.random_start)
        elif cfg.method == "fgsm":
            adv = fgsm(net, xa, ya, cfg.eps, cfg.norm)
        else:
            adv = deepfool(net, xa, cfg.overshoot, cfg.max_iter).x_adv
    finally:
        net.train(was_training)
    return torch.cat([adv, x[n:]]).detach()
