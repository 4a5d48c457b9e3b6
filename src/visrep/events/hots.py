"""HOTS: a hierarchy of event-based time surfaces (Lagorce et al. 2016, TPAMI), vectorised.

Layer ``l`` reads events ``e_i = (x_i, y_i, t_i, p_i)`` with ``p_i`` in ``0 .. P_l - 1``
(``P_1 = 2`` camera polarities, then ``P_{l+1} = N_l``). Each event gets a local time surface
over a ``(2 R_l + 1)^2`` neighbourhood and every incoming polarity (Eq. 3):
``S_i(u, p) = exp(-(t_i - T_i(x_i + u, p)) / tau_l)``, with ``T_i(q, p)`` the time of the
last event of polarity ``p`` at pixel ``q`` up to and including ``e_i`` in stream order (0
where there is none, and outside the sensor); the memory starts empty for every sample. The
event then takes the polarity ``k`` of its closest prototype ``C_k`` (Euclidean) and goes on
to layer ``l + 1``. The last layer's prototype counts per sample are the sample's histogram,
classified by the nearest class signature (Sec. 3.3) under one of :data:`DISTANCES`.

Prototypes are learnt layer after layer on the events of training samples passed through
the layers already learnt, either by the paper's online rule (Alg. 1,
:func:`online_prototypes`: a loop over at most ``fit_events`` events, in stream order) or by
mini-batch k-means on the same time surfaces (:func:`kmeans_prototypes`, scikit-learn).
Time surfaces and assignments are vectorised over all events (:class:`TimeSurfaceIndex`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.events.types import EventBatch

__all__ = [
    "DISTANCES",
    "HOTS",
    "TimeSurfaceIndex",
    "assign_prototypes",
    "histogram_distances",
    "hots_time_surfaces",
    "kmeans_prototypes",
    "online_prototypes",
]

#: the histogram distances of Lagorce et al. 2016, Sec. 3.3
DISTANCES = ("standard", "normalised", "bhattacharyya")
_CHUNK = 1 << 22  # (event, offset) queries or surface values per vectorised step


class TimeSurfaceIndex:
    """The events of a batch sorted for local time-surface look-ups (Eq. 3), built once.

    Events are stably sorted by ``(sample, pixel)``; within a pixel's run stream order is time
    order. ``last[k, p]`` is the sorted position of the last event of polarity ``p`` at or
    before position ``k`` in its run (-1: none), a running maximum per polarity. The surface
    of event ``i`` at offset ``u`` is then one ``searchsorted`` (the last event at pixel
    ``x_i + u`` not after ``e_i``) and one gather of ``last``: ``O(N (2R + 1)^2 log N)`` work
    and ``O(N P)`` memory, for any number of events; never a loop over events.

    Args:
        x, y, t, p: ``(N,)`` integer tensors; ``t`` sorted within each sample.
        offsets: ``(B + 1,)`` sample boundaries.
        sensor_size: ``(W, H)``.
        channels: the number of incoming polarities ``P`` (``0 <= p < P``).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        t: Tensor,
        p: Tensor,
        offsets: Tensor,
        sensor_size: tuple[int, int],
        channels: int,
    ) -> None:
        n = len(t)
        if not (len(x) == len(y) == len(p) == n) or int(offsets[-1]) != n:
            raise ShapeError(
                f"hots: x, y, t, p must be (N,) with offsets[-1] = N, got {len(x)}, {len(y)}, "
                f"{n}, {len(p)} and offsets[-1] = {int(offsets[-1])}"
            )
        if n and (int(p.min()) < 0 or int(p.max()) >= channels):
            raise ShapeError(f"hots: polarities must lie in 0..{channels - 1}, got {int(p.max())}")
        self.W, self.H = (int(v) for v in sensor_size)
        self.n, self.channels = n, channels
        dev = t.device
        counts = offsets[1:] - offsets[:-1]
        self.x, self.y, self.t = x.long(), y.long(), t.long()
        b = torch.repeat_interleave(torch.arange(len(counts), device=dev), counts)
        self.group = (b * self.H + self.y) * self.W + self.x  # one run per (sample, pixel)
        perm = torch.argsort(self.group, stable=True)
        self.g_sorted = self.group[perm]
        self.key = self.g_sorted * max(n, 1) + perm  # (run, stream position), increasing
        self.t_sorted = self.t[perm]
        self.rank = torch.empty_like(perm)
        self.rank[perm] = torch.arange(n, device=dev)
        pos = torch.arange(n, device=dev)
        new_run = torch.ones(n, dtype=torch.bool, device=dev)
        new_run[1:] = self.g_sorted[1:] != self.g_sorted[:-1]
        run_start = torch.where(new_run, pos, torch.zeros_like(pos)).cummax(0).values
        last = torch.full((n, channels), -1, dtype=torch.long, device=dev)
        last[pos, p.long()[perm]] = pos
        last = last.cummax(0).values if n else last
        self.last = torch.where(last >= run_start[:, None], last, torch.full_like(last, -1))

    def surfaces(self, rows: Tensor, radius: int, tau: float) -> Tensor:
        """The time surfaces of the events ``rows`` (stream positions).

        Returns:
            ``(len(rows), P * (2R + 1)^2)`` float32, laid out ``(p, dy, dx)``.
        """
        S = 2 * radius + 1
        m, P, dev = len(rows), self.channels, self.t.device
        out = torch.zeros(m, P, S * S, dtype=torch.float32, device=dev)
        if m == 0:
            return out.view(m, -1)
        grid = torch.arange(-radius, radius + 1, device=dev)
        dy, dx = (v.reshape(-1, 1) for v in torch.meshgrid(grid, grid, indexing="ij"))
        # rows in (pixel, time) order: each offset's queries then come sorted, so searchsorted
        # walks its keys in order (cache-friendly); results go back to the caller's order
        order = torch.argsort(self.rank[rows])
        rows = rows[order]
        xs, ys, ts, gs = self.x[rows], self.y[rows], self.t[rows], self.group[rows]
        per = max(1, _CHUNK // max(m * P, 1))
        for start in range(0, S * S, per):  # chunks of offsets, each over all rows at once
            ddy, ddx = dy[start : start + per], dx[start : start + per]
            qx, qy = xs + ddx, ys + ddy
            ok = (qx >= 0) & (qx < self.W) & (qy >= 0) & (qy < self.H)
            o, r = ok.nonzero(as_tuple=True)
            gq = gs[r] + ddy[o, 0] * self.W + ddx[o, 0]
            k = torch.searchsorted(self.key, gq * max(self.n, 1) + rows[r], right=True) - 1
            hit = (k >= 0) & (self.g_sorted[k.clamp(min=0)] == gq)
            o, r, k = o[hit], r[hit], k[hit]
            h, c = (self.last[k] >= 0).nonzero(as_tuple=True)  # polarities seen at x_i + u
            j = self.last[k[h], c]
            dt = (ts[r[h]] - self.t_sorted[j]).float()  # exact below 2^24 us
            out[order[r[h]], c, start + o[h]] = torch.exp(dt / -tau)
        return out.view(m, -1)


def hots_time_surfaces(
    x: Tensor,
    y: Tensor,
    t: Tensor,
    p: Tensor,
    offsets: Tensor,
    sensor_size: tuple[int, int],
    channels: int,
    radius: int,
    tau: float,
) -> Tensor:
    """Every event's local time surface (Lagorce et al. 2016, Eq. 3); see the module doc.

    Shape:
        ``(N, channels * (2 radius + 1)^2)``.

    >>> o = torch.tensor([0, 2])
    >>> s = hots_time_surfaces(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 10]),
    ...                        torch.tensor([0, 1]), o, (2, 1), 2, 1, 10.0)
    >>> s.view(2, 2, 3, 3)[1, :, 1].tolist()  # event 2's middle row: OFF at u=-1, ON at u=0
    [[0.3678794503211975, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    index = TimeSurfaceIndex(x, y, t, p, offsets, sensor_size, channels)
    return index.surfaces(torch.arange(index.n, device=t.device), radius, tau)


def assign_prototypes(surfaces: Tensor, prototypes: Tensor) -> Tensor:
    """The closest prototype of each surface, Euclidean (``cdist`` + ``argmin``): ``(N,)``."""
    if surfaces.dim() != 2 or prototypes.dim() != 2 or surfaces.shape[1] != prototypes.shape[1]:
        raise ShapeError(
            f"hots: surfaces (N, D) and prototypes (K, D) expected, got "
            f"{tuple(surfaces.shape)} and {tuple(prototypes.shape)}"
        )
    return torch.cdist(surfaces, prototypes.to(surfaces)).argmin(1)


def online_prototypes(
    surfaces: Tensor, prototypes: Tensor, counts: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One pass of the paper's online clustering (Lagorce et al. 2016, Alg. 1), in order.

    For each surface ``S_i``: the closest ``C_k`` (Euclidean),
    ``beta = cos(C_k, S_i)``, ``alpha = 0.01 / (1 + p_k / 20000)``,
    ``C_k <- C_k + alpha (S_i - beta C_k)``, ``p_k <- p_k + 1``. Sequential by nature: one
    step per surface (a Python loop of tensor ops; the caller bounds the number of surfaces).

    Args:
        surfaces: ``(M, D)`` in stream order.
        prototypes: ``(K, D)`` initial ``C_k`` (not modified).
        counts: ``(K,)`` initial ``p_k`` (default 0).

    Returns:
        The prototypes after the pass (float64) and the counts ``p_k`` (int64).
    """
    c = prototypes.detach().double().clone()
    n = torch.zeros(len(c), dtype=torch.long) if counts is None else counts.clone().long().cpu()
    for s in surfaces.detach():
        s = s.double()
        k = int(((c - s) ** 2).sum(1).argmin())
        ck = c[k]
        beta = torch.dot(ck, s) / (ck.norm() * s.norm()).clamp(min=1e-12)
        alpha = 0.01 / (1 + int(n[k]) / 20000)
        c[k] = ck + alpha * (s - beta * ck)
        n[k] += 1
    return c, n


def kmeans_prototypes(surfaces: Tensor, k: int, seed: int = 0) -> Tensor:
    """``k`` prototypes by mini-batch k-means (scikit-learn) on ``(M, D)`` surfaces."""
    from sklearn.cluster import MiniBatchKMeans

    if len(surfaces) < k:
        raise ConfigError(f"hots: {len(surfaces)} surfaces cannot fit {k} prototypes")
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    km.fit(surfaces.double().numpy())
    return torch.from_numpy(km.cluster_centers_)


def histogram_distances(
    h: Tensor, ref: Tensor, distance: Literal["standard", "normalised", "bhattacharyya"]
) -> Tensor:
    """Distances between histograms (Lagorce et al. 2016, Sec. 3.3): ``(Q, R)``.

    ``standard``: ``||h - h'||``; ``normalised``: ``||h / card(h) - h' / card(h')||`` with
    ``card`` the sum of the counts; ``bhattacharyya``: ``-ln sum_j sqrt(hn_j hn'_j)`` on the
    normalised histograms ``hn``.

    >>> h = torch.tensor([[2.0, 2.0]])
    >>> d = histogram_distances(h, torch.tensor([[1.0, 1.0], [1.0, 0.0]]), "bhattacharyya")
    >>> [round(v, 4) for v in d[0].tolist()]  # 0 and ln(2) / 2
    [0.0, 0.3466]
    """
    h, ref = h.double(), ref.double()
    if distance == "standard":
        return torch.cdist(h, ref)
    hn = h / h.sum(1, keepdim=True).clamp(min=1e-12)
    rn = ref / ref.sum(1, keepdim=True).clamp(min=1e-12)
    if distance == "normalised":
        return torch.cdist(hn, rn)
    if distance == "bhattacharyya":
        return (-torch.log((hn.sqrt() @ rn.sqrt().T).clamp(min=1e-300))).clamp(min=0)
    raise ConfigError(f"--distance must be one of {', '.join(DISTANCES)}, got {distance!r}")


def _tuple(v: int | float | Sequence, n: int, name: str) -> tuple:
    vals = tuple(v) if isinstance(v, Sequence) else (v,)
    if len(vals) != n:
        raise ConfigError(f"hots: {name} needs one value per layer ({n}), got {list(vals)}")
    return vals


class HOTS(nn.Module):
    """A HOTS network: per-layer prototypes, fitted layer by layer; ``forward`` gives histograms.

    Defaults are the N-MNIST architecture of Lagorce et al. 2016 as reproduced by SpikeAI's
    HOTS: 3 layers, ``N = (4, 8, 16)`` (``K_N = 2``), ``R = (2, 4, 8)`` (``K_R = 2``),
    ``tau = (10, 100, 1000)`` ms (``K_tau = 10``).

    Args:
        num_prototypes: ``N_l`` per layer.
        radius: ``R_l`` per layer.
        tau: ``tau_l`` per layer, microseconds.
        learning: ``online`` (the paper's Alg. 1, initialised with the first ``N_l`` surfaces,
            one pass) or ``kmeans`` (mini-batch k-means).
        fit_events: events whose surfaces fit each layer at most (the first ones of a seeded
            sample of training streams, in stream order).
        seed: seeds the sample of training streams and k-means.
        chunk_events: events per vectorised surface + assignment step (bounds memory).
    """

    def __init__(
        self,
        num_prototypes: Sequence[int] = (4, 8, 16),
        radius: Sequence[int] = (2, 4, 8),
        tau: Sequence[float] = (1e4, 1e5, 1e6),
        learning: Literal["online", "kmeans"] = "online",
        fit_events: int = 100_000,
        seed: int = 0,
        chunk_events: int = 16_384,
    ) -> None:
        super().__init__()
        n = len(num_prototypes)
        self.num_prototypes = tuple(int(v) for v in _tuple(num_prototypes, n, "num_prototypes"))
        self.radius = tuple(int(v) for v in _tuple(radius, n, "radius"))
        self.tau = tuple(float(v) for v in _tuple(tau, n, "tau"))
        if n < 1 or min(self.num_prototypes) < 1 or min(self.radius) < 0:
            raise ConfigError(
                f"hots: num_prototypes >= 1 and radius >= 0 per layer, got "
                f"{list(self.num_prototypes)}, {list(self.radius)}"
            )
        if not all(v > 0 and math.isfinite(v) for v in self.tau):
            raise ConfigError(f"hots: tau must be positive, got {list(self.tau)}")
        if learning not in ("online", "kmeans"):
            raise ConfigError(f"hots: learning must be online or kmeans, got {learning!r}")
        self.learning, self.fit_events, self.seed = learning, int(fit_events), int(seed)
        self.chunk_events = int(chunk_events)
        self.channels = (2, *self.num_prototypes[:-1])
        self.prototypes = nn.ParameterList(
            nn.Parameter(torch.zeros(k, c * (2 * r + 1) ** 2, dtype=torch.float64), False)
            for k, c, r in zip(self.num_prototypes, self.channels, self.radius, strict=True)
        )
        self.fitted_events: list[int] = []

    def _layer(self, batch: EventBatch, p: Tensor, layer: int) -> TimeSurfaceIndex:
        """Layer ``layer``'s index over a batch whose polarities are ``p``."""
        return TimeSurfaceIndex(
            batch.x, batch.y, batch.t, p, batch.offsets, batch.sensor_size, self.channels[layer]
        )

    def _assign(self, index: TimeSurfaceIndex, layer: int) -> Tensor:
        rows = torch.arange(index.n, device=index.t.device)
        proto = self.prototypes[layer].float()
        out = [
            assign_prototypes(index.surfaces(r, self.radius[layer], self.tau[layer]), proto)
            for r in rows.split(self.chunk_events)
        ]
        return torch.cat(out) if out else rows

    def polarities(self, batch: EventBatch, layers: int | None = None) -> Tensor:
        """The polarity of every event at the input of layer ``layers`` (default: the output)."""
        p = batch.p.long()
        for layer in range(len(self.num_prototypes) if layers is None else layers):
            p = self._assign(self._layer(batch, p, layer), layer)
        return p

    def fit(self, batch: EventBatch) -> HOTS:
        """Learn every layer's prototypes, layer after layer, on the streams of ``batch``."""
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(batch), generator=g)
        counts = batch.counts()[order]
        keep = min(len(batch), int((counts.cumsum(0) < self.fit_events).sum()) + 1)
        sub = EventBatch.from_streams([batch.stream(int(b)) for b in order[:keep]])
        self.fitted_events = []
        p = sub.p.long()
        for layer, k in enumerate(self.num_prototypes):
            index = self._layer(sub, p, layer)
            rows = torch.arange(min(index.n, self.fit_events))
            s = torch.cat([index.surfaces(r, self.radius[layer], self.tau[layer])
                           for r in rows.split(self.chunk_events)])  # fmt: skip
            if len(s) < k:
                raise ConfigError(f"hots: {len(s)} training events cannot fit {k} prototypes")
            if self.learning == "online":
                c, _ = online_prototypes(s, s[:k])
            else:
                c = kmeans_prototypes(s, k, self.seed + layer)
            self.prototypes[layer].data = c.double()
            self.fitted_events.append(len(s))
            p = self._assign(index, layer)
        return self

    def forward(self, batch: EventBatch) -> Tensor:
        """The last layer's prototype histogram of each sample: ``(B, N_L)`` float32 counts."""
        p = self.polarities(batch)
        k = self.num_prototypes[-1]
        b = batch.batch_index()
        return torch.bincount(b * k + p, minlength=len(batch) * k).view(len(batch), k).float()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The prototypes as plain arrays (for ``.npz`` caches)."""
        return {f"layer{i}": c.detach().numpy() for i, c in enumerate(self.prototypes)}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> HOTS:
        for i, c in enumerate(self.prototypes):
            a = torch.from_numpy(np.asarray(arrays[f"layer{i}"]))
            if a.shape != c.shape:
                raise ShapeError(f"hots: layer {i} prototypes {tuple(a.shape)}, want {c.shape}")
            c.data = a.double()
        return self

    def extra_repr(self) -> str:
        return (
            f"num_prototypes={list(self.num_prototypes)}, radius={list(self.radius)}, "
            f"tau={list(self.tau)}, learning={self.learning}, fit_events={self.fit_events}"
        )
