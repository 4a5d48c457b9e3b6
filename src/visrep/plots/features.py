"""Local features drawn on their image: a circle of the keypoint's scale and a line along its
orientation (as OpenCV's ``DRAW_RICH_KEYPOINTS`` draws them)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Circle

from visrep.errors import ShapeError
from visrep.plots._save import save


def plot_features(
    image: np.ndarray, keypoints: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """One grey image ``(H, W)`` with keypoints ``(N, >= 4)`` (x, y, scale, angle in radians;
    x right, y down) as circles and orientation lines; returns the PNG's path."""
    if image.ndim != 2 or keypoints.ndim != 2 or keypoints.shape[1] < 4:
        raise ShapeError(
            f"plot_features: a grey (H, W) image and (N, >= 4) keypoints expected, got "
            f"{image.shape} and {keypoints.shape}"
        )
    h, w = image.shape
    fig, ax = plt.subplots(figsize=(8, 8 * h / max(w, 1)))
    ax.imshow(image, cmap="gray")
    x, y, s, a = (keypoints[:, i] for i in range(4))
    for xi, yi, si in zip(x, y, s, strict=True):
        ax.add_patch(Circle((xi, yi), si, fill=False, lw=0.6, color="lime"))
    ends = np.stack([np.stack([x, y], 1), np.stack([x + s * np.cos(a), y + s * np.sin(a)], 1)], 1)
    ax.add_collection(LineCollection(ends, colors="red", linewidths=0.6))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(title or f"{len(keypoints)} keypoints")
    return save(fig, path)
