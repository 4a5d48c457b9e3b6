"""Putative matches between two images, coloured by a filter's decision (learned
correspondences, Yi et al. 2018, fig. 1 / 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from visrep.errors import ShapeError
from visrep.plots._save import save

__all__ = ["MatchView", "plot_matches"]


@dataclass
class MatchView:
    """One pair to draw: grey images ``(H, W)``, pixel matches ``(N, 4)``, the filter's kept
    matches and the true inliers (bool ``(N,)``), a title."""

    image1: np.ndarray
    image2: np.ndarray
    pixels: np.ndarray
    kept: np.ndarray
    inliers: np.ndarray
    title: str = ""


def plot_matches(views: Sequence[MatchView], path: str | Path, max_lines: int = 400) -> Path:
    """One row per pair, the two images side by side: kept true inliers green, kept outliers
    red, rejected matches thin grey (a seeded subset of ``max_lines`` each, to stay legible)."""
    if not views:
        raise ShapeError("plot_matches: no pairs to draw")
    fig, axes = plt.subplots(len(views), 1, figsize=(9, 3.2 * len(views)), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, v in zip(axes[:, 0], views, strict=True):
        if v.pixels.ndim != 2 or v.pixels.shape[1] != 4 or len(v.kept) != len(v.pixels):
            raise ShapeError(f"plot_matches: pixels (N, 4) and kept (N,) expected, got "
                             f"{v.pixels.shape} and {np.shape(v.kept)}")  # fmt: skip
        h = max(v.image1.shape[0], v.image2.shape[0])
        canvas = np.zeros((h, v.image1.shape[1] + v.image2.shape[1]), np.uint8)
        canvas[: v.image1.shape[0], : v.image1.shape[1]] = v.image1
        canvas[: v.image2.shape[0], v.image1.shape[1] :] = v.image2
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=255)
        p = v.pixels.astype(np.float64).copy()
        p[:, 2] += v.image1.shape[1]
        kept, inl = np.asarray(v.kept, bool), np.asarray(v.inliers, bool)
        groups = (
            (~kept, (0.75, 0.75, 0.75, 0.35), 0.4),
            (kept & ~inl, (0.9, 0.1, 0.1, 0.9), 0.8),
            (kept & inl, (0.1, 0.8, 0.2, 0.9), 0.8),
        )
        for sel, colour, width in groups:
            idx = np.flatnonzero(sel)
            if len(idx) > max_lines:
                idx = np.sort(rng.choice(idx, max_lines, replace=False))
            segs = p[idx].reshape(-1, 2, 2)
            ax.add_collection(LineCollection(segs, colors=[colour], linewidths=width))
        ax.set_title(
            f"{v.title}  kept {int(kept.sum())}/{len(kept)}: {int((kept & inl).sum())} inliers "
            f"(green), {int((kept & ~inl).sum())} outliers (red); {int(inl.sum())} true inliers",
            fontsize=7,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
