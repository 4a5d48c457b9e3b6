"""Keypoints on their images: true points against the predictions of each decoding."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, to_imshow

_STYLES = (("tab:red", "x"), ("tab:blue", "+"), ("tab:orange", "1"), ("tab:purple", "2"))


def plot_keypoints(
    images: Tensor,
    truth: Tensor,
    predictions: Mapping[str, Tensor],
    path: str | Path,
    titles: list[str] | None = None,
    columns: int = 3,
) -> Path:
    """One panel per image: the true keypoints (green circles, labelled ones only), each
    decoding's predictions (its own colour and marker) and a line from truth to the first
    decoding's prediction.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        truth: ``(N, K, 3)`` x, y, visibility (pixel-index coordinates).
        predictions: decoding name -> ``(N, K, 2)`` x, y.
        path: the PNG to write.
        titles: one title per image (file names).
        columns: panels per row.
    """
    if images.dim() != 4 or truth.dim() != 3 or truth.shape[0] != images.shape[0]:
        raise ShapeError(
            f"plot_keypoints: images {tuple(images.shape)} and keypoints {tuple(truth.shape)}; "
            "expected (N, C, H, W) and (N, K, 3)"
        )
    n = images.shape[0]
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    h, w = images.shape[-2:]
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 4.2 * rows * h / w + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    names = list(predictions)
    for i in range(n):
        ax = axes.flat[i]
        arr, cmap = to_imshow(images[i])
        ax.imshow(arr, cmap=cmap)
        t = truth[i].detach().cpu().numpy()
        vis = t[:, 2] > 0
        if names:
            p = predictions[names[0]][i].detach().cpu().numpy()
            segs = np.stack((t[vis, :2], p[vis]), 1)
            for s in segs:
                ax.plot(s[:, 0], s[:, 1], color="yellow", linewidth=0.6)
        ax.scatter(
            t[vis, 0],
            t[vis, 1],
            s=14,
            facecolors="none",
            edgecolors="lime",
            linewidths=0.8,
            label="true",
        )
        for j, name in enumerate(names):
            color, marker = _STYLES[j % len(_STYLES)]
            p = predictions[name][i].detach().cpu().numpy()
            ax.scatter(p[:, 0], p[:, 1], s=12, c=color, marker=marker, linewidths=0.8, label=name)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    axes.flat[0].legend(loc="lower left", fontsize=6, framealpha=0.6)
    return save(fig, path)
