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
from visrep.losses.detection import (
    SetCriterion,
    box_iou_union,
    generalized_box_iou,
    hungarian_loss,
    set_criterion,
)
from visrep.losses.dice import DiceLoss, dice_loss
from visrep.losses.rcnn import FastRCNNLoss, box_regression_loss, fast_rcnn_loss, smooth_l1

__all__ = [
    "ABQuantizer",
    "DiceLoss",
    "FastRCNNLoss",
    "RebalancedCrossEntropy",
    "SetCriterion",
    "ab_gamut_bins",
    "annealed_mean",
    "box_iou_union",
    "box_regression_loss",
    "dice_loss",
    "fast_rcnn_loss",
    "generalized_box_iou",
    "hungarian_loss",
    "rebalance_weights",
    "rebalanced_cross_entropy",
    "set_criterion",
    "smooth_l1",
    "soft_encode",
]
