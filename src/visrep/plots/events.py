"""Event representations as images: a composite frame and the first channels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save


def plot_event_frames(
    frames: Tensor, composite: Tensor, title: str, path: str | Path, max_channels: int = 8
) -> Path:
    """The composite image, then each channel of one representation (at most ``max_channels``).

    Args:
        frames: one sample's representation ``(C, H, W)``.
        composite: its displayable image ``(3, H, W)`` or ``(1, H, W)`` in [0, 1] (blue: the first
            half of the channels, red: the second half).
        title: the figure title.
        path: the PNG to write.
        max_channels: channels drawn beside the composite.
    """
    if frames.dim() != 3 or composite.dim() != 3:
        raise ShapeError(
            f"frames and composite must be (C, H, W), got {tuple(frames.shape)} and "
            f"{tuple(composite.shape)}"
        )
    c = frames.shape[0]
    shown = min(c, max_channels)
    fig, axes = plt.subplots(1, shown + 1, figsize=(2.2 * (shown + 1), 2.6), squeeze=False)
    img = composite.detach().float().cpu().permute(1, 2, 0).numpy()
    axes[0, 0].imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray")
    h = c // 2
    halves = f"blue |ch 0-{h - 1}|, red |ch {h}-{c - 1}|" if h > 1 else "blue ch 0, red ch 1"
    axes[0, 0].set_title(halves if img.shape[2] == 3 else "frame", fontsize=8)
    for k in range(shown):
        ax = axes[0, k + 1]
        ax.imshow(frames[k].detach().float().cpu().numpy(), cmap="viridis")
        ax.set_title(f"channel {k}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    more = f" (first {shown} of {c} channels)" if c > shown else ""
    fig.suptitle(title + more, fontsize=9)
    return save(fig, path, dpi=100)
