"""Attribution maps (Grad-CAM, occlusion, saliency, integrated gradients) over their images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from visrep.plots._save import save, to_imshow
from visrep.utils.checks import check_images


def plot_attributions(
    images: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
    titles: Sequence[str] | None = None,
    alpha: float = 0.55,
) -> Path:
    """A grid: one column per image; the image, then one overlay row per method.

    Non-negative maps use ``jet`` from 0 to their maximum per image; signed maps ``bwr``
    symmetric around 0.

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        maps: method name -> ``(B, H, W)``.
        path: the PNG to write.
        titles: one per image (e.g. true and predicted class).
        alpha: opacity of the maps over the grey image.
    """
    check_images(images, "images")
    n, rows = images.shape[0], 1 + len(maps)
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.7 * rows), squeeze=False)
    for j in range(n):
        img, cmap = to_imshow(images[j])
        axes[0, j].imshow(img, cmap=cmap, vmin=0, vmax=1)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for i, (name, m) in enumerate(maps.items(), start=1):
            mj = m[j].detach().float().cpu().numpy()
            ax = axes[i, j]
            ax.imshow(img.mean(-1) if img.ndim == 3 else img, cmap="gray", vmin=0, vmax=1)
            lim = float(np.abs(mj).max()) or 1.0
            signed = bool((mj < 0).any())
            ax.imshow(mj, cmap="bwr" if signed else "jet", alpha=alpha,
                      vmin=-lim if signed else 0.0, vmax=lim)  # fmt: skip
            if j == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
