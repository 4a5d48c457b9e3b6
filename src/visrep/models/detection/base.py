"""The detector interface and its registry: ``DETECTORS.build(spec, in_chans, num_classes)``.

A :class:`Detector` takes a list of normalised images (each ``(in_chans, H_i, W_i)``, sizes may
differ) and

- in training (``targets`` given), returns a dict of named scalar losses, which the task sums
  (Fast R-CNN's multi-task loss, eq. 15 of seed 001; the RPN's, eq. 16; DETR's set loss ...);
- otherwise returns one dict per image: ``boxes`` float ``(N, 4)`` XYXY in that image's pixels,
  ``scores`` float ``(N,)``, ``labels`` int64 ``(N,)`` in ``0..num_classes - 1`` and, for
  instance-segmentation models, ``masks`` float ``(N, H_i, W_i)`` in ``[0, 1]``.

A target is ``{"boxes": (M, 4) XYXY pixels, "labels": (M,) in 0..num_classes - 1}`` (plus
``masks`` ``(M, H_i, W_i)`` uint8 for instance models). Classes are the data's, without a
background class: models that need one (torchvision's R-CNNs keep 0 for it) shift internally.

Constructors start with ``in_chans, num_classes`` (from the data); the rest is the model's
config, what ``--model.model.OPTION`` sets; a ``backbone: BackboneFactory`` option nests a
backbone spec, as a segmenter's ``encoder`` (:class:`~visrep.models.registry.NestedRegistry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from visrep.models.registry import NestedRegistry

__all__ = ["DETECTORS", "Detection", "Detector", "DetectorFactory", "Target"]

Target = dict[str, Tensor]
Detection = dict[str, Tensor]


class Detector(nn.Module, ABC):
    """Base class of every registered detector (module docstring).

    Class attributes:
        instance_masks: the model predicts (and trains on) instance masks.
        needs_proposals: the model reads region proposals from the target / sample
            (``proposals`` ``(P, 4)``, as Fast R-CNN and R-CNN do) instead of making its own.
    """

    instance_masks: ClassVar[bool] = False
    needs_proposals: ClassVar[bool] = False
    in_chans: int
    num_classes: int

    @abstractmethod
    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> dict[str, Tensor] | list[Detection]:
        """Losses (training, ``targets`` given) or one detection dict per image."""


# A detector constructor with its options bound, called with (in_chans, num_classes).
DetectorFactory = Callable[[int, int], Detector]


def _load_detectors() -> None:
    import visrep.models.detection  # noqa: F401  (registers the built-in detectors)


DETECTORS: NestedRegistry[Detector] = NestedRegistry(
    "detection model", Detector, leading=("in_chans", "num_classes"), loader=_load_detectors
)
