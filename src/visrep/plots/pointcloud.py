"""Point clouds: a 3-D scatter coloured by label, height or a feature; a grid of classified
clouds with predicted and true classes; PointNet's critical point sets (Qi et al. 2017, Fig. 7)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save

__all__ = [
    "plot_critical_points",
    "plot_point_cloud",
    "plot_point_cloud_grid",
    "plot_point_segmentations",
]

MAX_POINTS = 60_000  # more makes a 3-D scatter slow and no clearer


def _array(a: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(a, Tensor):  # bfloat16 (autocast) has no numpy type
        a = a.detach().cpu()
        return (a.float() if a.dtype == torch.bfloat16 else a).numpy()
    return np.asarray(a)


def _xyz(xyz: np.ndarray | Tensor, who: str) -> np.ndarray:
    a = _array(xyz)
    if a.ndim != 2 or a.shape[1] < 3:
        raise ShapeError(f"{who}: points must be (N, >=3), got {a.shape}")
    return a[:, :3].astype(np.float64)


def _thin(n: int, max_points: int) -> np.ndarray:
    """Evenly spaced indices, at most ``max_points`` (deterministic)."""
    return np.arange(n) if n <= max_points else np.linspace(0, n - 1, max_points).astype(np.int64)


def _equal_axes(ax: plt.Axes, xyz: np.ndarray, ticks: bool = True) -> None:
    """Equal scale on x, y and z: a cube around the cloud's bounding box."""
    finite = xyz[np.isfinite(xyz).all(1)]
    if len(finite):
        lo, hi = finite.min(0), finite.max(0)
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-9)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1))
    if ticks:
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])


def plot_point_cloud(
    xyz: np.ndarray | Tensor,
    path: str | Path,
    colors: np.ndarray | Tensor | None = None,
    labels: np.ndarray | Tensor | None = None,
    class_names: Sequence[str] = (),
    title: str = "",
    color_label: str = "",
    max_points: int = MAX_POINTS,
) -> Path:
    """A 3-D scatter of a point cloud with equal axes.

    Args:
        xyz: ``(N, >=3)`` points (columns 0..2 used).
        path: the PNG to write.
        colors: ``(N,)`` values for a continuous colour map (height, intensity ...), or None.
        labels: ``(N,)`` integer labels, one colour each, with a legend (names from
            ``class_names`` where given); overrides ``colors``.
        class_names: names of the labels.
        title: the figure title.
        color_label: the colour bar's label for ``colors``.
        max_points: at most this many points are drawn (evenly spaced in file order).
    """
    p = _xyz(xyz, "plot_point_cloud")
    idx = _thin(len(p), max_points)
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    size = float(np.clip(3000 / max(len(idx), 1), 0.2, 8))
    if labels is not None:
        lab = _array(labels).astype(np.int64).reshape(-1)
        if len(lab) != len(p):
            raise ShapeError(f"plot_point_cloud: labels must be ({len(p)},), got {lab.shape}")
        values = np.unique(lab)
        cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
        palette = np.array([cmap(i % cmap.N) for i in range(len(values))])  # (V, 4) RGBA
        colour_of = dict(zip(values.tolist(), palette, strict=True))
        ax.scatter(
            *p[idx].T, c=palette[np.searchsorted(values, lab[idx])], s=size, depthshade=False
        )
        handles = [
            Line2D([], [], marker="o", ls="", color=colour_of[v],
                   label=class_names[v] if 0 <= v < len(class_names) else str(v))
            for v in values.tolist()[:20]
        ]  # fmt: skip
        ax.legend(handles=handles, loc="upper left", fontsize=7, markerscale=1.2)
    elif colors is not None:
        c = _array(colors).astype(np.float64).reshape(-1)
        if len(c) != len(p):
            raise ShapeError(f"plot_point_cloud: colors must be ({len(p)},), got {c.shape}")
        sc = ax.scatter(*p[idx].T, c=c[idx], cmap="viridis", s=size, depthshade=False)
        fig.colorbar(sc, ax=ax, shrink=0.6, label=color_label)
    else:
        ax.scatter(*p[idx].T, c="tab:blue", s=size, depthshade=False)
    _equal_axes(ax, p[idx])
    shown = f" ({len(idx)} of {len(p)} points shown)" if len(idx) < len(p) else ""
    ax.set_title((title or f"{len(p)} points") + shown, fontsize=9)
    return save(fig, path)


