"""Figures of generative models: image grids, reconstructions, latent interpolations, the
2-d latent manifold (Kingma and Welling 2014, fig. 4), 2-d samples against a mixture's modes,
samples beside their nearest training images, and unpaired translations (CycleGAN).

Every image function takes images ``(N, C, H, W)`` in [0, 1] (grey for any channel count
but 3) and tiles them into one picture with :func:`tile_images`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from visrep.errors import ShapeError
from visrep.plots._save import save, to_imshow
from visrep.utils.checks import check_images

__all__ = [
    "plot_image_grid",
    "plot_interpolations",
    "plot_latent_manifold",
    "plot_nearest_neighbours",
    "plot_points_2d",
    "plot_reconstructions",
    "plot_translations",
    "tile_images",
]


def tile_images(images: Tensor, ncol: int, pad: int = 1, pad_value: float = 1.0) -> Tensor:
    """Images ``(N, C, H, W)`` tiled row by row, ``ncol`` per row, ``pad`` pixels apart.

    Returns:
        ``(C, rows * (H + pad) + pad, ncol * (W + pad) + pad)`` with ``rows = ceil(N / ncol)``;
        the empty cells of the last row and the gaps are ``pad_value``.

    >>> tile_images(torch.zeros(5, 1, 2, 3), ncol=2).shape
    torch.Size([1, 10, 9])
    """
    check_images(images)
    if ncol < 1 or len(images) == 0:
        raise ShapeError(f"tile_images: need ncol >= 1 and images, got {ncol} and {len(images)}")
    n, c, h, w = images.shape
    rows = math.ceil(n / ncol)
    cells = torch.full((rows * ncol, c, h + pad, w + pad), pad_value, dtype=torch.float32)
    cells[:n, :, pad:, pad:] = images.detach().float().cpu()
    grid = cells.view(rows, ncol, c, h + pad, w + pad).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + pad), ncol * (w + pad))
    out = torch.full((c, grid.shape[1] + pad, grid.shape[2] + pad), pad_value)
    out[:, : grid.shape[1], : grid.shape[2]] = grid
    return out


def _figure(grid: Tensor) -> tuple[plt.Figure, plt.Axes]:
    # 0.03 inch a pixel, between 4 and 14 inches wide: tiny images (8x8 digits) stay visible
    h, w = grid.shape[1:]
    width = min(max(w * 0.03, 4.0), 14.0)
    fig, ax = plt.subplots(figsize=(width, max(width * h / w, 1.0)))
    arr, cmap = to_imshow(grid)
    ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def plot_image_grid(
    images: Tensor, path: str | Path, ncol: int | None = None, title: str = ""
) -> Path:
    """A grid of images (e.g. samples from a VAE's prior), ``ncol`` per row (default: square).

    >>> import tempfile
    >>> plot_image_grid(torch.rand(6, 1, 8, 8), Path(tempfile.mkdtemp()) / "g.png").is_file()
    True
    """
    check_images(images)
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    fig, ax = _figure(tile_images(images, ncol))
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_reconstructions(
    inputs: Tensor, reconstructions: Tensor, path: str | Path, ncol: int = 8, title: str = ""
) -> Path:
    """Inputs and their reconstructions in alternating rows (``in``, ``out``), ``ncol`` a row.

    >>> import tempfile
    >>> x = torch.rand(10, 1, 8, 8)
    >>> plot_reconstructions(x, x, Path(tempfile.mkdtemp()) / "r.png", ncol=4).is_file()
    True
    """
    check_images(inputs, "inputs")
    if inputs.shape != reconstructions.shape:
        raise ShapeError(
            f"plot_reconstructions: inputs {tuple(inputs.shape)} and reconstructions "
            f"{tuple(reconstructions.shape)} must have the same shape"
        )
    n = len(inputs)
    ncol = max(1, min(ncol, n))
    rows = math.ceil(n / ncol)
    pad = ncol * rows - n
    blank = torch.ones(pad, *inputs.shape[1:])
    a = torch.cat([inputs.detach().float().cpu(), blank]).view(rows, ncol, *inputs.shape[1:])
    b = torch.cat([reconstructions.detach().float().cpu(), blank]).view_as(a)
    pairs = torch.stack([a, b], 1).reshape(-1, *inputs.shape[1:])  # in, out, in, out ... rows
    fig, ax = _figure(tile_images(pairs, ncol))
    h = inputs.shape[2] + 1
    ax.set_yticks([h * (i + 0.5) for i in range(2 * rows)])
    ax.set_yticklabels(["in", "out"] * rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_interpolations(frames: Tensor, path: str | Path, title: str = "") -> Path:
    """One row per interpolation: ``frames`` ``(R, S, C, H, W)``, ``S`` steps from one end to
    the other (e.g. decoded points on the segment between two images' latent codes).

    >>> import tempfile
    >>> plot_interpolations(torch.rand(2, 5, 1, 8, 8), Path(tempfile.mkdtemp()) / "i.png").is_file()
    True
    """
    if not isinstance(frames, Tensor) or frames.dim() != 5 or 0 in frames.shape[:2]:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ShapeError(f"plot_interpolations: frames must be (R, S, C, H, W), got {shape}")
    fig, ax = _figure(tile_images(frames.flatten(0, 1), frames.shape[1]))
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_latent_manifold(
    images: Tensor, values: Sequence[float] | np.ndarray | Tensor, path: str | Path, title: str = ""
) -> Path:
    """The decoded images of an ``n x n`` grid of 2-d latents (Kingma and Welling 2014, fig. 4).

    Args:
        images: ``(n * n, C, H, W)``, row-major: row ``i`` has ``z_2 = values[n - 1 - i]``
            (largest at the top), column ``j`` has ``z_1 = values[j]``.
        values: the ``n`` latent coordinates, increasing.
        path: the PNG to write.
        title: the figure's title.

    >>> import tempfile
    >>> v = [-1.0, 0.0, 1.0]
    >>> plot_latent_manifold(torch.rand(9, 1, 8, 8), v, Path(tempfile.mkdtemp()) / "m.png").is_file()
    True
    """
    check_images(images)
    v = np.asarray(values, dtype=float).reshape(-1)
    n = len(v)
    if n < 1 or len(images) != n * n:
        raise ShapeError(f"plot_latent_manifold: {len(images)} images for {n} values; need n * n")
    fig, ax = _figure(tile_images(images, n))
    h, w = images.shape[2] + 1, images.shape[3] + 1
    ax.set_xticks([w * (j + 0.5) for j in range(n)])
    ax.set_xticklabels([f"{x:.2g}" for x in v], fontsize=6, rotation=90)
    ax.set_yticks([h * (i + 0.5) for i in range(n)])
    ax.set_yticklabels([f"{x:.2g}" for x in v[::-1]], fontsize=6)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_points_2d(
    real: Tensor | np.ndarray,
    fake: Tensor | np.ndarray,
    centers: Tensor | np.ndarray | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Real and generated 2-d points over the mixture's mode centres (the mode-collapse figures
    of VEEGAN, Srivastava et al. 2017): real in grey, generated in blue, centres as red
    crosses; equal axes.

    Args:
        real: ``(N, 2)`` data points.
        fake: ``(M, 2)`` generated points.
        centers: ``(K, 2)`` mode centres, or None.
        path: the PNG to write.
        title: the figure's title.

    >>> import tempfile
    >>> pts = torch.randn(50, 2)
    >>> plot_points_2d(pts, pts, torch.zeros(1, 2), Path(tempfile.mkdtemp()) / "p.png").is_file()
    True
    """
    arrays = {}
    for name, v in (("real", real), ("fake", fake), ("centers", centers)):
        if v is None:
            continue
        a = v.detach().float().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v, float)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ShapeError(f"plot_points_2d: {name} must be points (N, 2), got {a.shape}")
        arrays[name] = a
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*arrays["real"].T, s=3, c="0.6", alpha=0.5, linewidths=0, label="real")
    ax.scatter(*arrays["fake"].T, s=3, c="tab:blue", alpha=0.6, linewidths=0, label="generated")
    if "centers" in arrays:
        ax.scatter(*arrays["centers"].T, s=25, c="tab:red", marker="x", label="modes")
    ax.set_aspect("equal", adjustable="datalim")
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    for handle in legend.legend_handles:  # the dots at a readable size, whatever ``s`` was
        handle.set_sizes([20])
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def plot_nearest_neighbours(
    samples: Tensor, neighbours: Tensor, path: str | Path, title: str = ""
) -> Path:
    """One row per generated sample: the sample, a blank column, then its nearest training
    images, nearest first (Karras et al. 2018's check that samples are not copies; seed 001).

    Args:
        samples: ``(N, C, H, W)`` generated images.
        neighbours: ``(N, k, C, H, W)`` their nearest training images.
        path: the PNG to write.
        title: the figure's title.

    >>> import tempfile
    >>> s = torch.rand(3, 1, 8, 8)
    >>> plot_nearest_neighbours(s, torch.rand(3, 2, 1, 8, 8), Path(tempfile.mkdtemp()) / "n.png").is_file()
    True
    """
    check_images(samples, "samples")
    if (
        not isinstance(neighbours, Tensor)
        or neighbours.dim() != 5
        or neighbours.shape[0] != len(samples)
        or neighbours.shape[2:] != samples.shape[1:]
        or neighbours.shape[1] < 1
    ):
        shape = tuple(neighbours.shape) if isinstance(neighbours, Tensor) else type(neighbours)
        raise ShapeError(
            f"plot_nearest_neighbours: neighbours must be (N, k, C, H, W) = ({len(samples)}, k, "
            f"{', '.join(map(str, samples.shape[1:]))}), got {shape}"
        )
    n, k = neighbours.shape[:2]
    blank = torch.ones(n, 1, *samples.shape[1:])
    rows = torch.cat(
        [samples.detach().float().cpu()[:, None], blank, neighbours.detach().float().cpu()], 1
    )
    fig, ax = _figure(tile_images(rows.flatten(0, 1), k + 2))
    w = samples.shape[3] + 1
    ax.set_xticks([w * 0.5] + [w * (j + 2.5) for j in range(k)])
    ax.set_xticklabels(["generated"] + [f"nearest {j + 1}" for j in range(k)], fontsize=7)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def _as_rgb(x: Tensor, channels: int) -> Tensor:
    x = x.detach().float().cpu()
    return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x


