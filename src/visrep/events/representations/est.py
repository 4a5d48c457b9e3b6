"""Event Spike Tensor with a learnable kernel (Gehrig et al., ICCV 2019, "End-to-End Learning of
Representations for Asynchronous Event-Based Data").

The event field convolved with a kernel, ``S±(x, y, t) = sum_k f±(x_k, y_k, t_k) k(x - x_k,
y - y_k, t - t_k)`` (paper Sec. 3), is sampled at ``bins`` equally spaced times ``t_l = l dT`` of
the normalised window, one grid per polarity: the Event Spike Tensor. The kernel acts on time
only (``delta(x, y) k(t)``) and is a small MLP, initialised by regression onto the trilinear
kernel ``max(0, 1 - |t| / dT)`` as the official code (``ValueLayer.init_kernel`` in
uzh-rpg/rpg_event_representation_learning) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Literal

import torch
from torch import nn

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

__all__ = ["EST", "to_est", "trilinear_kernel"]

Value = Literal["timestamp", "polarity", "count"]
VALUES = ("timestamp", "polarity", "count")


def trilinear_kernel(dt: torch.Tensor, bins: int) -> torch.Tensor:
    """The trilinear voting kernel in time, ``max(0, 1 - (bins - 1) |dt|)`` (paper Sec. 3).

    ``dt`` is a difference of normalised timestamps, so ``dT = 1 / (bins - 1)``.
    """
    return (1 - (bins - 1) * dt.abs()).clamp(min=0)


def to_est(
    batch: EventBatch,
    kernel: Callable[[torch.Tensor], torch.Tensor],
    bins: int = 9,
    value: Value = "timestamp",
    values: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Event Spike Tensor: each event votes into every time bin with weight ``kernel(t* - t_l)``.

    ``t* = (t - t_first) / (t_last - t_first)`` in ``[0, 1]`` per sample and ``t_l = l / (bins -
    1)``, so ``S±[l, y, x] = sum_k f±(e_k) kernel(t*_k - t_l)`` over the events of polarity ±
    at ``(x, y)``. The measurement ``f`` is the normalised timestamp ``t*``, the
    polarity (-1 for OFF, +1 for ON) or the count (1), or any per-event ``values``. All events of
    all samples are evaluated by ``kernel`` in one call and summed with one ``index_add_`` over
    ``B * 2 * bins * H * W``. (The official code divides raw timestamps by the sample's
    largest, the same when samples start at ``t = 0``, as in its data.)

    Args:
        batch: The events.
        kernel: Maps time differences (any shape) to weights of the same shape, e.g.
            ``lambda dt: trilinear_kernel(dt, bins)`` or the MLP of :class:`EST`.
        bins: Number of temporal bins ``>= 2``.
        value: The measurement ``f``: ``"timestamp"`` (official code's choice), ``"polarity"``
            or ``"count"``.
        values: Optional per-event measurements ``(N,)`` used instead of ``value``; gradients
            flow through them.
        dtype: Dtype of the time differences and the output.

    Returns:
        Channel ``c = p * bins + l`` for polarity ``p`` (0 = OFF) and bin ``l``, as the official
        code (``cat([vox[:, 0], vox[:, 1]], 1)``).

    Shape:
        ``(B, 2 * bins, H, W)``.

    >>> from visrep.events import EventStream
    >>> s = EventStream(x=[0, 1], y=[0, 0], t=[0, 10], p=[1, 1], sensor_size=(2, 1))
    >>> b = EventBatch.from_streams([s])
    >>> to_est(b, lambda dt: trilinear_kernel(dt, 3), bins=3)[0, 3:].flatten().tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """
    batch = check_batch(batch)
    bins = check_int(bins, "bins", minimum=2)
    if value not in VALUES:
        raise ConfigError(f"value must be one of {VALUES}, got {value!r}")
    W, H = batch.sensor_size
    B, N = len(batch), batch.num_events
    e = unpack(batch)
    ts = e.rel.to(dtype) / e.dur.clamp(min=1).to(dtype)
    if values is not None:
        if not isinstance(values, torch.Tensor) or values.shape != (N,):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ShapeError(f"values must be a tensor of shape ({N},), got {got}")
        f = values.to(dtype)
    elif value == "timestamp":
        f = ts
    elif value == "polarity":
        f = (2 * e.p - 1).to(dtype)
    else:
        f = torch.ones_like(ts)
    centres = torch.arange(bins, device=batch.device, dtype=dtype) / (bins - 1)
    dt = ts[:, None] - centres  # (N, bins)
    weights = kernel(dt.reshape(-1)).reshape(N, bins)
    out_dtype = torch.promote_types(dtype, weights.dtype)
    votes = (f[:, None] * weights).to(out_dtype)
    first = e.flat_index(e.p * bins, 2 * bins)  # bin 0 of the event's polarity
    idx = first[:, None] + torch.arange(bins, device=batch.device) * (H * W)
    out = torch.zeros(B * 2 * bins * H * W, dtype=out_dtype, device=batch.device)
    out = out.index_add(0, idx.reshape(-1), votes.reshape(-1))
    return out.view(B, 2 * bins, H, W)


