"""Event-camera classification: ``events -> representation -> g_phi -> f_theta`` (seed 000).

The classification task of :class:`~visrep.tasks.ClassificationTask` (loss, metrics,
optimisation, steps) around an :class:`~visrep.models.event_classifier.EventClassifier`: a
named event representation in front of a named backbone whose ``in_chans`` is the
representation's ``out_channels`` and whose ``img_size`` is the representation's output size.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import EVENTS
from visrep.events.representations.registry import create_representation, representation_shape
from visrep.events.types import EventBatch
from visrep.models.backbones.cnn import small_cnn
from visrep.models.event_classifier import EventClassifier
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.optim import OptimConfig

__all__ = ["EventClassificationTask", "event_frame_image", "first_samples"]


def first_samples(batch: EventBatch, k: int) -> EventBatch:
    """The first ``k`` samples of a batch (a view of its events, no copy)."""
    k = min(k, len(batch))
    n = int(batch.offsets[k])
    return EventBatch(
        batch.x[:n],
        batch.y[:n],
        batch.t[:n],
        batch.p[:n],
        batch.offsets[: k + 1],
        batch.sensor_size,
    )


def event_frame_image(frames: Tensor) -> Tensor:
    """Event frames ``(B, C, H, W)`` as displayable RGB images in ``[0, 1]``.

    The magnitudes of the first half of the channels go to blue and those of the second half
    to red, each sample scaled by its own maximum; for the polarity-major representations
    (counts, surfaces, EST) that shows OFF events blue and ON events red. One channel is grey.

    Shape:
        ``(B, C, H, W) -> (B, 3, H, W)`` (``(B, 1, H, W)`` when ``C == 1``).
    """
    a = frames.detach().float().abs()
    if a.shape[1] == 1:
        img = a
    else:
        half = a.shape[1] // 2
        off, on = a[:, :half].sum(1), a[:, half:].sum(1)
        img = torch.stack([on, torch.zeros_like(on), off], 1)
    peak = img.flatten(1).amax(1).clamp(min=1e-12)
    return img / peak.view(-1, 1, 1, 1)


class EventClassificationTask(ClassificationTask):
    """Trains an event representation and a backbone end to end for classification.

    Args:
        representation: A name from :func:`~visrep.events.representations.registry.list_representations`
            (count, last_timestamp, timesurface, voxel, hats, est, matrix_lstm).
        representation_args: The representation's own options (checked against its signature).
        input_norm: ``"rms"`` divides each frame by the RMS of its non-zero entries (see
            :func:`~visrep.models.event_classifier.rms_normalize`), ``"none"`` leaves it.
        backbone: any registered backbone with its options, as in
            :class:`~visrep.tasks.ClassificationTask`; its input channels and size are the
            representation's.
        label_smoothing, optim, top_k: as in :class:`~visrep.tasks.ClassificationTask`.
    """

    families = ("events",)
    input_key = EVENTS
    embeds = False  # its net embeds event batches, not images

    def __init__(
        self,
        representation: str = "count",
        representation_args: dict[str, Any] | None = None,
        input_norm: Literal["rms", "none"] = "rms",
        backbone: BackboneFactory = small_cnn,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__(
            backbone=backbone, label_smoothing=label_smoothing, optim=optim, top_k=top_k
        )

    def build_net(self, spec: DataSpec) -> EventClassifier:
        hp = self.hparams
        size = tuple(int(v) for v in spec.sensor_size)
        rep = create_representation(hp.representation, size, **(hp.representation_args or {}))
        _, h, w = representation_shape(rep, size)
        backbone = BACKBONES.build(self.backbone_spec, rep.out_channels, spec.num_classes, (h, w))
        return EventClassifier(rep, backbone, hp.input_norm)

    def sample_images(self, x: EventBatch, k: int) -> Tensor:
        """The first ``k`` samples' event frames as RGB images (OFF blue, ON red)."""
        return event_frame_image(self.net.representation(first_samples(x, k)))