def plot_translations(
    a: Tensor, ab: Tensor, aba: Tensor, path: str | Path, title: str = ""
) -> Path:
    """Unpaired translation, one column per image: the input, its translation to the other
    domain, and the translation back (Zhu et al. 2017's cycle ``x -> G(x) -> F(G(x))``).

    Args:
        a: inputs ``(N, C, H, W)``.
        ab: translations ``(N, C', H, W)`` (``C' != C`` when one side is grey: it is repeated
            to the other's channels).
        aba: reconstructions ``(N, C, H, W)``.
        path: the PNG to write.
        title: the figure's title.

    >>> import tempfile
    >>> x = torch.rand(4, 3, 8, 8)
    >>> plot_translations(x, x, x, Path(tempfile.mkdtemp()) / "t.png").is_file()
    True
    """
    for name, v in (("a", a), ("ab", ab), ("aba", aba)):
        check_images(v, name)
    if not (len(a) == len(ab) == len(aba)) or a.shape != aba.shape or a.shape[2:] != ab.shape[2:]:
        raise ShapeError(
            f"plot_translations: a {tuple(a.shape)}, ab {tuple(ab.shape)} and aba "
            f"{tuple(aba.shape)} must hold the same number of images of one size"
        )
    ca, cb = a.shape[1], ab.shape[1]
    if ca != cb and 1 not in (ca, cb):
        raise ShapeError(
            f"plot_translations: {ca} and {cb} channels; one side must be grey or both alike"
        )
    c = max(ca, cb)
    rows = torch.cat([_as_rgb(a, c), _as_rgb(ab, c), _as_rgb(aba, c)])
    fig, ax = _figure(tile_images(rows, len(a)))
    h = a.shape[2] + 1
    ax.set_yticks([h * (i + 0.5) for i in range(3)])
    ax.set_yticklabels(["input", "translated", "reconstructed"], fontsize=7)
    ax.set_title(title, fontsize=9)
    return save(fig, path)
