"""Verification: ROC curves (TAR against FAR) and the distance histograms of same / different pairs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save

__all__ = ["plot_distance_histogram", "plot_roc"]

Curve = tuple[np.ndarray | Tensor, np.ndarray | Tensor]


def _curve(far: np.ndarray | Tensor, tar: np.ndarray | Tensor, name: str) -> tuple:
    f = np.asarray(far, dtype=np.float64).ravel()
    t = np.asarray(tar, dtype=np.float64).ravel()
    if f.shape != t.shape or len(f) < 2:
        raise ShapeError(f"ROC {name!r}: far and tar must be equal-length (n >= 2), got "
                         f"{f.shape} and {t.shape}")  # fmt: skip
    return f, t


def plot_roc(
    curves: Mapping[str, Curve],
    path: str | Path,
    title: str = "",
    log_far: bool = True,
) -> Path:
    """ROC curves, one per entry ``name -> (far, tar)``, with the chance diagonal.

    Args:
        curves: curve name (its legend entry, e.g. ``"test (AUC 0.981, EER 0.052)"``) -> the
            FAR and TAR arrays of :func:`visrep.tasks.embedding_metrics.roc_curve`.
        path: the PNG to write.
        title: the figure title.
        log_far: a second panel with the FAR on a log axis (where TAR@FAR is read).
    """
    checked = {name: _curve(f, t, name) for name, (f, t) in curves.items()}
    if not checked:
        raise ShapeError("plot_roc needs at least one curve")
    fig, axes = plt.subplots(1, 2 if log_far else 1, figsize=(10 if log_far else 5, 4.5),
                             squeeze=False)  # fmt: skip
    lin = axes[0, 0]
    lin.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for name, (f, t) in checked.items():
        lin.plot(f, t, lw=1.5, label=name)
    lin.set(xlabel="false accept rate (FAR)", ylabel="true accept rate (TAR)", xlim=(0, 1),
            ylim=(0, 1.01), title=title)  # fmt: skip
    lin.legend(fontsize=8, loc="lower right")
    if log_far:
        ax = axes[0, 1]
        lo = 1.0
        for name, (f, t) in checked.items():
            keep = f > 0
            if keep.any():
                ax.step(f[keep], t[keep], where="post", lw=1.5, label=name)
                lo = min(lo, float(f[keep].min()))
        ax.set_xscale("log")
        ax.set(xlabel="FAR (log)", ylabel="TAR", ylim=(0, 1.01), xlim=(min(lo, 1e-3), 1))
        ax.grid(True, which="both", alpha=0.3)
    return save(fig, path)


def plot_distance_histogram(
    positive: np.ndarray | Tensor,
    negative: np.ndarray | Tensor,
    path: str | Path,
    threshold: float | None = None,
    bins: int = 50,
    title: str = "",
) -> Path:
    """Histograms (densities) of the distances of same-class and different-class pairs.

    Args:
        positive, negative: distances of the same-class and the different-class pairs.
        path: the PNG to write.
        threshold: a decision threshold to mark (e.g. the best-accuracy one).
        bins: histogram bins over the range of both.
        title: the figure title.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ShapeError(f"need same and different pair distances, got {len(pos)} and {len(neg)}")
    if bins < 1:
        raise ShapeError(f"bins must be >= 1, got {bins}")
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(pos, edges, density=True, alpha=0.55, color="tab:green", label=f"same ({len(pos)})")
    ax.hist(neg, edges, density=True, alpha=0.55, color="tab:red", label=f"different ({len(neg)})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="Euclidean distance", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return save(fig, path)
