"""Faster R-CNN (with or without FPN) and Mask R-CNN on any visrep backbone, from torchvision.

Ren, He, Girshick and Sun 2015 (Faster R-CNN: a region proposal network sharing the backbone's
features; anchors of several scales and aspect ratios at every position, an objectness score
and 4 box offsets per anchor; loss eq. 16 of seed 001), Lin et al. 2017 (FPN: one anchor size
per pyramid level, RoIs assigned to levels by size) and He et al. 2017 (Mask R-CNN: a per-class
``m x m`` mask head on RoIAlign features, binary cross-entropy on the true class's mask only,
eq. 17). torchvision implements all three faithfully (``torchvision.models.detection``); these
classes only put a visrep backbone under them (:class:`~visrep.models.detection.pyramid.PyramidFeatures`)
and translate labels (torchvision keeps class 0 for the background). Nothing is downloaded:
torchvision's model classes are built directly, never through its weight-loading builders.

Images arrive normalised (the task normalises with the data's mean and std), so torchvision's
transform only resizes: the shorter side to ``min_size`` unless the longer would exceed
``max_size``; boxes and masks are mapped back to the input image's pixels.

Anchors: by default ``anchor_scale * stride`` per pyramid level (8 x 4 = 32 at P2 up to 512 at
P6, torchvision's and the FPN paper's sizes) with ``aspect_ratios`` at each; without FPN the
paper's three sizes 128, 256, 512 at the single level (9 anchors per position).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch  # noqa: F401  (doctest)
from torch import Tensor
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from visrep.errors import ConfigError
from visrep.models.detection.base import DETECTORS, Detection, Detector, Target
from visrep.models.detection.pyramid import PyramidFeatures, detection_encoder
from visrep.models.interface import BackboneFactory

__all__ = ["TorchvisionRCNN", "faster_rcnn", "mask_rcnn"]


class TorchvisionRCNN(Detector):
    """A torchvision two-stage detector on a visrep backbone (module docstring).

    Args:
        in_chans: input channels.
        num_classes: object classes (no background).
        backbone: the feature extractor, any registered backbone with ``feature_info``
            (default ``resnet18``, from scratch).
        pretrained_path: the backbone's weights: a visrep run (classification or other) or
            ``.ckpt``, or a state dict.
        frozen_bn: replace the backbone's batch norms by frozen ones (with pretrained weights,
            as torchvision does; batches of a few large images give poor batch statistics).
        fpn: use a feature pyramid (Lin et al. 2017); otherwise the coarsest level alone.
        num_levels: backbone levels in the pyramid (paper: 4).
        fpn_channels: the pyramid's width (paper: 256).
        anchor_sizes: one size per returned level (FPN, with P6) or the sizes at the single
            level; None: the defaults above.
        anchor_scale: default anchor size per pyramid level, in strides.
        aspect_ratios: anchor height / width ratios (paper: 0.5, 1, 2).
        min_size, max_size: the resize of torchvision's transform (see above); several
            ``min_size`` values: each training image takes one at random (multi-scale training,
            as Detectron's), evaluation the last.
        rpn_batch_size: anchors sampled per image for the RPN loss (paper: 256).
        roi_batch_size: RoIs sampled per image for the box head (paper: 512 with FPN).
        rpn_post_nms_train, rpn_post_nms_test: proposals kept per image (FPN: 2000 / 1000).
        score_thresh: detections below this score are dropped.
        nms_thresh: per-class non-maximum suppression IoU.
        detections_per_img: at most this many detections per image.
    """

    model_class: ClassVar[type[FasterRCNN]] = FasterRCNN

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        backbone: BackboneFactory | None = None,
        pretrained_path: str | None = None,
        frozen_bn: bool = False,
        fpn: bool = True,
        num_levels: int = 4,
        fpn_channels: int = 256,
        anchor_sizes: tuple[int, ...] | None = None,
        anchor_scale: float = 8.0,
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        rpn_batch_size: int = 256,
        roi_batch_size: int = 512,
        rpn_post_nms_train: int = 2000,
        rpn_post_nms_test: int = 1000,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        sizes_in = tuple(min_size) if isinstance(min_size, list | tuple) else (min_size,)
        if not sizes_in:
            raise ConfigError("min_size must be a size or a list of sizes, got []")
        _check_positive(
            **{f"min_size[{i}]": s for i, s in enumerate(sizes_in)}, max_size=max_size, rpn_batch_size=rpn_batch_size,
            roi_batch_size=roi_batch_size, rpn_post_nms_train=rpn_post_nms_train,
            rpn_post_nms_test=rpn_post_nms_test, detections_per_img=detections_per_img,
            anchor_scale=anchor_scale, num_levels=num_levels, fpn_channels=fpn_channels,
        )  # fmt: skip
        if not aspect_ratios or min(aspect_ratios) <= 0:
            raise ConfigError(f"aspect_ratios must be positive numbers, got {aspect_ratios}")
        for name, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh)):
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        encoder = detection_encoder(backbone, in_chans, pretrained_path, frozen_bn)
        features = PyramidFeatures(encoder, fpn, num_levels, fpn_channels)
        n_maps = len(features.names)
        if anchor_sizes is None:
            sizes = (
                tuple((round(anchor_scale * r),) for r in features.reductions)
                if fpn
                else ((128, 256, 512),)
            )
        elif fpn:
            if len(anchor_sizes) != n_maps:
                raise ConfigError(
                    f"anchor_sizes must give one size per pyramid level ({n_maps}: strides "
                    f"{features.reductions}), got {tuple(anchor_sizes)}"
                )
            sizes = tuple((int(s),) for s in anchor_sizes)
        else:
            sizes = (tuple(int(s) for s in anchor_sizes),)
        if min(min(s) for s in sizes) < 1:
            raise ConfigError(f"anchor sizes must be >= 1 pixel, got {sizes}")
        anchors = AnchorGenerator(sizes, (tuple(float(a) for a in aspect_ratios),) * len(sizes))
        roi_names = [n for n in features.names if n != "pool"]
        self.model = self.model_class(
            features,
            num_classes=num_classes + 1,  # + background (class 0)
            min_size=sizes_in,
            max_size=max_size,
            image_mean=[0.0] * in_chans,  # the task normalises; the transform only resizes
            image_std=[1.0] * in_chans,
            rpn_anchor_generator=anchors,
            rpn_batch_size_per_image=rpn_batch_size,
            rpn_post_nms_top_n_train=rpn_post_nms_train,
            rpn_post_nms_top_n_test=rpn_post_nms_test,
            box_roi_pool=MultiScaleRoIAlign(roi_names, output_size=7, sampling_ratio=2),
            box_batch_size_per_image=roi_batch_size,
            box_score_thresh=score_thresh,
            box_nms_thresh=nms_thresh,
            box_detections_per_img=detections_per_img,
            **self._extra(roi_names),
        )

    def _extra(self, roi_names: list[str]) -> dict[str, Any]:
        return {}

    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> dict[str, Tensor] | list[Detection]:
        if targets is not None:
            shifted = [{**t, "labels": t["labels"] + 1} for t in targets]
            return self.model(images, shifted)
        was_training = self.model.training
        self.model.eval()  # torchvision decides losses vs detections by the module's mode
        try:
            out = self.model(images)
        finally:
            self.model.train(was_training)
        return [_shift_back(d) for d in out]


def _shift_back(d: dict[str, Tensor]) -> Detection:
    d = {**d, "labels": d["labels"] - 1}
    if "masks" in d:  # torchvision: (N, 1, H, W) probabilities
        d["masks"] = d["masks"][:, 0]
    return d


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")


@DETECTORS.register
class faster_rcnn(TorchvisionRCNN):  # noqa: N801 (the registered, user-facing name)
    """Faster R-CNN (Ren et al. 2015), with FPN by default (Lin et al. 2017); see
    :class:`TorchvisionRCNN`.

    >>> from functools import partial
    >>> from visrep.models.segmentation.encoder import DilatedCNN
    >>> enc = partial(DilatedCNN, channels=(8, 8, 16, 16, 16))
    >>> m = faster_rcnn(3, 2, backbone=enc, fpn_channels=16, min_size=64, max_size=64).eval()
    >>> out = m([torch.rand(3, 64, 48)])
    >>> sorted(out[0]), out[0]["boxes"].shape[1]
    (['boxes', 'labels', 'scores'], 4)
    """


@DETECTORS.register
class mask_rcnn(TorchvisionRCNN):  # noqa: N801 (the registered, user-facing name)
    """Mask R-CNN (He et al. 2017): Faster R-CNN + FPN with a per-class mask head on 14x14
    RoIAlign features (28x28 masks), loss eq. 17 of seed 001; see :class:`TorchvisionRCNN`.

    Targets need ``masks`` ``(M, H, W)``; detections carry ``masks`` ``(N, H, W)``
    probabilities (threshold 0.5 for binary masks).
    """

    model_class = MaskRCNN
    instance_masks = True

    def _extra(self, roi_names: list[str]) -> dict[str, Any]:
        return {"mask_roi_pool": MultiScaleRoIAlign(roi_names, output_size=14, sampling_ratio=2)}
