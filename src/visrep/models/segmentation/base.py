"""The segmenter interface and its registry: ``SEGMENTERS.build(spec, in_chans, num_classes)``.

A :class:`Segmenter` maps ``(B, in_chans, H, W)`` images to ``(B, num_classes, H, W)`` logits
at the input size, for any ``H, W`` (odd sizes included). Its constructor starts with
``in_chans, num_classes`` (from the data); the rest is its config, what ``--model.model.OPTION``
sets. Encoder-based segmenters take ``encoder: BackboneFactory``, a backbone spec nested in the
segmenter's spec::

    {"class_path": "fcn8s",
     "init_args": {"encoder": {"class_path": "resnet_small", "init_args": {"channels": [8, 16]}}}}

:data:`SEGMENTERS` is a :class:`~visrep.models.registry.NestedRegistry`: its ``spec`` turns a
nested backbone factory (a backbone class or a partial of one, as jsonargparse instantiates it)
into that plain nested spec, and its ``build`` turns a nested spec back into a factory of a
registered backbone.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.registry import NestedRegistry

__all__ = [
    "SEGMENTERS",
    "Segmenter",
    "SegmenterFactory",
    "build_encoder",
    "encoder_class",
]


class Segmenter(nn.Module, ABC):
    """Base class of every registered segmentation model.

    Subclasses define ``__init__(in_chans, num_classes, <typed options>)`` and :meth:`forward`.
    """

    in_chans: int
    num_classes: int

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` for images ``(B, in_chans, H, W)``."""


# The type of a segmenter constructor with its options bound, called with (in_chans, num_classes).
SegmenterFactory = Callable[[int, int], Segmenter]


def encoder_class(factory: Any) -> tuple[type, dict[str, Any]]:
    """The backbone class and keyword options of an encoder factory (a class or a partial)."""
    if isinstance(factory, type):
        return factory, {}
    if isinstance(factory, functools.partial):
        classes = [a for a in (factory.func, *factory.args) if isinstance(a, type)]
        if len(classes) == 1:
            return classes[0], dict(factory.keywords)
    raise ConfigError(
        f"encoder must be a backbone class or a partial of one, got {type(factory).__name__}"
    )


def build_encoder(
    factory: BackboneFactory, in_chans: int, pretrained_path: str | None = None
) -> Backbone:
    """The encoder ``factory(in_chans, 0, None)`` (no classifier), with pretrained weights.

    ``pretrained_path``: a state dict of the backbone or a visrep run / ``.ckpt`` whose
    ``net.backbone.`` tensors are loaded (see :func:`visrep.models.pretrained.load_pretrained`).
    """
    enc = factory(in_chans, 0, None)
    if not isinstance(enc, Backbone):
        raise ConfigError(f"encoder must build a Backbone, got {type(enc).__name__}")
    if not getattr(enc, "feature_info", None):
        raise ConfigError(f"encoder {type(enc).__name__} has no feature_info: no feature levels")
    if pretrained_path:
        from visrep.models.pretrained import load_pretrained  # Lightning only when used

        load_pretrained(enc, pretrained_path)
    return enc


def _load_segmenters() -> None:
    import visrep.models.segmentation  # noqa: F401  (registers the built-in segmenters)


SEGMENTERS: NestedRegistry[Segmenter] = NestedRegistry(
    "segmentation model", Segmenter, leading=("in_chans", "num_classes"), loader=_load_segmenters
)
