"""Plots of a run: learning curves, confusion matrix, a grid of predictions (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_learning_curves(rows: Sequence[dict[str, str]], path: Path) -> Path | None:
    """Loss and accuracy per epoch for every split found in metrics.csv rows."""
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    groups = {"loss": [], "acc": []}
    for key in rows[0]:
        if "/" in key:
            metric = key.split("/", 1)[1]
            if metric in groups:
                groups[metric].append(key)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (metric, keys) in zip(axes, groups.items(), strict=True):
        for k in sorted(keys):
            vals = [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]
            ax.plot(epochs, vals, marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend()
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], class_names: Sequence[str], path: Path
) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), counts annotated."""
    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        int(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title("confusion matrix (test)")
    return _save(fig, path)


def plot_prediction_grid(
    images: Tensor,
    targets: Tensor,
    probs: Tensor,
    class_names: Sequence[str],
    path: Path,
    cols: int = 8,
) -> Path:
    """Test images titled ``pred (prob) / true``; wrong predictions in red."""
    n = len(images)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6), squeeze=False)
    conf, pred = probs.max(-1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].float().clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img[..., :3], cmap="gray", vmin=0, vmax=1)
        ok = int(pred[i]) == int(targets[i])
        ax.set_title(
            f"{class_names[int(pred[i])]} ({float(conf[i]):.2f})\ntrue {class_names[int(targets[i])]}",
            fontsize=7,
            color="black" if ok else "red",
        )
    return _save(fig, path)
