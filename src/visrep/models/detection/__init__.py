"""Object detectors and instance segmenters: images to boxes, scores, labels (and masks).

Registered in :data:`DETECTORS` (what ``--model.model NAME`` selects), any visrep backbone
under each:

- ``rcnn`` (Girshick et al. 2014): warped proposal crops through a CNN, one linear SVM per
  class and class-specific box regression, fitted after the CNN's fine-tuning;
- ``fast_rcnn`` (Girshick 2015): shared features, RoI pooling, the multi-task loss eq. 15;
- ``faster_rcnn`` (Ren et al. 2015; with FPN, Lin et al. 2017) and ``mask_rcnn`` (He et al.
  2017), torchvision's;
- ``detr`` (Carion et al. 2020): a transformer encoder-decoder with object queries trained
  through Hungarian matching.

``rcnn`` and ``fast_rcnn`` read class-independent region proposals from the data
(``--data.proposals``: selective search).
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
