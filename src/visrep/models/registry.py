"""A small name registry for backbones: ``create_backbone(name, in_chans=..., num_classes=...)``.

Every registered factory takes ``in_chans``, ``num_classes`` and ``img_size`` plus its own typed
keyword options; :func:`create_backbone` checks the options against the factory's signature so a
typo fails with the list of accepted options instead of deep inside a constructor.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

import torch  # noqa: F401  (doctest)
from torch import nn

from visrep.errors import ConfigError

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
_COMMON = ("in_chans", "num_classes", "img_size")


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a backbone factory under ``name`` (a decorator)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = fn
        return fn

    return decorator


def _ensure_builtin() -> None:
    # Importing the package registers visrep's own backbones; done lazily to avoid import cycles.
    import visrep.models.backbones  # noqa: F401


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    _ensure_builtin()
    return sorted(_BACKBONES)


def backbone_options(name: str) -> dict[str, inspect.Parameter]:
    """The backbone-specific keyword options of ``name`` (beyond in_chans/num_classes/img_size)."""
    params = inspect.signature(_get(name)).parameters
    return {k: p for k, p in params.items() if k not in _COMMON}


def _get(name: str) -> Callable[..., nn.Module]:
    _ensure_builtin()
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, _BACKBONES, n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"known: {', '.join(sorted(_BACKBONES))}"
        )
        raise ConfigError(f"unknown backbone {name!r}; {hint}")
    return _BACKBONES[name]


def create_backbone(
    name: str,
    *,
    in_chans: int = 3,
    num_classes: int = 10,
    img_size: int | tuple[int, int] | None = None,
    **options: Any,
) -> nn.Module:
    """Build the backbone registered as ``name``.

    The result exposes ``forward_features(x)``, ``forward_head(z, pre_logits=False)``,
    ``num_features`` and ``reset_classifier(n)`` (timm's interface).

    Args:
        name: registered name, see :func:`list_backbones`.
        in_chans: input channels.
        num_classes: classifier outputs (0 for no classifier: ``forward`` returns features).
        img_size: input size, needed by size-dependent models (MLP, ViT).
        **options: backbone-specific options, checked against the factory's signature.

    >>> m = create_backbone("mlp", in_chans=1, num_classes=10, img_size=8, width=32)
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    fn = _get(name)
    accepted = backbone_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"backbone {name!r} has no option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    return fn(in_chans=in_chans, num_classes=num_classes, img_size=img_size, **options)
