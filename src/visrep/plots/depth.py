"""Figures of a depth run: disparity maps as coloured images beside the views and ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, to_imshow

__all__ = ["colorize_disparity", "disparity_range", "plot_disparities"]


def disparity_range(*maps: np.ndarray) -> tuple[float, float]:
    """``(vmin, vmax)``: the 1st and 99th percentiles of the known (finite) values of ``maps``."""
    known = [m[np.isfinite(m)] for m in maps]
    values = np.concatenate([k.ravel() for k in known]) if known else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-6))


def colorize_disparity(
    disparity: np.ndarray, vmin: float, vmax: float, cmap: str = "magma"
) -> np.ndarray:
    """Disparities ``(H, W)`` as an RGB ``(H, W, 3)`` uint8 image; unknown (inf, NaN) black.

    >>> colorize_disparity(np.array([[0.0, np.inf]]), 0.0, 1.0)[0, 1].tolist()
    [0, 0, 0]
    """
    d = np.asarray(disparity, dtype=np.float64)
    if d.ndim != 2:
        raise ShapeError(f"colorize_disparity: shape {d.shape}, expected (H, W)")
    known = np.isfinite(d)
    t = np.clip((np.where(known, d, vmin) - vmin) / (vmax - vmin), 0, 1)
    rgb = (plt.get_cmap(cmap)(t)[..., :3] * 255).round().astype(np.uint8)
    rgb[~known] = 0
    return rgb


def plot_disparities(
    images: Sequence[Tensor],
    columns: dict[str, Sequence[np.ndarray]],
    names: Sequence[str],
    path: Path,
    captions: dict[str, Sequence[str]] | None = None,
) -> Path:
    """One row per pair: the left view, then each disparity map (``columns``: title -> maps),
    on one colour scale per row (that of the first column, e.g. the ground truth)."""
    n, k = len(images), len(columns) + 1
    fig, axes = plt.subplots(n, k, figsize=(2.6 * k, 2.2 * n), squeeze=False)
    for r in range(n):
        img, cmap = to_imshow(images[r])
        axes[r, 0].imshow(img, cmap=cmap)
        axes[r, 0].set_title(names[r], fontsize=8)
        maps = [np.asarray(c[r], dtype=np.float64) for c in columns.values()]
        first_known = next((m for m in maps if np.isfinite(m).any()), maps[0])
        vmin, vmax = disparity_range(first_known)
        for c, (title, m) in enumerate(zip(columns, maps, strict=True), start=1):
            axes[r, c].imshow(colorize_disparity(m, vmin, vmax))
            extra = f"\n{captions[title][r]}" if captions and title in captions else ""
            axes[r, c].set_title(f"{title}{extra}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    return save(fig, path)
