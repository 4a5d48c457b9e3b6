"""HATS: histograms of averaged time surfaces (Sironi et al. 2018, CVPR), vectorised."""

from __future__ import annotations

import math

import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.events.representations._common import (
    Events,
    check_batch,
    check_int,
    check_positive,
    unpack,
)
from visrep.events.representations.registry import REPRESENTATIONS
from visrep.events.types import EventBatch

__all__ = ["HATS", "to_hats"]

_CHUNK = 1 << 22  # (event, offset) queries or (event, event) pairs per vectorised step
_MARGIN = 50.0  # log-space gap between runs: earlier runs weigh < e^-50 in a run's prefix sums


def to_hats(
    batch: EventBatch,
    cell_size: int = 10,
    radius: int = 3,
    tau: float = 1e5,
    delta_t: int = 100_000,
    dtype: torch.dtype = torch.float32,
    method: str = "auto",
) -> torch.Tensor:
    """Histograms of averaged time surfaces, laid out as an image of cells.

    The sensor is split into ``K x K`` cells (``K = cell_size``). For each event ``e_i`` in cell
    ``C`` the local time surface over offsets ``z in [-R, R]^2`` (``R = radius``) is (Eq. 4)
    ``T_i(z) = sum_j exp(-(t_i - t_j) / tau)`` over the cell's earlier events ``e_j`` (the
    "local memory" of Sec. 4.2, including ``e_i`` itself) with the same polarity,
    ``x_j = x_i + z`` and ``t_i - t_j <= delta_t``. The histogram is the average over the cell's
    events of that polarity, ``h_C = T_sum / |C|`` (Eq. 5). These conventions are those of
    tonic's ``ToAveragedTimesurface``, which the tests match.

    Two exact vectorisations (never a loop over events), chosen by ``method``:

    * ``"pairs"``: events are stably sorted by (sample, polarity, cell, time), so the events
      ``e_j`` that can reach ``e_i`` form one contiguous run ending at ``e_i``: those of its cell
      since ``t_i - delta_t`` (one ``searchsorted``). Every (i, j) pair of those runs is
      enumerated with ``repeat_interleave`` (in chunks of about 4 M pairs), its offset
      ``x_j - x_i`` read from a ``(K^2, K^2)`` table of in-cell positions (out of radius: a
      dump slot) and its weight added with one ``scatter_add_``: ``O(P)`` work for ``P`` pairs,
      a few operations each.
    * ``"prefix"``: an exponential kernel factorises,
      ``exp(-(t_i - t_j) / tau) = exp(-t_i / tau) exp(t_j / tau)``, so each pixel's sum is a
      difference of prefix sums of ``exp(t_j / tau)`` over the events stably sorted by
      (sample, polarity, pixel), taken in log space (``logcumsumexp``, float64), each pixel run
      offset above all earlier ones by a margin of ``e^50`` so nothing overflows. For each of
      the ``(2R + 1)^2`` offsets two ``searchsorted`` calls give every event's run bounds:
      ``O(N (2R + 1)^2 log N)`` work and ``O(N)`` memory however many events interact.
    * ``"auto"`` (default) takes pairs while ``P <= 2 N (2R + 1)^2`` (measured on one CPU
      thread: a pair costs under half an offset query; ``benchmarks/events.py``), else prefix
      sums, which stay bounded when long windows hold many events.

    Args:
        batch: The events.
        cell_size: Cell side ``K`` in pixels.
        radius: Neighbourhood radius ``R``; the surface is ``(2R + 1)^2``, ``2R + 1 <= K``.
        tau: Decay constant in microseconds.
        delta_t: Memory window in microseconds (integer).
        dtype: Output dtype.
        method: ``"auto"``, ``"pairs"`` or ``"prefix"`` (same values; see above).

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
    S = 2 * R + 1
    if S > K:
        raise ConfigError(f"2 * radius + 1 must be <= cell_size, got radius={R}, cell_size={K}")
    if method not in ("auto", "pairs", "prefix"):
        raise ConfigError(f"method must be 'auto', 'pairs' or 'prefix', got {method!r}")
    W, H = batch.sensor_size
    B, N, dev = len(batch), batch.num_events, batch.device
    Wc, Hc = -(-W // K), -(-H // K)
    out = torch.zeros(B * 2 * Hc * S * Wc * S + 1, dtype=dtype, device=dev)  # + a dump slot
    if N == 0:
        return out[:-1].view(B, 2, Hc * S, Wc * S)
    e = unpack(batch)
    span = int(e.rel.max()) + 1
    if (B * 2 * H * W + 1) * max(span, N) >= 2**62:
        raise ConfigError(f"HATS keys overflow int64: {B} samples of {W}x{H} over {span} us")
    cx, cy = e.x // K, e.y // K
    cell_row = (e.b * 2 + e.p) * Hc + cy  # (sample, polarity, cell row)
    cell = cell_row * Wc + cx
    perm = torch.argsort(cell * span + e.rel, stable=True)  # ties keep stream order
    key = cell[perm] * span + e.rel[perm]
    lo = torch.searchsorted(key, key - e.rel[perm].clamp(max=delta_t))  # t_j >= t_i - delta_t
    reach = torch.arange(1, N + 1, device=dev) - lo  # candidates e_j of each sorted e_i
    if method == "pairs" or (method == "auto" and int(reach.sum()) <= 2 * N * S * S):
        _pairs(out, e, perm, lo, reach, cell_row, K, R, Wc, tau)
    else:
        _prefix(out, e, span, K, R, Wc, tau, delta_t)
    cells = cell.bincount(minlength=B * 2 * Hc * Wc)  # events per cell
    out = out[:-1].view(B * 2, Hc, S, Wc, S)
    out /= cells.clamp(min=1).to(dtype).view(B * 2, Hc, 1, Wc, 1)
    return out.view(B, 2, Hc * S, Wc * S)


def _pairs(
    out: torch.Tensor,
    e: Events,
    perm: torch.Tensor,
    lo: torch.Tensor,
    reach: torch.Tensor,
    cell_row: torch.Tensor,
    K: int,
    R: int,
    Wc: int,
    tau: float,
) -> None:
    """Add every (e_i, e_j) pair's kernel to ``out`` (see :func:`to_hats`, ``"pairs"``)."""
    S, N, dev = 2 * R + 1, len(perm), out.device
    dump = out.numel() - 1
    code = ((e.y % K) * K + e.x % K)[perm]  # in-cell position
    local = torch.arange(K * K, device=dev)
    dy = (local // K)[None, :] - (local // K)[:, None]  # [code_i, code_j] -> y_j - y_i
    dx = (local % K)[None, :] - (local % K)[:, None]
    near = (dy.abs() <= R) & (dx.abs() <= R)
    table = torch.where(near, (dy + R) * (Wc * S) + dx + R, -1).view(-1)
    corner = (cell_row * S * (Wc * S) + (e.x // K) * S)[perm]  # the cell's block in out
    rel = e.rel[perm]
    ends = reach.cumsum(0)
    total = int(ends[-1])
    cuts = torch.searchsorted(
        ends, torch.arange(1, -(-total // _CHUNK), device=dev) * _CHUNK, right=True
    ).tolist()
    for a, b in zip([0, *cuts], [*cuts, N], strict=True):
        if b <= a:
            continue
        n = reach[a:b]
        m = int(ends[b - 1] - ends[a] + n[0])
        # pair k of e_i's run is e_j with j = k - (start of the run - lo_i); gathers by
        # index_select (several times faster than advanced indexing on CPU)
        k = torch.arange(int(ends[a] - n[0]), int(ends[b - 1]), device=dev)
        j = k.sub_(torch.repeat_interleave(ends[a:b] - n - lo[a:b], n, output_size=m))
        pair = torch.repeat_interleave(code[a:b] * (K * K), n, output_size=m)
        off = table.index_select(0, pair.add_(code.index_select(0, j)))
        dt = torch.repeat_interleave(rel[a:b], n, output_size=m).sub_(rel.index_select(0, j))
        w = torch.exp(dt.to(out.dtype).mul_(-1.0 / tau))
        at = torch.repeat_interleave(corner[a:b], n, output_size=m).add_(off)
        out.scatter_add_(0, torch.where(off >= 0, at, dump), w)


def _prefix(
    out: torch.Tensor,
    e: Events,
    span: int,
    K: int,
    R: int,
    Wc: int,
    tau: float,
    delta_t: int,
) -> None:
    """Add every event's local surface to ``out`` by prefix sums (see :func:`to_hats`)."""
    S, N, dev = 2 * R + 1, e.batch.num_events, out.device
    W, H = e.batch.sensor_size
    Hc = -(-H // K)
    group = ((e.b * 2 + e.p) * H + e.y) * W + e.x  # one run per (sample, polarity, pixel)
    perm = torch.argsort(group, stable=True)
    g_sorted = group[perm]
    key_order = g_sorted * N + perm  # within a run stream order is time order
    rel_sorted = e.rel[perm]
    key_time = g_sorted * span + rel_sorted
    # log-space prefix sums of exp(t_j / tau) per run, each run offset above all earlier ones
    new_run = torch.ones(N, dtype=torch.bool, device=dev)
    new_run[1:] = g_sorted[1:] != g_sorted[:-1]
    run = new_run.cumsum(0) - 1
    first = rel_sorted[new_run]
    last = rel_sorted[torch.cat([new_run[1:], new_run.new_ones(1)])]
    width = (last - first).double() / tau + _MARGIN
    base = width.cumsum(0) - width
    log_prefix = torch.logcumsumexp((rel_sorted - first[run]).double() / tau + base[run], 0)
    # per-event values in sorted order: within an offset the queries below then come sorted,
    # so searchsorted walks its keys in order (cache-friendly, 4-6x faster than stream order)
    xs, ys = e.x[perm], e.y[perm]
    cxs, cys = xs // K, ys // K
    cell_row = (e.b[perm] * 2 + e.p[perm]) * Hc + cys  # (sample, polarity, cell row)
    corner = cell_row * S * (Wc * S) + cxs * S  # top-left of the cell's block in out
    grid = torch.arange(-R, R + 1, device=dev)
    offsets = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).view(-1, 2)  # (dy, dx)
    per_chunk = max(1, _CHUNK // N)  # offsets handled together: one call per op, bounded memory
    for chunk in offsets.split(per_chunk):
        dy, dx = chunk[:, :1], chunk[:, 1:]
        qx, qy = xs + dx, ys + dy  # (offsets, N)
        ok = (qx >= 0) & (qx < W) & (qy >= 0) & (qy < H) & (qx // K == cxs) & (qy // K == cys)
        o, at = ok.nonzero(as_tuple=True)  # offset and sorted position of each event e_i
        if at.numel() == 0:
            continue
        dy, dx = dy[o, 0], dx[o, 0]
        gq = g_sorted[at] + dy * W + dx
        hi = torch.searchsorted(key_order, gq * N + perm[at], right=True)
        t_lo = (rel_sorted[at] - delta_t).clamp(min=0)
        lo = torch.searchsorted(key_time, gq * span + t_lo)
        hit = (hi > lo).nonzero().squeeze(1)  # the run of x_i + z has events in e_i's window
        at, hi, lo, dy, dx = at[hit], hi[hit], lo[hit], dy[hit], dx[hit]
        r = run[hi - 1]
        top = log_prefix[hi - 1]
        below = torch.where(lo > 0, log_prefix[(lo - 1).clamp(min=0)], -math.inf)
        at_ti = (rel_sorted[at] - first[r]).double() / tau + base[r]
        value = torch.exp(top - at_ti) * -torch.expm1(below - top)
        target = corner[at] + (dy + R) * (Wc * S) + dx + R
        out.index_add_(0, target, value.to(out.dtype))


@REPRESENTATIONS.register(name="hats")
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