def plot_point_cloud_grid(
    clouds: Sequence[np.ndarray | Tensor] | Tensor,
    targets: Sequence[int] | Tensor,
    probs: Tensor | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    cols: int = 6,
) -> Path:
    """Clouds titled ``pred (prob) / true``, wrong predictions in red (the point-cloud form of
    :func:`~visrep.plots.classification.plot_prediction_grid`).

    Args:
        clouds: ``N`` clouds ``(P_i, >=3)`` (a list, or a ``(N, P, D)`` tensor).
        targets: ``(N,)`` true classes.
        probs: ``(N, num_classes)`` predicted probabilities.
        class_names: the class names.
        path: the PNG to write.
        cols: clouds per row.
    """
    pr = _array(probs).astype(np.float64)
    tg = _array(targets).astype(np.int64).reshape(-1)
    n = len(clouds)
    if pr.shape[0] != n or len(tg) != n:
        raise ShapeError(
            f"plot_point_cloud_grid: {n} clouds need {n} targets and probability rows, got "
            f"{len(tg)} and {pr.shape}"
        )
    pred, conf = pr.argmax(1), pr.max(1)
    cols = max(1, min(cols, n))
    rows = max(1, (n + cols - 1) // cols)
    fig = plt.figure(figsize=(cols * 1.9, rows * 2.1))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        p = _xyz(clouds[i], "plot_point_cloud_grid")
        idx = _thin(len(p), 4096)
        ax.scatter(*p[idx].T, c=p[idx, 2], cmap="viridis", s=0.6, depthshade=False)
        _equal_axes(ax, p[idx], ticks=False)
        ok = int(pred[i]) == int(tg[i])
        ax.set_title(
            f"{class_names[int(pred[i])]} ({float(conf[i]):.2f})\ntrue {class_names[int(tg[i])]}",
            fontsize=7,
            color="black" if ok else "red",
        )
    return save(fig, path)


def plot_critical_points(
    examples: Sequence[tuple[np.ndarray | Tensor, np.ndarray | Tensor, str]],
    path: str | Path,
) -> Path:
    """Each example's cloud beside its critical point set: the points that win at least one
    channel of PointNet's max pool and so alone determine the global feature (Qi et al. 2017,
    Theorem 2 and Fig. 7).

    Args:
        examples: ``(xyz (N, >=3), critical, title)``, ``critical`` a boolean ``(N,)`` mask or
            point indices.
        path: the PNG to write.
    """
    n = max(len(examples), 1)
    fig = plt.figure(figsize=(2 * 2.4, n * 2.3))
    for r, (xyz, critical, name) in enumerate(examples):
        p = _xyz(xyz, "plot_critical_points")
        c = _array(critical)
        mask = c.astype(bool) if c.dtype == bool else np.isin(np.arange(len(p)), c)
        if mask.shape != (len(p),):
            raise ShapeError(f"plot_critical_points: mask must be ({len(p)},), got {mask.shape}")
        for col, (pts, colour, label) in enumerate(
            (
                (p, "tab:blue", f"{name}: {len(p)} points"),
                (p[mask], "tab:red", f"critical: {int(mask.sum())}"),
            )
        ):
            ax = fig.add_subplot(n, 2, 2 * r + col + 1, projection="3d")
            ax.scatter(*pts.T, c=colour, s=1.0, depthshade=False)
            _equal_axes(ax, p, ticks=False)
            ax.set_title(label, fontsize=8)
    return save(fig, path)


def plot_point_segmentations(
    examples: Sequence[tuple[np.ndarray | Tensor, np.ndarray | Tensor, np.ndarray | Tensor, str]],
    class_names: Sequence[str],
    path: str | Path,
    ignore_index: int | None = None,
    view: str = "3d",
    max_points: int = 30_000,
) -> Path:
    """One row per cloud: its points coloured by the true classes, then by the predicted ones
    (one colour per class in both; ignored points grey).

    Args:
        examples: ``(xyz (N, >=3), truth (N,), prediction (N,), title)``.
        class_names: the class names (the legend).
        path: the PNG to write.
        ignore_index: the truth label shown grey.
        view: ``3d`` (a 3-D scatter with equal axes) or ``top`` (x-y from above, for scenes).
        max_points: at most this many points per panel (evenly spaced).
    """
    if view not in ("3d", "top"):
        raise ShapeError(f"plot_point_segmentations: view must be 3d or top, got {view!r}")
    n = max(len(examples), 1)
    k = max(len(class_names), 1)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    palette = np.array([cmap(i % cmap.N) for i in range(k)] + [(0.75, 0.75, 0.75, 1.0)])
    row = 3.6
    if view == "top" and examples:  # rows as tall as the clouds' x-y extent needs
        ext = [np.ptp(_xyz(e[0], "plot_point_segmentations")[:, :2], axis=0) for e in examples]
        row = 0.8 + 4.0 * float(np.clip(max(e[1] / max(e[0], 1e-9) for e in ext), 0.25, 1.5))
    fig = plt.figure(figsize=(2 * 4.0, n * row + 0.5), layout="constrained")
    for r, (xyz, truth, pred, title) in enumerate(examples):
        p = _xyz(xyz, "plot_point_segmentations")
        labels = []
        for lab in (truth, pred):
            a = _array(lab).astype(np.int64).reshape(-1)
            if len(a) != len(p):
                raise ShapeError(
                    f"plot_point_segmentations: labels must be ({len(p)},), got {a.shape}"
                )
            labels.append(np.where((a >= 0) & (a < k) & (a != ignore_index), a, k))
        idx = _thin(len(p), max_points)
        size = float(np.clip(4000 / max(len(idx), 1), 0.1, 6))
        for c, (lab, what) in enumerate(zip(labels, ("truth", "prediction"), strict=True)):
            pos = 2 * r + c + 1
            if view == "top":
                ax = fig.add_subplot(n, 2, pos)
                ax.scatter(p[idx, 0], p[idx, 1], c=palette[lab[idx]], s=size, linewidths=0)
                ax.set_aspect("equal")
                ax.tick_params(labelsize=6)
            else:
                ax = fig.add_subplot(n, 2, pos, projection="3d")
                ax.scatter(*p[idx].T, c=palette[lab[idx]], s=size, depthshade=False)
                _equal_axes(ax, p[idx], ticks=False)
            ax.set_title(f"{title}: {what}", fontsize=8)
    handles = [
        Line2D([], [], marker="o", ls="", color=palette[i], label=str(name))
        for i, name in enumerate(list(class_names)[:20])
    ]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6), fontsize=7)
    return save(fig, path)
