"""Losses: function + module pairs (the function is the source of truth)."""

from visrep.losses.colorization import (
    ABQuantizer,
    RebalancedCrossEntropy,
    ab_gamut_bins,
    annealed_mean,
    rebalance_weights,
    rebalanced_cross_entropy,
    soft_encode,
)
from visrep.losses.dice import DiceLoss, dice_loss

__all__ = [
    "ABQuantizer",
    "DiceLoss",
    "RebalancedCrossEntropy",
    "ab_gamut_bins",
    "annealed_mean",
    "dice_loss",
    "rebalance_weights",
    "rebalanced_cross_entropy",
    "soft_encode",
]
