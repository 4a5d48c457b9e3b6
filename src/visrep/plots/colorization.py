"""Figures of a colourisation run: grey input, mean-chroma baseline, prediction and truth."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, show_image

_COLUMNS = ("grey input (L)", "mean chroma", "prediction", "truth")


def plot_colorizations(
    grey: Tensor, baseline: Tensor, pred: Tensor, truth: Tensor, path: str | Path
) -> Path:
    """One row per image: its lightness alone, the mean-chroma baseline, the prediction and the
    true colours, all sRGB ``(N, 3, H, W)`` in [0, 1].

    >>> import tempfile, torch
    >>> x = torch.rand(2, 3, 8, 8)
    >>> plot_colorizations(x, x, x, x, Path(tempfile.mkdtemp()) / "c.png").is_file()
    True
    """
    shapes = {tuple(t.shape) for t in (grey, baseline, pred, truth)}
    if len(shapes) != 1 or grey.dim() != 4 or grey.shape[1] != 3 or len(grey) == 0:
        raise ShapeError(f"plot_colorizations: four (N, 3, H, W) batches, got {sorted(shapes)}")
    n = len(grey)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
    for i in range(n):
        for j, images in enumerate((grey, baseline, pred, truth)):
            show_image(axes[i, j], images[i], _COLUMNS[j] if i == 0 else "")
    return save(fig, path)
