"""Event-camera classification: ``events -> representation -> g_phi -> f_theta`` (seed 000).

The classification task of :class:`~visrep.tasks.ClassificationTask` (loss, metrics,
optimisation, steps) around an :class:`~visrep.models.event_classifier.EventClassifier`: a
named event representation in front of a named backbone whose ``in_chans`` is the
representation's ``out_channels`` and whose ``img_size`` is the representation's output size.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from torch import Tensor

from visrep.events.representations.registry import create_representation, representation_shape
from visrep.events.types import EventBatch
from visrep.models import create_backbone
from visrep.models.event_classifier import EventClassifier
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.optim import OptimConfig

__all__ = ["EventClassificationTask", "event_frame_image", "first_samples"]

# Data facts the model needs; filled from the data module at fit time when not given.
_DATA_KEYS = ("num_classes", "sensor_size", "class_names")


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
        backbone: A name from :func:`visrep.models.list_backbones`.
        backbone_args: The backbone's own options.
        num_classes, sensor_size, class_names: taken from the data module when left empty (the
            usual case); stored in the checkpoint so prediction needs no data.
        label_smoothing, optim, top_k: as in :class:`~visrep.tasks.ClassificationTask`.
    """

    def __init__(
        self,
        representation: str = "count",
        representation_args: dict[str, Any] | None = None,
        input_norm: Literal["rms", "none"] = "rms",
        backbone: str = "small_cnn",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int | None = None,
        sensor_size: list[int] | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__(
            backbone=backbone,
            backbone_args=backbone_args,
            num_classes=num_classes,
            class_names=class_names,
            label_smoothing=label_smoothing,
            optim=optim,
            top_k=top_k,
        )
        # The image task's own data facts (in_chans, mean, ...) are not ours: a checkpoint's
        # hparams must rebuild this class exactly (load_from_checkpoint / load_run).
        ours = inspect.signature(EventClassificationTask.__init__).parameters
        for k in inspect.signature(ClassificationTask.__init__).parameters:
            if k not in ours:
                self.hparams.pop(k, None)
        if sensor_size is not None:
            self.hparams["sensor_size"] = [int(v) for v in sensor_size]
        if all(self.hparams.get(k) is not None for k in _DATA_KEYS):
            self._build()

    def build_net(self) -> EventClassifier:
        hp = self.hparams
        size = tuple(int(v) for v in hp.sensor_size)
        hp.sensor_size = list(size)
        rep = create_representation(hp.representation, size, **(hp.representation_args or {}))
        _, h, w = representation_shape(rep, size)
        backbone = create_backbone(
            hp.backbone,
            in_chans=rep.out_channels,
            num_classes=hp.num_classes,
            img_size=(h, w),
            **(hp.backbone_args or {}),
        )
        return EventClassifier(rep, backbone, hp.input_norm)

    def sample_images(self, x: EventBatch, k: int) -> Tensor:
        """The first ``k`` samples' event frames as RGB images (OFF blue, ON red)."""
        return event_frame_image(self.net.representation(first_samples(x, k)))
