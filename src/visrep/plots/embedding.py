"""Feature space: nearest neighbours of images and 2-D projections (PCA, t-SNE) by class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, to_imshow
from visrep.utils.checks import check_images


def plot_neighbours(
    queries: Tensor,
    neighbours: Tensor,
    path: str | Path,
    query_titles: Sequence[str] | None = None,
    neighbour_titles: Sequence[Sequence[str]] | None = None,
) -> Path:
    """One row per query: the query, then its neighbours nearest first.

    Args:
        queries: ``(Q, C, H, W)``.
        neighbours: ``(Q, k, C, H, W)``.
        path: the PNG to write.
        query_titles, neighbour_titles: labels of the query and of each neighbour ``(Q, k)``.
    """
    check_images(queries, "queries")
    q, k = neighbours.shape[:2]
    fig, axes = plt.subplots(q, k + 1, figsize=(1.3 * (k + 1), 1.4 * q), squeeze=False)
    for i in range(q):
        img, cmap = to_imshow(queries[i])
        axes[i, 0].imshow(img, cmap=cmap, vmin=0, vmax=1)
        if query_titles is not None:
            axes[i, 0].set_title(query_titles[i], fontsize=7, color="tab:blue")
        for j in range(k):
            img, cmap = to_imshow(neighbours[i, j])
            axes[i, j + 1].imshow(img, cmap=cmap, vmin=0, vmax=1)
            if neighbour_titles is not None:
                axes[i, j + 1].set_title(neighbour_titles[i][j], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)


def plot_embedding(
    points: np.ndarray,
    labels: Sequence[int] | np.ndarray | Tensor,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """A 2-D scatter ``(N, 2)`` coloured by class, with a legend of class names (up to 20)."""
    pts = np.asarray(points)
    y = np.asarray(labels).astype(int)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(y) != len(pts):
        raise ShapeError(f"points must be (N, 2) with N labels, got {pts.shape} and {len(y)}")
    classes = np.unique(y)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for i, c in enumerate(classes):
        sel = y == c
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(pts[sel, 0], pts[sel, 1], s=8, color=cmap(i % cmap.N), label=name, alpha=0.8)
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return save(fig, path)
