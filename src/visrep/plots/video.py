"""Video figures: clips as frame strips, animated GIFs, forecasts beside the truth, per-step errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, show_image


def _pick(t: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` frame indices of ``t``, evenly spread, first and last included."""
    if t <= max_frames:
        return list(range(t))
    return np.round(np.linspace(0, t - 1, max_frames)).astype(int).tolist()


def _check(x: Tensor, name: str, ndim: int) -> None:
    if x.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimensions, got {tuple(x.shape)}")


def plot_clip_strips(
    clips: Tensor,
    titles: Sequence[str],
    path: str | Path,
    max_frames: int = 8,
    correct: Sequence[bool] | None = None,
    frame_ids: Sequence[int] | None = None,
) -> Path:
    """One row of frames per clip, its title on the left; rows of wrong predictions in red.

    Args:
        clips: ``(N, T, C, H, W)`` in [0, 1].
        titles: one per clip (e.g. ``"pred 3 / true 3"``).
        path: the image file written.
        max_frames: frames shown per row (evenly spread over the clip, first and last kept).
        correct: per clip, whether the prediction was right (black) or wrong (red); None: black.
        frame_ids: the frame number to print above each of the ``T`` columns (None: 0..T-1).
    """
    _check(clips, "clips", 5)
    n, t = clips.shape[:2]
    if len(titles) != n:
        raise ShapeError(f"plot_clip_strips: {len(titles)} titles for {n} clips")
    cols = _pick(t, max_frames)
    h, w = clips.shape[-2:]
    fig, axes = plt.subplots(
        n, len(cols), figsize=(len(cols) * 1.3 * w / max(h, w) + 1, n * 1.3), squeeze=False
    )
    for i in range(n):
        color = "black" if correct is None or correct[i] else "red"
        for j, f in enumerate(cols):
            ax = axes[i, j]
            label = f if frame_ids is None else int(frame_ids[f])
            show_image(ax, clips[i, f], f"t={label}" if i == 0 else "")
            if j == 0:
                ax.set_ylabel(titles[i], fontsize=7, color=color, rotation=0, ha="right")
    return save(fig, path)


def save_gif(frames: Tensor, path: str | Path, fps: float = 8.0) -> Path:
    """An animated GIF (looping) of a clip ``(T, C, H, W)`` in [0, 1] (1 or 3 channels)."""
    _check(frames, "frames", 4)
    if fps <= 0:
        raise ShapeError(f"save_gif: fps must be > 0, got {fps}")
    x = (frames.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x.float().mean(1, keepdim=True).to(torch.uint8).expand(-1, 3, -1, -1)
    images = [Image.fromarray(f.permute(1, 2, 0).contiguous().numpy()) for f in x]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return path


def plot_forecast(
    inputs: Tensor, truth: Tensor, pred: Tensor, path: str | Path, max_rows: int = 4
) -> Path:
    """Per sequence three rows: the frames seen (``input``), the true future, the forecast.

    Args:
        inputs: ``(N, T_in, C, H, W)`` in [0, 1].
        truth, pred: ``(N, T_out, C, H, W)`` in [0, 1].
        max_rows: sequences shown (the first ones).
    """
    for x, name in ((inputs, "inputs"), (truth, "truth"), (pred, "pred")):
        _check(x, name, 5)
    if truth.shape != pred.shape:
        raise ShapeError(f"plot_forecast: truth {tuple(truth.shape)} != pred {tuple(pred.shape)}")
    n = min(len(inputs), max_rows)
    cols = max(inputs.shape[1], truth.shape[1])
    fig, axes = plt.subplots(3 * n, cols, figsize=(cols * 1.1 + 1, 3 * n * 1.1), squeeze=False)
    for i in range(n):
        for r, (x, name) in enumerate(((inputs, "input"), (truth, "truth"), (pred, "forecast"))):
            for j in range(cols):
                ax = axes[3 * i + r, j]
                ax.axis("off")
                if j < x.shape[1]:
                    show_image(ax, x[i, j], f"t={j + 1}" if r != 0 or i == 0 else "")
                    ax.axis("on")
                    if j == 0:
                        ax.set_ylabel(f"{name} {i}", fontsize=7, rotation=0, ha="right")
    return save(fig, path)


def plot_per_step(values: dict[str, Sequence[float]], ylabel: str, path: str | Path) -> Path:
    """One line per method of a metric against the forecast step (1, 2, ...)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, v in values.items():
        steps = np.arange(1, len(v) + 1)
        ax.plot(steps, np.asarray(v, dtype=float), marker="o", ms=3, label=name)
    ax.set_xlabel("predicted step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
