"""Event-sequence classifiers: a recurrent network reads a recording's events one by one.

Unlike :class:`~visrep.models.event_classifier.EventClassifier`, no frame is built: each event
``(x, y, p, t)`` is one input, its address ``(x, y, p)`` mapped to a learned embedding and its
timestamp driving a Phased LSTM's time gate (Neil, Pfeiffer, Liu, NIPS 2016, Sec. 4.3, N-MNIST);
the last hidden state is classified. Spatial layout is only what the embedding learns.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.events.types import EventBatch
from visrep.models.layers.phased_lstm import PhasedLSTM

__all__ = ["PhasedLSTMEventClassifier", "event_addresses", "regular_subsample"]


def regular_subsample(batch: EventBatch, max_events: int) -> EventBatch:
    """At most ``max_events`` events per sample, evenly spaced in stream order.

    Sample ``b`` with ``n_b > M`` events keeps events ``floor(k n_b / M)``, ``k < M``: the whole
    recording at a lower rate, time order kept; shorter samples are unchanged. Vectorised over
    the batch (no loop over samples).

    >>> from visrep.events.types import EventStream
    >>> s = EventStream(x=[0] * 6, y=[0] * 6, t=[0, 1, 2, 3, 4, 5], p=[1] * 6, sensor_size=(2, 2))
    >>> regular_subsample(EventBatch.from_streams([s]), 3).t.tolist()
    [0, 2, 4]
    """
    if max_events < 1:
        raise ConfigError(f"max_events must be >= 1, got {max_events}")
    counts = batch.counts()
    if counts.numel() == 0 or int(counts.max()) <= max_events:
        return batch
    kept = counts.clamp(max=max_events)
    new_offsets = torch.cat([counts.new_zeros(1), kept.cumsum(0)])
    sample = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), kept)
    k = torch.arange(int(new_offsets[-1]), device=counts.device) - new_offsets[:-1][sample]
    # k * n_b // m_b is k when n_b <= M, else the regular stride over the whole sample
    idx = batch.offsets[:-1][sample] + k * counts[sample] // kept[sample]
    return EventBatch(
        batch.x[idx], batch.y[idx], batch.t[idx], batch.p[idx], new_offsets, batch.sensor_size
    )


def event_addresses(batch: EventBatch) -> Tensor:
    """Flat address ``(p H + y) W + x`` of every event, ``(N,)`` int64 in ``[0, 2 W H)``."""
    w, h = batch.sensor_size
    p = batch.p.long().clamp(0, 1)
    return (p * h + batch.y.long()) * w + batch.x.long()


class PhasedLSTMEventClassifier(nn.Module):
    """Address embedding -> Phased LSTM over the events -> linear classifier of the last state.

    Args:
        sensor_size: ``(W, H)``; the embedding has one row per ``(x, y, polarity)`` address.
        num_classes: Classes.
        embed_dim: Width of the address embedding (the paper: 40).
        hidden_size: Phased LSTM neurons.
        max_events: Events read per sample (:func:`regular_subsample`); None reads all.
        time_unit_us: Microseconds per time unit of ``tau`` and ``s`` (1000: milliseconds).
        tau_range, r_on, leak, learn_timing: :class:`~visrep.models.layers.phased_lstm.PhasedLSTMCell`.
        dropout: Dropout on the last hidden state before the classifier.

    Timestamps are taken relative to each sample's first event, so a recording shifted in
    time is read the same way (the learnt shifts ``s`` set each neuron's phase).

    Shape:
        ``EventBatch`` of ``B`` samples ``-> (B, num_classes)``.
    """

    def __init__(
        self,
        sensor_size: tuple[int, int],
        num_classes: int,
        embed_dim: int = 40,
        hidden_size: int = 110,
        max_events: int | None = 1024,
        time_unit_us: float = 1000.0,
        tau_range: tuple[float, float] = (1.0, 1000.0),
        r_on: float = 0.05,
        leak: float = 1e-3,
        learn_timing: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        w, h = (int(v) for v in sensor_size)
        if num_classes < 1 or embed_dim < 1:
            raise ConfigError(
                f"num_classes and embed_dim must be >= 1, got {num_classes}, {embed_dim}"
            )
        if max_events is not None and max_events < 1:
            raise ConfigError(f"max_events must be >= 1 or None, got {max_events}")
        if time_unit_us <= 0:
            raise ConfigError(f"time_unit_us must be > 0, got {time_unit_us}")
        self.sensor_size = (w, h)
        self.max_events = max_events
        self.time_unit_us = float(time_unit_us)
        self.embedding = nn.Embedding(2 * w * h, embed_dim)
        self.rnn = PhasedLSTM(embed_dim, hidden_size, tau_range, r_on, leak, learn_timing)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)
        self.num_features = hidden_size

    def embed(self, events: EventBatch) -> Tensor:
        """The last hidden state of every sample, ``(B, hidden_size)``."""
        if tuple(events.sensor_size) != self.sensor_size:
            raise ConfigError(
                f"events come from a {events.sensor_size} sensor, the model was built for "
                f"{self.sensor_size}"
            )
        if self.max_events is not None:
            events = regular_subsample(events, self.max_events)
        x = self.embedding(event_addresses(events))
        rel = events.t
        if events.num_events:  # time since each sample's first event
            first = events.t[events.offsets[:-1].clamp(max=events.num_events - 1)]
            rel = rel - torch.repeat_interleave(first, events.counts(), output_size=len(rel))
        t = rel.to(x.dtype) / self.time_unit_us
        h, _ = self.rnn(x, t, events.offsets)
        return h

    def forward(self, events: EventBatch) -> Tensor:
        return self.classifier(self.dropout(self.embed(events)))
