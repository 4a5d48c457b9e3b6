"""Losses: function + module pairs (the function is the source of truth)."""

from visrep.losses.dice import DiceLoss, dice_loss

__all__ = ["DiceLoss", "dice_loss"]
