"""Feature-space helpers shared by training-time evaluation (:mod:`visrep.tasks.embedding`) and
the analysis tools (:mod:`visrep.analysis.interpret`): the ``k`` nearest neighbours of each
query by matrix products, a seeded subset of points, and the t-SNE projection (seed 004).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import ConfigError, ShapeError

__all__ = ["METRICS", "nearest_indices", "neighbour_distances", "subsample", "tsne"]

METRICS = ("cosine", "l2")


def _prepare(queries: Tensor, bank: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    if queries.dim() != 2 or bank.dim() != 2 or queries.shape[1] != bank.shape[1]:
        raise ShapeError(
            f"queries (Q, D) and bank (N, D) must share D, got {tuple(queries.shape)} and "
            f"{tuple(bank.shape)}"
        )
    if metric not in METRICS:
        raise ConfigError(f"metric must be 'cosine' or 'l2', got {metric!r}")
    q = queries if queries.is_floating_point() else queries.float()
    b = bank if bank.is_floating_point() else bank.float()
    if metric == "cosine":
        q, b = F.normalize(q, dim=1), F.normalize(b, dim=1)
    return q, b


def nearest_indices(
    queries: Tensor,
    bank: Tensor,
    k: int,
    metric: str = "l2",
    chunk: int = 1024,
    exclude_self: bool = False,
) -> Tensor:
    """Indices of the ``k`` nearest rows of ``bank`` for each query, nearest first, by matrix
    products (AlexNet's feature-space neighbours, Krizhevsky et al. 2012, Fig. 4).

    The ranking key is ``-<q, b> / (|q| |b|)`` for ``cosine`` and ``|b|^2 - 2 <q, b>`` for
    ``l2`` (``|q|^2`` is constant per query). Queries are processed ``chunk`` at a time, so
    memory is ``chunk x N``.

    Args:
        queries: ``(Q, D)``.
        bank: ``(N, D)``.
        k: neighbours per query (at most ``N``; ``N - 1`` with ``exclude_self``).
        metric: ``"cosine"`` or ``"l2"``.
        chunk: queries per matrix product.
        exclude_self: the queries are the bank (leave-one-out retrieval): row ``i`` is never
            its own neighbour.

    Returns:
        ``(Q, k)`` int64 indices into ``bank``.

    >>> nearest_indices(torch.tensor([[0.9, 0.2, 0.0]]), torch.eye(3), 2, "cosine")
    tensor([[0, 1]])
    >>> nearest_indices(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[0.0], [1.0], [3.0]]),
    ...                 1, exclude_self=True)
    tensor([[1],
            [0],
            [1]])
    """
    q, b = _prepare(queries, bank, metric)
    n = b.shape[0]
    if exclude_self and q.shape[0] != n:
        raise ShapeError(f"exclude_self needs the queries to be the bank, got {q.shape[0]} and {n}")
    limit = n - 1 if exclude_self else n
    if not 1 <= k <= limit:
        what = f"the other samples {limit}" if exclude_self else f"the bank size {limit}"
        raise ConfigError(f"k must be between 1 and {what}, got {k}")
    q, b = q.detach(), b.detach()
    b_sq = (b * b).sum(1)
    out = []
    for start in range(0, q.shape[0], chunk):  # chunks of queries, not samples: memory chunk x N
        dots = q[start : start + chunk] @ b.T
        key = -dots if metric == "cosine" else b_sq - 2 * dots
        if exclude_self:
            rows = torch.arange(key.shape[0], device=key.device)
            key[rows, start + rows] = math.inf
        out.append(key.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def neighbour_distances(queries: Tensor, bank: Tensor, idx: Tensor, metric: str = "l2") -> Tensor:
    """The distances ``(Q, k)`` of the bank rows ``idx`` (``(Q, k)``) to their queries:
    ``1 - cos`` or ``|q - b|``, computed directly (the expanded ``|q - b|^2`` of the ranking
    key cancels badly near 0); costs ``Q x k x D``."""
    q, b = _prepare(queries, bank, metric)
    near = b[idx]  # (Q, k, D)
    if metric == "cosine":
        return 1 - (near * q[:, None]).sum(-1)
    return (near - q[:, None]).norm(dim=-1)


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded uniform subset of ``range(n)`` of at most ``max_points``.

    >>> subsample(5, 10).tolist(), subsample(100, 3).tolist()
    ([0, 1, 2, 3, 4], [51, 63, 83])
    """
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def tsne(
    z: Tensor | np.ndarray, n_components: int = 2, perplexity: float = 30.0, seed: int = 0
) -> np.ndarray:
    """t-SNE embedding (van der Maaten & Hinton 2008), scikit-learn, PCA initialisation.

    The perplexity is capped at ``(N - 1) / 3`` so small sets work. OpenMP runs on torch's
    threads only (more spin on a busy machine: t-SNE measured 100x slower).

    Returns:
        Points ``(N, n_components)``.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[0] < 4:
        raise ShapeError(f"t-SNE needs (N, D) features with N >= 4, got {z.shape}")
    perp = max(1.0, min(perplexity, (z.shape[0] - 1) / 3))
    with threadpool_limits(torch.get_num_threads()):
        return TSNE(n_components, perplexity=perp, init="pca", random_state=seed).fit_transform(z)
