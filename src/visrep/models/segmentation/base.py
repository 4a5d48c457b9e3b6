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

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor, nn

from visrep.models.registry import NestedRegistry, build_encoder, encoder_class

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


def _load_segmenters() -> None:
    import visrep.models.segmentation  # noqa: F401  (registers the built-in segmenters)


SEGMENTERS: NestedRegistry[Segmenter] = NestedRegistry(
    "segmentation model", Segmenter, leading=("in_chans", "num_classes"), loader=_load_segmenters
)
