"""HATS: histograms of averaged time surfaces (Sironi et al. 2018, CVPR), vectorised."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.events.representations._common import (
    check_batch,
    check_int,
    check_positive,
    unpack,
)
from visrep.events.types import EventBatch

__all__ = ["HATS", "to_hats"]


def to_hats(
    batch: EventBatch,
    cell_size: int = 10,
    radius: int = 3,
    tau: float = 1e5,
    delta_t: int = 100_000,
    max_pairs: int = 1 << 21,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Histograms of averaged time surfaces, laid out as an image of cells.

    The sensor is split into ``K x K`` cells (``K = cell_size``). For each event ``e_i`` in cell
    ``C`` the local time surface over offsets ``z in [-R, R]^2`` (``R = radius``) is (Eq. 4)
    ``T_i(z) = sum_j exp(-(t_i - t_j) / tau)`` over the cell's earlier events ``e_j`` (the
    "local memory" of Sec. 4.2, including ``e_i`` itself) with the same polarity,
    ``x_j = x_i + z`` and ``t_i - t_j <= delta_t``. The histogram is the average over the cell's
    events of that polarity, ``h_C = T_sum / |C|`` (Eq. 5). These conventions are those of
    tonic's ``ToAveragedTimesurface``, which the tests match.

    Vectorisation: the sum over ``j`` is a contiguous run once events are stably sorted by
    (sample, polarity, pixel) -- the run of pixel ``x_i + z`` between the first event with
    ``t >= t_i - delta_t`` and the last one at or before ``e_i`` in stream order. So for each of
    the ``(2R + 1)^2`` offsets (a loop over offsets, never over events) two ``searchsorted``
    calls give every event's run, the runs are expanded into (event, neighbour) pairs with
    ``repeat_interleave`` and their kernels summed with ``index_add_``. Work and memory are
    ``O(N (2R + 1)^2 log N + P)`` for ``P`` interacting pairs; pairs are processed in chunks of
    about ``max_pairs`` so memory stays bounded however dense the stream.

    Args:
        batch: The events.
        cell_size: Cell side ``K`` in pixels.
        radius: Neighbourhood radius ``R``; the surface is ``(2R + 1)^2``, ``2R + 1 <= K``.
        tau: Decay constant in microseconds.
        delta_t: Memory window in microseconds (integer).
        max_pairs: Largest number of pairs expanded at once.
        dtype: Output dtype.

    Returns:
        Cell ``(cy, cx)`` of polarity ``p`` occupies
        ``out[b, p, cy*S:(cy+1)*S, cx*S:(cx+1)*S]`` with ``S = 2R + 1``.

    Shape:
        ``(B, 2, ceil(H / K) * S, ceil(W / K) * S)``.
    """
    batch = check_batch(batch)
    K = check_int(cell_size, "cell_size")
    R = check_int(radius, "radius", minimum=0)
    tau = check_positive(tau, "tau")
    delta_t = check_int(delta_t, "delta_t", minimum=0)
    max_pairs = check_int(max_pairs, "max_pairs")
    S = 2 * R + 1
    if S > K:
        raise ConfigError(f"2 * radius + 1 must be <= cell_size, got radius={R}, cell_size={K}")
    W, H = batch.sensor_size
    B, N, dev = len(batch), batch.num_events, batch.device
    Wc, Hc = -(-W // K), -(-H // K)
    out = torch.zeros(B * 2 * Hc * S * Wc * S, dtype=dtype, device=dev)
    if N == 0:
        return out.view(B, 2, Hc * S, Wc * S)
    e = unpack(batch)
    group = ((e.b * 2 + e.p) * H + e.y) * W + e.x  # one run per (sample, polarity, pixel)
    perm = torch.argsort(group, stable=True)
    span = int(e.rel.max()) + 1
    if (B * 2 * H * W + 1) * max(span, N) >= 2**62:
        raise ConfigError(f"HATS keys overflow int64: {B} samples of {W}x{H} over {span} us")
    g_sorted = group[perm]
    key_order = g_sorted * N + perm  # within a run stream order is time order
    key_time = g_sorted * span + e.rel[perm]
    rel_sorted = e.rel[perm]
    cx, cy = e.x // K, e.y // K
    cell_row = ((e.b * 2 + e.p) * Hc + cy) * S  # row of the cell block in out
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            qx, qy = e.x + dx, e.y + dy
            ok = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H) & (qx // K == cx) & (qy // K == cy)
            ev = ok.nonzero().squeeze(1)
            if ev.numel() == 0:
                continue
            gq = group[ev] + dy * W + dx
            hi = torch.searchsorted(key_order, gq * N + ev, right=True)
            t_lo = (e.rel[ev] - delta_t).clamp(min=0)
            lo = torch.searchsorted(key_time, gq * span + t_lo)
            cnt = (hi - lo).clamp(min=0)
            target = (cell_row[ev] + dy + R) * (Wc * S) + cx[ev] * S + dx + R
            _add_pairs(out, ev, lo, cnt, target, e.rel, rel_sorted, tau, max_pairs)
    cells = (((e.b * 2 + e.p) * Hc + cy) * Wc + cx).bincount(minlength=B * 2 * Hc * Wc)
    out = out.view(B * 2, Hc, S, Wc, S)
    out /= cells.clamp(min=1).to(dtype).view(B * 2, Hc, 1, Wc, 1)
    return out.view(B, 2, Hc * S, Wc * S)


def _add_pairs(
    out: torch.Tensor,
    ev: torch.Tensor,
    lo: torch.Tensor,
    cnt: torch.Tensor,
    target: torch.Tensor,
    rel: torch.Tensor,
    rel_sorted: torch.Tensor,
    tau: float,
    max_pairs: int,
) -> None:
    """Add ``exp(-(t_i - t_j) / tau)`` for each event ``ev[k]`` and ``j`` in its run."""
    ends = cnt.cumsum(0)
    total = int(ends[-1])
    if total == 0:
        return
    # event chunks holding at most max_pairs pairs (a single larger run is its own chunk)
    bounds = [0, ev.numel()]
    if total > max_pairs:
        steps = torch.arange(max_pairs, total, max_pairs, device=ends.device)
        cuts = torch.searchsorted(ends, steps) + 1
        bounds = [0, *torch.unique(cuts).clamp(max=ev.numel()).tolist(), ev.numel()]
    for a, b in itertools.pairwise(bounds):
        if b <= a:
            continue
        c = cnt[a:b]
        n_pairs = int(c.sum())
        if n_pairs == 0:
            continue
        owner = torch.repeat_interleave(torch.arange(b - a, device=c.device), c)
        first = c.cumsum(0) - c
        j = lo[a:b][owner] + torch.arange(n_pairs, device=c.device) - first[owner]
        dt = (rel[ev[a:b]][owner] - rel_sorted[j]).to(out.dtype)
        out.index_add_(0, target[a:b][owner], torch.exp(-dt / tau))


class HATS(nn.Module):
    """Module form of :func:`to_hats`."""

    def __init__(
        self, cell_size: int = 10, radius: int = 3, tau: float = 1e5, delta_t: int = 100_000
    ) -> None:
        super().__init__()
        self.cell_size = check_int(cell_size, "cell_size")
        self.radius = check_int(radius, "radius", minimum=0)
        self.tau = check_positive(tau, "tau")
        self.delta_t = check_int(delta_t, "delta_t", minimum=0)
        self.out_channels = 2
        if 2 * radius + 1 > cell_size:
            raise ConfigError(
                f"2 * radius + 1 must be <= cell_size, got radius={radius}, cell_size={cell_size}"
            )

    def forward(self, batch: EventBatch) -> torch.Tensor:
        return to_hats(batch, self.cell_size, self.radius, self.tau, self.delta_t)

    def extra_repr(self) -> str:
        return (
            f"cell_size={self.cell_size}, radius={self.radius}, tau={self.tau}, "
            f"delta_t={self.delta_t}"
        )
