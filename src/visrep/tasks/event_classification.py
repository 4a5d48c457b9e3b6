"""Event-camera classification: ``events -> representation -> g_phi -> f_theta`` (seed 000).

The classification task of :class:`~visrep.tasks.ClassificationTask` (loss, metrics,
optimisation, steps) around an :class:`~visrep.models.event_classifier.EventClassifier`: a
named event representation in front of a named backbone whose ``in_chans`` is the
representation's ``out_channels`` and whose ``img_size`` is the representation's output size.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import EVENTS
from visrep.events.representations.registry import create_representation, representation_shape
from visrep.events.types import EventBatch
from visrep.models.backbones.cnn import small_cnn
from visrep.models.event_classifier import EventClassifier
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.plots.events import event_images
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.optim import OptimConfig

__all__ = ["EventClassificationTask", "first_samples"]


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
        """The first ``k`` samples' representations as RGB images, drawn as their kind needs
        (:func:`~visrep.plots.events.event_images`: polarity overlay, diverging or grey)."""
        frames = self.net.representation(first_samples(x, k))
        return event_images(frames, self.hparams.representation)
