"""Representations by name: ``create_representation("voxel", sensor_size, bins=5)``.

Configs name a representation and its options; :data:`REPRESENTATIONS` (a
:class:`~visrep.utils.registry.Registry`) maps the name to its class, checks the options against
its signature (so a typo fails with the accepted options), and :func:`create_representation`
passes the sensor size to the classes that take it (the learnable ones).

>>> rep = create_representation("count", (34, 34), bins=2)
>>> rep.out_channels, representation_shape(rep, (34, 34))
(4, (4, 34, 34))
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.events.types import EventBatch, EventStream
from visrep.utils.registry import Registry

__all__ = [
    "REPRESENTATIONS",
    "create_representation",
    "list_representations",
    "representation_shape",
]


def _load() -> None:
    # Importing the package registers every representation (each class carries the decorator).
    import visrep.events.representations  # noqa: F401


REPRESENTATIONS: Registry[nn.Module] = Registry("event representation", nn.Module, loader=_load)


def list_representations() -> list[str]:
    """Names accepted by :func:`create_representation`."""
    return REPRESENTATIONS.names()


def create_representation(name: str, sensor_size: tuple[int, int], **options: Any) -> nn.Module:
    """Build the representation registered as ``name`` for a ``(W, H)`` sensor.

    Args:
        name: One of :func:`list_representations`.
        sensor_size: ``(W, H)``; given to the modules whose constructor takes it.
        **options: The module's own keyword options.

    Returns:
        An ``nn.Module`` ``EventBatch -> (B, C, H', W')`` with ``out_channels == C``.

    Raises:
        ConfigError: unknown name, or options the module does not accept.
    """
    cls = REPRESENTATIONS.get(name)
    if "sensor_size" in options:
        raise ConfigError(
            f"representation {name!r}: sensor_size comes from the data, not from its options"
        )
    if "sensor_size" in inspect.signature(cls).parameters:
        options = {"sensor_size": tuple(int(v) for v in sensor_size), **options}
    try:
        module = REPRESENTATIONS.create(name, **options)
    except TypeError as e:
        raise ConfigError(f"representation {name!r}: bad options {options} ({e})") from e
    if not isinstance(getattr(module, "out_channels", None), int):
        raise ConfigError(f"representation {name!r} ({cls.__name__}) has no out_channels")
    return module


def representation_shape(module: nn.Module, sensor_size: tuple[int, int]) -> tuple[int, int, int]:
    """``(C, H', W')`` that ``module`` produces for a sensor, from one event through it."""
    w, h = (int(v) for v in sensor_size)
    one = EventStream(x=[w // 2], y=[h // 2], t=[0], p=[1], sensor_size=(w, h))
    try:
        param = next(module.parameters())
        device = param.device
    except StopIteration:
        device = torch.device("cpu")
    with torch.no_grad():
        out = module(EventBatch.from_streams([one]).to(device))
    if out.ndim != 4:
        raise ConfigError(
            f"{type(module).__name__} gives shape {tuple(out.shape)}, expected (B, C, H, W)"
        )
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])
