"""Representations by name: ``create_representation("voxel", sensor_size, bins=5)``.

Configs name a representation and its options; this maps the name to its module, checks the
options against the module's signature (so a typo fails with the accepted options) and passes
the sensor size to the modules that need it (the learnable ones). Modules are imported lazily,
so a representation whose file is missing fails only when it is asked for, with a clear error.

>>> rep = create_representation("count", (34, 34), bins=2)
>>> rep.out_channels, representation_shape(rep, (34, 34))
(4, (4, 34, 34))
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

import torch
from torch import nn

from visrep.errors import ConfigError
from visrep.events.types import EventBatch, EventStream

__all__ = ["create_representation", "list_representations", "representation_shape"]

_PKG = "visrep.events.representations"
# name -> (module, class, the class takes sensor_size as its first argument)
_REPRESENTATIONS: dict[str, tuple[str, str, bool]] = {
    "count": (f"{_PKG}.frames", "EventCount", False),
    "last_timestamp": (f"{_PKG}.frames", "LastTimestamp", False),
    "timesurface": (f"{_PKG}.time_surface", "TimeSurface", False),
    "voxel": (f"{_PKG}.voxel_grid", "VoxelGrid", False),
    "hats": (f"{_PKG}.hats", "HATS", False),
    "est": (f"{_PKG}.est", "EST", True),
    "matrix_lstm": (f"{_PKG}.matrix_lstm", "MatrixLSTM", True),
}


def list_representations() -> list[str]:
    """Names accepted by :func:`create_representation`."""
    return sorted(_REPRESENTATIONS)


def _resolve(name: str) -> tuple[type[nn.Module], bool]:
    if name not in _REPRESENTATIONS:
        close = difflib.get_close_matches(name, _REPRESENTATIONS, n=2, cutoff=0.5)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else f"known: {', '.join(list_representations())}"
        )
        raise ConfigError(f"unknown event representation {name!r}; {hint}")
    module, cls_name, needs_size = _REPRESENTATIONS[name]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"event representation {name!r} is not available ({module}.{cls_name}: {e})"
        ) from e
    return cls, needs_size


def create_representation(name: str, sensor_size: tuple[int, int], **options: Any) -> nn.Module:
    """Build the representation registered as ``name`` for a ``(W, H)`` sensor.

    Args:
        name: One of :func:`list_representations`.
        sensor_size: ``(W, H)``; given to the modules that take it.
        **options: The module's own keyword options.

    Returns:
        An ``nn.Module`` ``EventBatch -> (B, C, H', W')`` with ``out_channels == C``.

    Raises:
        ConfigError: unknown name, unavailable module, or options the module does not accept.
    """
    cls, needs_size = _resolve(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [k for k in params if k not in ("self", "sensor_size")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"representation {name!r} has no option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    size = tuple(int(v) for v in sensor_size)
    try:
        module = cls(size, **options) if needs_size else cls(**options)
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
