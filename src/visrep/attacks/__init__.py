"""Adversarial attacks in pixel space: FGSM, PGD and DeepFool, each a function and a module.

Used by tasks (adversarial training) and by analysis (robustness curves, ``visrep attack``).
"""

from visrep.attacks._common import NORMS, Norm, perturbation_norms
from visrep.attacks.deepfool import DeepFool, DeepFoolResult, deepfool
from visrep.attacks.gradient import FGSM, PGD, fgsm, pgd

__all__ = [
    "FGSM",
    "NORMS",
    "PGD",
    "DeepFool",
    "DeepFoolResult",
    "Norm",
    "deepfool",
    "fgsm",
    "perturbation_norms",
    "pgd",
]
