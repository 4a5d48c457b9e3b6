"""Matrix-LSTM (Cannici, Ciccone, Romanoni, Matteucci, ECCV 2020, "A Differentiable Recurrent
Surface for Asynchronous Event-Based Data").

One LSTM with shared weights reads the events of every pixel (or receptive field) in time order;
its last hidden state is that pixel's feature vector, so a batch of streams becomes a
``(B, bins * hidden, H, W)`` surface (paper Sec. 3). Options follow the official code
(github.com/marcocannici/matrixlstm, ``classification/layers/MatrixLSTM.py`` and its CUDA
helpers): time features ``delay``, ``delay_norm``, ``ts``, ``ts_max`` computed per pixel
(``normalize_relative=True``) or per sample; a cap on events per pixel (regular subsampling that
keeps the first and last event, or the most recent); ``bins`` time intervals concatenated on
channels; ``K x K`` receptive fields with stride and same-size padding.

Unlike the official code, which pads every pixel sequence to the longest one and runs the LSTM
over the padded length, events are grouped by one stable sort of a flat ``(sample, bin, pixel)``
key and ``nn.LSTM`` runs exactly ``sum(lengths)`` steps: on a
:class:`~torch.nn.utils.rnn.PackedSequence`, or in one dense call per distinct length
(:func:`last_hidden`). ``benchmarks/matrix_lstm.py`` measures both against padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from visrep.errors import ConfigError, ShapeError
from visrep.events.representations._common import (
    check_batch,
    check_int,
    check_sensor,
    check_sensor_size,
    unpack,
)
from visrep.events.representations.registry import REPRESENTATIONS
from visrep.events.types import EventBatch

__all__ = [
    "MatrixLSTM",
    "PixelSequences",
    "last_hidden",
    "num_input_features",
    "pixel_sequences",
    "to_matrix_lstm",
]

TimeFeature = Literal["delay", "delay_norm", "ts", "ts_max"]
Keep = Literal["subsample", "recent"]
Method = Literal["auto", "packed", "by_length"]
METHODS = ("auto", "packed", "by_length")
TIME_FEATURES = ("delay", "delay_norm", "ts", "ts_max")
KEEPS = ("subsample", "recent")


@dataclass(frozen=True)
class PixelSequences:
    """Events grouped into one sequence per active ``(sample, bin, output pixel)``.

    Elements are ordered by sequence, then by time; ``G`` sequences, ``M`` kept elements.

    Attributes:
        features: LSTM inputs ``(M, D)``.
        group: Sequence of each element, ``(M,)`` in ``[0, G)``, non-decreasing.
        pos: Position of each element in its sequence, ``(M,)``.
        lengths: Sequence lengths ``(G,)`` (after the cap).
        key: Flat index ``(b * bins + k) * out_h * out_w + pixel`` of each sequence, ``(G,)``.
        out_size: ``(out_h, out_w)``.
    """

    features: torch.Tensor
    group: torch.Tensor
    pos: torch.Tensor
    lengths: torch.Tensor
    key: torch.Tensor
    out_size: tuple[int, int]


def num_input_features(
    coord_features: bool = False, bin_time_feature: bool = False, extra_features: int = 0
) -> int:
    """LSTM input size: extra features, polarity, [bin timestamp], [2 coords], time feature."""
    return extra_features + 1 + int(bin_time_feature) + 2 * int(coord_features) + 1


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")


def _check_options(time_feature: str, keep: str, max_events: int | None) -> None:
    if time_feature not in TIME_FEATURES:
        raise ConfigError(f"time_feature must be one of {TIME_FEATURES}, got {time_feature!r}")
    if keep not in KEEPS:
        raise ConfigError(f"keep must be one of {KEEPS}, got {keep!r}")
    if max_events is not None:  # subsampling keeps the first and the last event
        check_int(max_events, "max_events", minimum=2 if keep == "subsample" else 1)


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2:
        raise ConfigError(f"{name} must be an int or (h, w), got {v!r}")
    return check_int(pair[0], name), check_int(pair[1], name)


def _geometry(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], keep_size: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Output ``(out_h, out_w)`` and the ``(top, left)`` padding (official ``compute_pad``)."""
    (W, H), (kh, kw), (sh, sw) = size, kernel, stride
    if keep_size:
        new_h, new_w = (H - 1) * sh + kh, (W - 1) * sw + kw
        pad_t = new_h - H - (new_h - H) // 2
        pad_l = new_w - W - (new_w - W) // 2
        return (H, W), (pad_t, pad_l)
    if kh > H or kw > W:
        raise ConfigError(f"kernel_size {kernel} is larger than the sensor (H, W) = {(H, W)}")
    return ((H - kh) // sh + 1, (W - kw) // sw + 1), (0, 0)


def _segment_time_feature(
    t: torch.Tensor,
    seg: torch.Tensor,
    first: torch.Tensor,
    mode: str,
    origin: torch.Tensor | None,
    num_seg: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Time feature of events sorted by segment then time (``first``: segment starts here).

    ``delay``: ``t_i - t_{i-1}`` in the segment (0 for its first event), in microseconds;
    ``delay_norm``: delay over the segment's largest delay; ``ts``: ``(t - t_min) / (t_max -
    t_min)``; ``ts_max``: ``(t - origin) / (t_max - origin)``. Zero denominators give 0.
    """
    if mode in ("delay", "delay_norm"):
        d = torch.where(first, 0, t - torch.cat([t[:1], t[:-1]]))
        if mode == "delay":
            return d.to(dtype)
        top = torch.zeros(num_seg, dtype=d.dtype, device=d.device)
        top = top.scatter_reduce(0, seg, d, "amax")
        return d.to(dtype) / top[seg].clamp(min=1).to(dtype)
    empty = torch.zeros(num_seg, dtype=t.dtype, device=t.device)
    last = empty.scatter_reduce(0, seg, t, "amax", include_self=False)[seg]
    low = (
        empty.scatter_reduce(0, seg, t, "amin", include_self=False)[seg] if mode == "ts" else origin
    )
    return (t - low).to(dtype) / (last - low).clamp(min=1).to(dtype)


def pixel_sequences(
    batch: EventBatch,
    bins: int = 1,
    time_feature: TimeFeature = "delay_norm",
    relative: bool = True,
    max_events: int | None = 512,
    keep: Keep = "subsample",
    kernel_size: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    keep_size: bool = True,
    coord_features: bool = False,
    bin_time_feature: bool = False,
    features: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> PixelSequences:
    """Group the events of a batch into per-pixel sequences with their LSTM input features.

    Arguments are those of :func:`to_matrix_lstm`. No Python loop over samples, pixels or
    events: bins, receptive fields and groups come from tensor ops and one stable sort.
    """
    batch = check_batch(batch)
    bins = check_int(bins, "bins")
    _check_options(time_feature, keep, max_events)
    kernel, step = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    (out_h, out_w), (pad_t, pad_l) = _geometry(batch.sensor_size, kernel, step, keep_size)
    P = out_h * out_w
    N, dev = batch.num_events, batch.device
    e = unpack(batch)

    # (sample, bin) segments: bins cut each sample's window in equal parts, as the official
    # ``n_interval_events`` (integer floor here); events stay contiguous per segment.
    k = torch.zeros_like(e.t)
    if bins > 1:
        k = torch.div(e.rel * bins, e.dur.clamp(min=1), rounding_mode="floor").clamp(max=bins - 1)
    seg = e.b * bins + k if len(batch) > 1 else k
    seg_first = torch.ones(N, dtype=torch.bool, device=dev)
    seg_first[1:] = seg[1:] != seg[:-1]

    cols = [] if features is None else [_check_features(features, N).to(dtype)]
    cols.append(e.p.to(dtype)[:, None])
    if bin_time_feature:  # official frame_intervals_mode="abs_ts": whole-sample timestamp
        cols.append((e.rel.to(dtype) / e.dur.clamp(min=1).to(dtype))[:, None])
    per_event = torch.cat(cols, dim=1)
    if not relative:  # over each (sample, bin), before grouping (official order: t since t_first)
        t0 = e.per_event(e.t_first)
        tau = _segment_time_feature(e.t, seg, seg_first, time_feature, t0, len(batch) * bins, dtype)

    # receptive fields: every output pixel whose K x K window (on the padded sensor) holds the event
    (kh, kw), (sh, sw) = kernel, step
    py, px = e.y + pad_t, e.x + pad_l
    if kernel == step == (1, 1):
        src, ry, rx = torch.arange(N, device=dev), py, px
    else:
        jy = torch.arange(math.ceil(kh / sh), device=dev)
        jx = torch.arange(math.ceil(kw / sw), device=dev)
        oy = (torch.div(py, sh, rounding_mode="floor")[:, None] - jy)[:, :, None]
        ox = (torch.div(px, sw, rounding_mode="floor")[:, None] - jx)[:, None, :]
        valid_y = (oy >= 0) & (oy < out_h) & (py[:, None, None] < oy * sh + kh)
        valid = valid_y & (ox >= 0) & (ox < out_w) & (px[:, None, None] < ox * sw + kw)
        J = len(jy) * len(jx)
        src, j = valid.reshape(N, J).nonzero(as_tuple=True)  # event-major: time order kept
        ry = oy.expand(-1, -1, len(jx)).reshape(N, J)[src, j]
        rx = ox.expand(-1, len(jy), -1).reshape(N, J)[src, j]

    # group by (sample, bin, output pixel) with one stable sort
    key = seg[src] * P + ry * out_w + rx
    key, order = torch.sort(key, stable=True)
    src, ry, rx = src[order], ry[order], rx[order]
    new = torch.ones_like(key, dtype=torch.bool)
    new[1:] = key[1:] != key[:-1]
    group = new.cumsum(0) - 1
    lengths = torch.bincount(group)
    starts = lengths.cumsum(0) - lengths
    pos = torch.arange(key.numel(), device=dev) - starts[group]

    if max_events is not None and key.numel() and int(lengths.max()) > max_events:
        length = lengths[group]
        if keep == "recent":
            kept = pos >= length - max_events
        else:  # official group_rf_bounded: every (L // (cap-1))-th event from the last, + the first
            back = length - 1 - pos
            every = torch.div(length, max_events - 1, rounding_mode="floor").clamp(min=1)
            nth = torch.div(back, every, rounding_mode="floor")
            kept = (
                (length <= max_events)
                | (pos == 0)
                | ((back % every == 0) & (nth <= max_events - 2))
            )
        src, ry, rx, group, key = src[kept], ry[kept], rx[kept], group[kept], key[kept]
        lengths = lengths.clamp(max=max_events)
        starts = lengths.cumsum(0) - lengths
        pos = torch.arange(group.numel(), device=dev) - starts[group]

    cols = [per_event[src]]
    if coord_features:  # position inside the receptive field, in [0, 1] (official coords)
        cy = (py[src] - ry * sh).to(dtype) / max(kh - 1, 1)
        cx = (px[src] - rx * sw).to(dtype) / max(kw - 1, 1)
        cols += [cx[:, None], cy[:, None]]
    if not relative:
        cols.append(tau[src, None])
    else:  # per pixel, on the kept events (official normalize_relative=True)
        t, origin = e.t[src], None
        if time_feature == "ts_max":  # from the interval's first event (official time - time[:, 0])
            origin = e.t.new_zeros(len(batch) * bins)
            origin = origin.index_copy(0, seg[seg_first], e.t[seg_first])[seg[src]]
        ft = _segment_time_feature(t, group, pos == 0, time_feature, origin, len(lengths), dtype)
        cols.append(ft[:, None])
    return PixelSequences(
        features=torch.cat(cols, dim=1),
        group=group,
        pos=pos,
        lengths=lengths,
        key=key[starts],
        out_size=(out_h, out_w),
    )


def _check_features(features: object, n: int) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != n:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ShapeError(f"features must be a tensor of shape ({n}, F), got {got}")
    return features


def last_hidden(lstm: nn.LSTM, seq: PixelSequences, method: Method = "auto") -> torch.Tensor:
    """Last hidden state of the top layer for every sequence, ``(G, hidden)``, no padding step.

    Two exact ways of running one ``nn.LSTM`` over sequences of different lengths:

    * ``"packed"``: one call on a :class:`~torch.nn.utils.rnn.PackedSequence` built from the
      sequences ranked by decreasing length (element ``(pos, rank)`` sits at
      ``sum(batch_sizes[:pos]) + rank``), so step ``t`` runs only the ``batch_sizes[t]``
      sequences still active. The default on CUDA, where cuDNN takes packed input directly.
    * ``"by_length"``: one dense call per distinct length ``l`` on the ``(l, n_l, D)`` batch of
      the sequences of exactly that length, so every call uses the fused kernel (oneDNN on
      CPU) and no step is padding; the loop is over distinct lengths (at most ``max_events``).
      The default on CPU, where ``nn.LSTM`` on a ``PackedSequence`` runs op by op per step
      and its backward spends most of its time zero-filling slice gradients (0.75-1.4x the
      speed of padding on the benchmark's real N-MNIST batches, by_length 3.2-5x).

    Both run ``sum(lengths)`` LSTM steps in all, against ``G * max(lengths)`` when padding.
    """
    _check_method(method)
    L, dev = seq.lengths, seq.lengths.device
    G = L.numel()
    if method == "packed" or (method == "auto" and dev.type == "cuda"):
        by_length = torch.argsort(L, descending=True, stable=True)
        rank = torch.empty_like(by_length)
        rank[by_length] = torch.arange(G, device=dev)
        counts = torch.bincount(L, minlength=int(L.max()) + 1)
        batch_sizes = G - counts.cumsum(0)[:-1]  # sequences longer than t
        offsets = batch_sizes.cumsum(0) - batch_sizes
        where = offsets[seq.pos] + rank[seq.group]
        inverse = torch.empty_like(where)
        inverse[where] = torch.arange(where.numel(), device=dev)
        data = seq.features.index_select(0, inverse)
        _, (h, _) = lstm(PackedSequence(data, batch_sizes.cpu()))
        return h[-1].index_select(0, rank)  # h is in packed (rank) order
    order = torch.argsort(L, stable=True)  # by increasing length
    sorted_len = L[order]
    sizes, counts = torch.unique_consecutive(sorted_len, return_counts=True)
    starts = L.cumsum(0) - L
    first = torch.repeat_interleave(starts[order], sorted_len)
    within = torch.arange(first.numel(), device=dev) - torch.repeat_interleave(
        sorted_len.cumsum(0) - sorted_len, sorted_len
    )
    data = seq.features.index_select(0, first + within)  # sequence after sequence, by length
    hs, at = [], 0
    for length, n in zip(sizes.tolist(), counts.tolist(), strict=True):
        chunk = data[at : at + n * length].view(n, length, -1)
        at += n * length
        _, (h, _) = lstm(chunk if lstm.batch_first else chunk.transpose(0, 1))
        hs.append(h[-1])
    h = torch.cat(hs)
    return h.new_empty(h.shape).index_copy(0, order, h)


def to_matrix_lstm(
    batch: EventBatch,
    lstm: nn.LSTM,
    bins: int = 1,
    time_feature: TimeFeature = "delay_norm",
    relative: bool = True,
    max_events: int | None = 512,
    keep: Keep = "subsample",
    kernel_size: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    keep_size: bool = True,
    coord_features: bool = False,
    bin_time_feature: bool = False,
    features: torch.Tensor | None = None,
    method: Method = "auto",
) -> torch.Tensor:
    """Matrix-LSTM surface: the shared ``lstm``'s last hidden state over each pixel's events.

    For each sample, time bin and output pixel with events ``e_1..e_L`` (time order), the
    LSTM reads ``x_i = [features_i, p_i, (t*_i), (cx_i, cy_i), tau_i]`` and the pixel's feature
    is ``h_L`` of its top layer; pixels without events are 0. ``p`` is 0/1,
    ``t*`` the timestamp normalised over the whole sample (official ``abs_ts``), ``(cx, cy)``
    the position inside the receptive field, ``tau`` the time feature.

    Args:
        batch: The events.
        lstm: A unidirectional ``nn.LSTM`` with ``input_size = num_input_features(...)``.
        bins: Equal-duration intervals per sample, each its own surface (official
            ``frame_intervals``).
        time_feature: ``"delay"`` (microseconds since the previous event), ``"delay_norm"``
            (delay over the largest one), ``"ts"`` (``(t - t_min) / (t_max - t_min)``) or
            ``"ts_max"`` (``(t - t_0) / (t_max - t_0)``; ``t_0`` is the first event of the
            interval when ``relative``, of the sample otherwise, as the official code, which
            divides raw timestamps starting at 0 in the global case).
        relative: Compute ``tau`` per pixel sequence (after the cap, official
            ``normalize_relative``) instead of over each sample's interval (before the cap).
        max_events: Cap on the events of one sequence (None: no cap).
        keep: Over the cap, ``"subsample"`` keeps the first event and every
            ``(L // (cap - 1))``-th event counted back from the last; ``"recent"`` the last
            ``cap`` events.
        kernel_size: Receptive field ``K`` or ``(Kh, Kw)``: an output pixel reads the events of
            its window.
        stride: Stride of the windows.
        keep_size: Pad so the output keeps the sensor's ``(H, W)`` (official
            ``maintain_in_shape``); else ``((H - Kh) // sh + 1, (W - Kw) // sw + 1)``.
        coord_features: Add the event's normalised ``(x, y)`` inside its receptive field.
        bin_time_feature: Add the timestamp normalised over the whole sample.
        features: Optional extra per-event inputs ``(N, F)`` placed first (gradients flow).
        method: How the LSTM meets sequences of different lengths, both exact and without
            padding: ``"packed"``, ``"by_length"`` or ``"auto"`` (see :func:`last_hidden`).

    Returns:
        Channel ``c = k * hidden + j`` for bin ``k`` and hidden unit ``j``.

    Shape:
        ``(B, bins * hidden, out_h, out_w)``.
    """
    if not isinstance(lstm, nn.LSTM) or lstm.bidirectional:
        raise ConfigError(f"lstm must be a unidirectional torch.nn.LSTM, got {lstm!r}")
    _check_method(method)
    dtype = lstm.weight_ih_l0.dtype
    seq = pixel_sequences(
        batch, bins, time_feature, relative, max_events, keep, kernel_size, stride,
        keep_size, coord_features, bin_time_feature, features, dtype,
    )  # fmt: skip
    if seq.features.shape[1] != lstm.input_size:
        raise ConfigError(
            f"lstm.input_size is {lstm.input_size} but the options give "
            f"{seq.features.shape[1]} features per event (see num_input_features)"
        )
    hidden = lstm.proj_size or lstm.hidden_size
    B, (out_h, out_w) = len(batch), seq.out_size
    out = seq.features.new_zeros(B * bins * out_h * out_w, hidden)
    if seq.lengths.numel():
        out = out.index_copy(0, seq.key, last_hidden(lstm, seq, method))
    out = out.view(B, bins, out_h, out_w, hidden).permute(0, 1, 4, 2, 3)
    return out.reshape(B, bins * hidden, out_h, out_w)


@REPRESENTATIONS.register(name="matrix_lstm")
class MatrixLSTM(nn.Module):
    """Matrix-LSTM representation in front of any backbone: module form of
    :func:`to_matrix_lstm`, holding the shared ``nn.LSTM``.

    The defaults are the official N-Cars "Ev2Vid" setting (``delay_norm`` per pixel,
    subsampling cap 512, one bin) with 16 hidden units; the EST-style table rows use
    ``time_feature="ts", relative=False`` with ``bins`` 1, 2 or 16.

    Args:
        sensor_size: ``(W, H)`` of the batches it will see.
        hidden_size: LSTM hidden units per bin.
        num_layers: Stacked LSTM layers (the last one's state is used).
        extra_features: Width of the optional per-event ``features`` given to ``forward``.
        Others: As :func:`to_matrix_lstm`.
    """

    def __init__(
        self,
        sensor_size: tuple[int, int],
        hidden_size: int = 16,
        num_layers: int = 1,
        bins: int = 1,
        time_feature: TimeFeature = "delay_norm",
        relative: bool = True,
        max_events: int | None = 512,
        keep: Keep = "subsample",
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        keep_size: bool = True,
        coord_features: bool = False,
        bin_time_feature: bool = False,
        extra_features: int = 0,
        method: Method = "auto",
    ) -> None:
        super().__init__()
        self.sensor_size = check_sensor_size(sensor_size)
        _check_options(time_feature, keep, max_events)
        _check_method(method)
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.out_size, _ = _geometry(self.sensor_size, self.kernel_size, self.stride, keep_size)
        self.bins = check_int(bins, "bins")
        self.options = dict(
            time_feature=time_feature, relative=relative, max_events=max_events, keep=keep,
            keep_size=keep_size, coord_features=coord_features, bin_time_feature=bin_time_feature,
            method=method,
        )  # fmt: skip
        n_in = num_input_features(
            coord_features, bin_time_feature, check_int(extra_features, "extra_features", 0)
        )
        self.lstm = nn.LSTM(
            n_in, check_int(hidden_size, "hidden_size"), check_int(num_layers, "num_layers")
        )
        self.out_channels = self.bins * hidden_size

    def forward(self, batch: EventBatch, features: torch.Tensor | None = None) -> torch.Tensor:
        check_sensor(check_batch(batch), self.sensor_size)
        return to_matrix_lstm(
            batch, self.lstm, self.bins, kernel_size=self.kernel_size, stride=self.stride,
            features=features, **self.options,
        )  # fmt: skip

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"sensor_size={self.sensor_size}, bins={self.bins}, kernel_size={self.kernel_size}, {opts}"
