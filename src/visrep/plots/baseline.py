"""Shallow-baseline figures: the decision regions of a classifier over a 2-D input plane."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from visrep.errors import ShapeError
from visrep.plots._save import save


def plot_decision_boundary(
    xs: np.ndarray,
    ys: np.ndarray,
    regions: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str = "",
) -> Path:
    """The predicted class over a grid of the input plane, with labelled points on top.

    Seed 002 ("representation is important"): the same linear classifier draws a line in
    ``(x1, x2)`` but a circle when it reads ``(rho, theta)``; this figure shows which.

    Args:
        xs, ys: the grid's coordinates ``(W,)`` and ``(H,)`` (increasing).
        regions: ``(H, W)`` predicted class ids at ``(xs[j], ys[i])``.
        points: ``(N, 2)`` input points (e.g. the test split).
        labels: ``(N,)`` their true classes.
        class_names: one name per class.
        path: the PNG to write.
        title: the figure's title.
    """
    regions = np.asarray(regions)
    if regions.shape != (len(ys), len(xs)) or np.asarray(points).shape[1:] != (2,):
        raise ShapeError(
            f"plot_decision_boundary: regions must be (len(ys), len(xs)) = ({len(ys)}, "
            f"{len(xs)}) and points (N, 2), got {regions.shape} and {np.asarray(points).shape}"
        )
    n = max(len(class_names), 1)
    colors = plt.get_cmap("tab10" if n <= 10 else "tab20")(np.arange(n) % (10 if n <= 10 else 20))
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.pcolormesh(
        xs, ys, regions, cmap=ListedColormap(colors), vmin=-0.5, vmax=n - 0.5, alpha=0.3,
        shading="nearest",
    )  # fmt: skip
    if n > 1:
        ax.contour(xs, ys, regions, levels=np.arange(n - 1) + 0.5, colors="k", linewidths=0.8)
    labels = np.asarray(labels)
    for c in range(n):
        sel = labels == c
        if sel.any():
            ax.scatter(*np.asarray(points)[sel].T, s=6, color=colors[c], label=class_names[c])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=2)
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)


def decision_grid(
    points: np.ndarray, steps: int = 200, margin: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``steps x steps`` grid over the bounding box of 2-D ``points`` (``margin`` of its size
    added on each side).

    Returns:
        ``xs`` ``(steps,)``, ``ys`` ``(steps,)`` and the grid points ``(steps * steps, 2)``
        float32, row by row (``ys[0]`` first), as :func:`plot_decision_boundary` reads them.

    >>> xs, ys, grid = decision_grid(np.array([[-1.0, 0.0], [1.0, 2.0]]), steps=3, margin=0.0)
    >>> xs.tolist(), ys.tolist(), grid[1].tolist()
    ([-1.0, 0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 0.0])
    """
    p = np.asarray(points, dtype=np.float64).reshape(len(points), 2)
    lo, hi = p.min(0), p.max(0)
    pad = np.maximum(hi - lo, 1e-6) * margin
    xs, ys = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], steps) for i in (0, 1))
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return xs, ys, np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)


def plot_decision_function(
    predict: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str = "",
    steps: int = 200,
) -> Path:
    """The decision regions of any classifier of 2-D inputs, with ``points`` on top.

    Args:
        predict: maps grid points ``(M, 2)`` float32 to class ids ``(M,)`` (a baseline on some
            features of the points, a trained network's argmax ...).
        points, labels, class_names, path, title: as :func:`plot_decision_boundary`.
        steps: grid resolution per axis.
    """
    points = np.asarray(points).reshape(len(points), 2)
    xs, ys, grid = decision_grid(points, steps)
    regions = np.asarray(predict(grid)).reshape(len(ys), len(xs))
    return plot_decision_boundary(xs, ys, regions, points, labels, class_names, path, title)
