"""Necks: turn a backbone's feature levels into the maps a dense head reads (FPN)."""

from visrep.models.necks.fpn import FPN, fpn, fpn_top_down

__all__ = ["FPN", "fpn", "fpn_top_down"]
