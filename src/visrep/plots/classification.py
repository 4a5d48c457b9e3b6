"""Classification results: the confusion matrix and a grid of predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.plots._save import save, show_image


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
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title("confusion matrix (test)")
    return save(fig, path)


def plot_prediction_grid(
    images: Tensor,
    targets: Tensor,
    probs: Tensor,
    class_names: Sequence[str],
    path: Path,
    cols: int = 8,
) -> Path:
    """Images titled ``pred (prob) / true``; wrong predictions in red.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        targets: ``(N,)`` true classes.
        probs: ``(N, num_classes)`` predicted probabilities.
    """
    n = len(images)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6), squeeze=False)
    conf, pred = probs.max(-1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ok = int(pred[i]) == int(targets[i])
        title = (
            f"{class_names[int(pred[i])]} ({float(conf[i]):.2f})\n"
            f"true {class_names[int(targets[i])]}"
        )
        show_image(ax, images[i], title, "black" if ok else "red")
    return save(fig, path)
