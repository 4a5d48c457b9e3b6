"""Semantic segmentation models: ``(B, C, H, W)`` images to ``(B, num_classes, H, W)`` logits.

Registered in :data:`SEGMENTERS` (what ``--model.model NAME`` selects): ``fcn32s``, ``fcn16s``,
``fcn8s`` (Long et al. 2015), ``segnet``, ``segnet_basic`` (Badrinarayanan et al. 2017),
``unet`` (Ronneberger et al. 2015; plain, or over any encoder as segmentation_models_pytorch's
``Unet``), ``deeplab`` (DeepLab v3, Chen et al. 2017) and ``fpn`` (the semantic branch of
Panoptic FPN, Kirillov et al. 2019, on the FPN of Lin et al. 2017).
"""

from visrep.models.segmentation.base import (
    SEGMENTERS,
    Segmenter,
    SegmenterFactory,
    build_encoder,
)
from visrep.models.segmentation.deeplab import ASPP, DeepLabV3, deeplab
from visrep.models.segmentation.encoder import DilatedCNN
from visrep.models.segmentation.fcn import FCN, fcn8s, fcn16s, fcn32s
from visrep.models.segmentation.fpn import SemanticFPN, fpn
from visrep.models.segmentation.segnet import (
    SegNet,
    max_pool_indices,
    max_unpool,
    segnet,
    segnet_basic,
)
from visrep.models.segmentation.unet import (
    UNet,
    UNetDecoder,
    UNetDecoderBlock,
    unet,
    unet_weight_map,
)

__all__ = [
    "ASPP",
    "FCN",
    "SEGMENTERS",
    "DeepLabV3",
    "DilatedCNN",
    "SegNet",
    "Segmenter",
    "SegmenterFactory",
    "SemanticFPN",
    "UNet",
    "UNetDecoder",
    "UNetDecoderBlock",
    "build_encoder",
    "deeplab",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "fpn",
    "max_pool_indices",
    "max_unpool",
    "segnet",
    "segnet_basic",
    "unet",
    "unet_weight_map",
]
