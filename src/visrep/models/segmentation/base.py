"""The segmenter interface and its registry: ``SEGMENTERS.build(spec, in_chans, num_classes)``.

A :class:`Segmenter` maps ``(B, in_chans, H, W)`` images to ``(B, num_classes, H, W)`` logits
at the input size, for any ``H, W`` (odd sizes included). Its constructor starts with
``in_chans, num_classes`` (from the data); the rest is its config, what ``--model.model.OPTION``
sets. Encoder-based segmenters take ``encoder: BackboneFactory``, a backbone spec nested in the
segmenter's spec::

    {"class_path": "fcn8s",
     "init_args": {"encoder": {"class_path": "resnet_small", "init_args": {"channels": [8, 16]}}}}

:data:`SEGMENTERS` is a :class:`~visrep.utils.registry.Registry` whose :meth:`~SegmenterRegistry.spec`
also turns a nested backbone factory (a backbone class or a partial of one, as jsonargparse
instantiates it) into that plain nested spec, and whose :meth:`~SegmenterRegistry.build` turns a
nested spec back into a factory of a registered backbone.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.utils.registry import Registry

__all__ = [
    "SEGMENTERS",
    "Segmenter",
    "SegmenterFactory",
    "SegmenterRegistry",
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


class SegmenterRegistry(Registry[Segmenter]):
    """A :class:`~visrep.utils.registry.Registry` whose specs may nest backbone specs.

    The generic registry keeps option values as they are (plain data); a segmenter's
    ``encoder`` option is a backbone factory, so :meth:`spec` replaces the values of options
    typed :data:`~visrep.models.interface.BackboneFactory` (a backbone name, spec, class or
    partial) by ``BACKBONES.spec(value)`` (validated, plain) and :meth:`build` replaces a nested
    ``{"class_path", "init_args"}`` backbone spec by a partial of the registered backbone, the
    same factory jsonargparse would have built.
    """

    def spec(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, functools.partial):
            cls = self._from_partial(obj)
            nested = self._nested(cls, obj.keywords)
            obj = functools.partial(obj.func, *obj.args, **nested)
        elif isinstance(obj, Mapping) and isinstance(obj.get("init_args"), Mapping):
            cls, _ = self._lookup(obj.get("class_path"))
            obj = {**obj, "init_args": self._nested(cls, obj["init_args"])}
        return super().spec(obj)

    def _nested(self, cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
        # Options typed BackboneFactory (annotations are strings here: postponed evaluation).
        factories = {
            n for n, p in self._options(cls).items() if "BackboneFactory" in str(p.annotation)
        }
        return {
            k: BACKBONES.spec(v) if k in factories and v is not None else v
            for k, v in options.items()
        }

    def build(self, spec: Any, *leading: Any) -> Segmenter:
        s = self.spec(spec)
        args: dict[str, Any] = {}
        for k, v in s["init_args"].items():
            if isinstance(v, Mapping) and "class_path" in v:
                v = functools.partial(BACKBONES.resolve(v["class_path"]), **v["init_args"])
            args[k] = v
        return self.resolve(s["class_path"])(*leading, **args)


def _load_segmenters() -> None:
    import visrep.models.segmentation  # noqa: F401  (registers the built-in segmenters)


SEGMENTERS: SegmenterRegistry = SegmenterRegistry(
    "segmentation model", Segmenter, leading=("in_chans", "num_classes"), loader=_load_segmenters
)
