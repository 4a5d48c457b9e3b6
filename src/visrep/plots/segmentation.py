"""Figures of a segmentation run: per-class IoU bars and image / truth / prediction overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, to_imshow


def colorize(
    mask: np.ndarray, colors: Sequence[Sequence[int]], ignore_index: int | None
) -> np.ndarray:
    """Class ids ``(H, W)`` as an RGB ``(H, W, 3)`` uint8 image; ignored pixels black.

    >>> colorize(np.array([[0, 1], [255, 1]]), [(255, 0, 0), (0, 0, 255)], 255)[1, 0].tolist()
    [0, 0, 0]
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if ignore_index is not None and 0 <= ignore_index < 256:
        palette[ignore_index] = 0
    return palette[np.clip(mask, 0, 255).astype(np.int64)]


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (matplotlib's tab20, then hsv) for classes without their own."""
    cmap = plt.get_cmap("tab20" if n <= 20 else "hsv", max(n, 1))
    return [tuple(int(255 * v) for v in cmap(i)[:3]) for i in range(n)]


def plot_class_iou(iou: Sequence[float], class_names: Sequence[str], path: Path) -> Path:
    """Horizontal bars of the per-class IoU, the mean as a dashed line."""
    vals = np.nan_to_num(np.asarray(iou, dtype=float))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(vals) + 1.2))
    ax.barh(range(len(vals)), vals, color="#4c72b0")
    ax.set_yticks(range(len(vals)), class_names)
    ax.invert_yaxis()
    ax.axvline(float(np.mean(vals)), ls="--", color="k", label=f"mean {np.mean(vals):.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU (test)")
    ax.legend(loc="lower right")
    return save(fig, path)


def plot_segmentations(
    images: Tensor,
    targets: Tensor,
    preds: Tensor,
    colors: Sequence[Sequence[int]],
    ignore_index: int | None,
    path: Path,
) -> Path:
    """One row per image: the image, the true mask and the predicted mask."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.4 * n), squeeze=False)
    for i in range(n):
        img, cmap = to_imshow(images[i])
        panels = [
            (img, cmap, "image"),
            (colorize(targets[i].numpy(), colors, ignore_index), None, "truth"),
            (colorize(preds[i].numpy(), colors, ignore_index), None, "prediction"),
        ]
        for ax, (a, cm, title) in zip(axes[i], panels, strict=True):
            ax.imshow(a, cmap=cm)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    return save(fig, path)


def overlay_objects(frames: Tensor, ids: Tensor, alpha: float = 0.5) -> Tensor:
    """Frames with their objects tinted: object ``k`` blends :func:`default_colors`'s colour
    ``k - 1`` at ``alpha``; background untouched (video object segmentation strips).

    Shape: ``frames (T, 3, H, W)`` in [0, 1], ``ids (T, H, W)`` -> ``(T, 3, H, W)``.
    """
    if frames.dim() != 4 or ids.shape != (frames.shape[0], *frames.shape[-2:]):
        raise ShapeError(
            f"overlay_objects: frames (T, 3, H, W) and ids (T, H, W) expected, got "
            f"{tuple(frames.shape)} and {tuple(ids.shape)}"
        )
    k = max(int(ids.max()), 1)
    palette = torch.tensor([(0, 0, 0), *default_colors(k)], dtype=torch.float32) / 255
    colour = palette[ids.long().clamp(0, k)].permute(0, 3, 1, 2).to(frames)
    on = (ids > 0)[:, None]
    return torch.where(on, (1 - alpha) * frames + alpha * colour, frames)