class KernelMLP(nn.Module):
    """The learnable kernel: an MLP ``R -> R`` applied to every time difference (``ValueLayer``).

    Args:
        hidden: Widths of the hidden layers (official classifier: ``(30, 30)``).
        negative_slope: Slope of the LeakyReLU between layers (official: 0.1).
    """

    def __init__(self, hidden: Sequence[int] = (30, 30), negative_slope: float = 0.1) -> None:
        super().__init__()
        widths = [1, *(check_int(h, "mlp hidden width") for h in hidden), 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.LeakyReLU(negative_slope))
        self.net = nn.Sequential(*layers)

    def forward(self, dt: torch.Tensor) -> torch.Tensor:
        return self.net(dt.reshape(-1, 1)).reshape(dt.shape)

    @torch.enable_grad()
    def fit_trilinear(self, bins: int, steps: int = 1000, samples: int = 2000) -> None:
        """Regress onto :func:`trilinear_kernel` as ``ValueLayer.init_kernel`` does.

        ``steps`` Adam steps (lr 1e-2) on ``samples`` uniform time differences in ``[-1, 1]``
        with a summed squared error; the samples come from a generator seeded with 1 (the
        official code seeds the global RNG instead).
        """
        gen = torch.Generator().manual_seed(1)
        optim = torch.optim.Adam(self.parameters(), lr=1e-2)
        p = next(self.parameters())
        for _ in range(steps):
            dt = (torch.rand(samples, generator=gen) * 2 - 1).to(p)
            optim.zero_grad()
            loss = (self(dt) - trilinear_kernel(dt, bins)).pow(2).sum()
            loss.backward()
            optim.step()


@REPRESENTATIONS.register(name="est")
class EST(nn.Module):
    """Learnable Event Spike Tensor in front of any backbone: ``EventBatch -> (B, 2 bins, H, W)``.

    Module form of :func:`to_est` holding the kernel MLP. The paper's N-Cars / N-Caltech101
    setting is ``bins=9`` (18 channels) with ``value="timestamp"``.

    Args:
        sensor_size: ``(W, H)`` of the batches it will see.
        bins: Number of temporal bins ``>= 2``.
        value: Measurement ``f``: ``"timestamp"``, ``"polarity"`` or ``"count"``.
        mlp_hidden: Hidden widths of the kernel MLP.
        init_steps: Adam steps of the trilinear pre-fit at construction (0 = leave the MLP at
            PyTorch's default initialisation).
    """

    def __init__(
        self,
        sensor_size: tuple[int, int],
        bins: int = 9,
        value: Value = "timestamp",
        mlp_hidden: Sequence[int] = (30, 30),
        init_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.sensor_size = check_sensor_size(sensor_size)
        self.bins = check_int(bins, "bins", minimum=2)
        if value not in VALUES:
            raise ConfigError(f"value must be one of {VALUES}, got {value!r}")
        self.value = value
        self.out_channels = 2 * self.bins
        self.kernel = KernelMLP(mlp_hidden)
        self.kernel.fit_trilinear(self.bins, check_int(init_steps, "init_steps", minimum=0))

    def forward(self, batch: EventBatch) -> torch.Tensor:
        check_sensor(check_batch(batch), self.sensor_size)
        dtype = next(self.kernel.parameters()).dtype
        return to_est(batch, self.kernel, self.bins, self.value, dtype=dtype)

    def extra_repr(self) -> str:
        return f"sensor_size={self.sensor_size}, bins={self.bins}, value={self.value!r}"
