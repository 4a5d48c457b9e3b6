"""The one way a visrep figure reaches a file: headless (Agg) matplotlib, ``save(fig, path)``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are written on servers and in tests, never shown
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor


def save(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (parent folders created, tight bounding box), close it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def to_imshow(img: Tensor) -> tuple[np.ndarray, str | None]:
    """An image ``(C, H, W)`` in [0, 1] as ``imshow`` input: ``(array, cmap)``.

    Three channels are RGB (four: RGBA, alpha dropped); any other count is shown grey, the mean
    of the channels.
    """
    a = img.detach().float().cpu().clamp(0, 1)
    if a.shape[0] in (3, 4):
        return a[:3].permute(1, 2, 0).numpy(), None
    return a.mean(0).numpy(), "gray"


def show_image(ax: plt.Axes, img: Tensor, title: str = "", color: str = "black") -> None:
    """Draw an image ``(C, H, W)`` in [0, 1] on ``ax`` without ticks, with a small title."""
    arr, cmap = to_imshow(img)
    ax.imshow(arr, cmap=cmap, vmin=0, vmax=1)
    if title:
        ax.set_title(title, fontsize=7, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
