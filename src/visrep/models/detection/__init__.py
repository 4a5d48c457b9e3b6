"""Object detectors and instance segmenters: images to boxes, scores, labels (and masks).

Registered in :data:`DETECTORS` (what ``--model.model NAME`` selects): ``faster_rcnn``
(Ren et al. 2015; with FPN, Lin et al. 2017) and ``mask_rcnn`` (He et al. 2017), both
torchvision's on any visrep backbone.
"""

from visrep.models.detection.base import DETECTORS, Detection, Detector, DetectorFactory, Target
from visrep.models.detection.detr import detr
from visrep.models.detection.fast_rcnn import FastRCNNHead, fast_rcnn
from visrep.models.detection.faster_rcnn import TorchvisionRCNN, faster_rcnn, mask_rcnn
from visrep.models.detection.matcher import HungarianMatcher, hungarian_match
from visrep.models.detection.pyramid import PyramidFeatures, freeze_batchnorm
from visrep.models.detection.rcnn import rcnn

__all__ = [
    "DETECTORS",
    "Detection",
    "Detector",
    "DetectorFactory",
    "FastRCNNHead",
    "HungarianMatcher",
    "PyramidFeatures",
    "Target",
    "TorchvisionRCNN",
    "detr",
    "fast_rcnn",
    "faster_rcnn",
    "freeze_batchnorm",
    "hungarian_match",
    "mask_rcnn",
    "rcnn",
]
