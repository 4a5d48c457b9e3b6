"""What ``visrep explain`` computes for a run: attribution maps, neighbours, 2-D projections.

Built from :mod:`visrep.analysis.interpret`; the figures are :mod:`visrep.plots.attribution`
and :mod:`visrep.plots.embedding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from visrep.analysis import interpret as I
from visrep.analysis.samples import take
from visrep.errors import ConfigError, ShapeError
from visrep.utils.embedding import subsample

__all__ = [
    "ATTRIBUTIONS",
    "PROJECTIONS",
    "Neighbours",
    "attribution_maps",
    "neighbours",
    "projection",
]

ATTRIBUTIONS = ("gradcam", "occlusion", "saliency", "integrated_gradients")
PROJECTIONS = ("pca", "tsne")


def attribution_maps(
    net: nn.Module,
    x: Tensor,
    target: Tensor,
    methods: Sequence[str],
    layer: str | None = None,
    window: int = 4,
    stride: int = 2,
    baseline: float = 0.0,
    ig_steps: int = 32,
    batch_size: int = 256,
) -> tuple[dict[str, Tensor], str | None, str | None]:
    """Maps ``(B, H, W)`` on the CPU for each attribution method of ``methods``.

    Args:
        net: classifier, eval mode; x: images ``(B, C, H, W)``; target: classes ``(B,)``.
        methods: any of :data:`ATTRIBUTIONS` (others are ignored).
        layer: Grad-CAM's layer; None: :func:`~visrep.analysis.interpret.default_gradcam_layer`.
        window, stride, baseline: occlusion's window and stride (pixels) and the baseline pixel
            value of occlusion and integrated gradients.
        ig_steps: integrated-gradients steps.
        batch_size: images per forward pass.

    Returns:
        ``(maps, gradcam_layer, gradcam_skipped)``: the layer Grad-CAM used (None: the output of
        ``forward_features``) and, when the default layer has no spatial layout (an MLP), why
        Grad-CAM was skipped. A named ``layer`` without one raises instead.
    """
    maps: dict[str, Tensor] = {}
    used, skipped = None, None
    for m in methods:
        if m == "gradcam":
            used = layer or I.default_gradcam_layer(net, x)
            try:
                maps[m] = I.gradcam(net, x, target, layer=used)
            except ShapeError as e:
                if layer is not None:
                    raise
                skipped = str(e)
        elif m == "occlusion":
            maps[m] = I.occlusion(net, x, target, window, stride, baseline, batch_size=batch_size)
        elif m == "saliency":
            maps[m] = I.saliency(net, x, target)
        elif m == "integrated_gradients":
            maps[m] = I.integrated_gradients(net, x, target, baseline, ig_steps, batch_size).sum(1)
    return {k: v.cpu() for k, v in maps.items()}, used, skipped


@dataclass
class Neighbours:
    """The ``k`` nearest bank images of each query in ``net.embed`` space.

    Attributes:
        images: ``(Q, k, C, H, W)`` the neighbours, nearest first.
        labels: ``(Q, k)`` their classes.
        distances: ``(Q, k)`` their distances.
        agreement: fraction of neighbours sharing their query's class.
    """

    images: Tensor
    labels: Tensor
    distances: Tensor
    agreement: float


def neighbours(
    net: nn.Module,
    bank: Dataset,
    x: Tensor,
    y: Tensor,
    k: int = 5,
    metric: str = "cosine",
    batch_size: int = 256,
) -> Neighbours:
    """The ``k`` nearest images of ``bank`` (e.g. the training split) to each image of ``x``."""
    if k > len(bank):
        raise ConfigError(f"--k {k}: the training split has fewer images ({len(bank)})")
    z_bank, bank_y = I.embed(net, bank, batch_size, x.device)
    q, _ = I.embed(net, x, batch_size)
    dist, idx = I.nearest_neighbours(q, z_bank, k, metric)
    near, _ = take(bank, idx.flatten().tolist())
    near_y = bank_y[idx]
    agree = float((near_y == y.cpu()[:, None]).float().mean())
    return Neighbours(near.reshape(*idx.shape, *near.shape[1:]), near_y, dist, agree)


def projection(
    net: nn.Module,
    ds: Dataset,
    method: str,
    max_points: int = 2000,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, Tensor, str]:
    """A 2-D PCA or t-SNE of at most ``max_points`` embeddings of ``ds`` (a seeded subset).

    Returns:
        ``(points (N, 2), labels (N,), detail)``, e.g. ``"N=80, 71% of variance"``.
    """
    if method not in PROJECTIONS:
        raise ConfigError(f"projection must be one of {', '.join(PROJECTIONS)}, got {method!r}")
    points = subsample(len(ds), max_points, seed)
    z, zy = I.embed(net, Subset(ds, points.tolist()), batch_size)
    if method == "pca":
        p2, ratio = I.pca(z, 2)
        return p2, zy, f"N={len(z)}, {ratio.sum():.0%} of variance"
    return I.tsne(z, seed=seed), zy, f"N={len(z)}"
