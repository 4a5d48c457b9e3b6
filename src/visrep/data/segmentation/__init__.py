"""Semantic-segmentation data: samples ``{"image": Image, "mask": Mask}``, one source format per
file (:mod:`.paired` CamVid-style folders, :mod:`.masks` binary masks of ISBI 2012 and DAVIS,
:mod:`.voc` PASCAL VOC), on the shared base in :mod:`.base`."""

from visrep.data.segmentation.base import (
    ClassSet,
    RandomScale,
    SegAugment,
    SegmentationDataModule,
    SegmentationDataset,
    median_frequency_weights,
    read_label,
    resolve_classes,
    train_transform,
    voc_colormap,
)
from visrep.data.segmentation.classes import (
    BINARY_CLASSES,
    CAMVID_CLASSES,
    CLASS_SETS,
    ISBI_CLASSES,
    VOC_CLASSES,
    class_set,
)
from visrep.data.segmentation.masks import DavisDataModule, MaskFolderDataModule
from visrep.data.segmentation.paired import PairedFolderDataModule
from visrep.data.segmentation.voc import VOCSegmentationDataModule

__all__ = [
    "BINARY_CLASSES",
    "CAMVID_CLASSES",
    "CLASS_SETS",
    "ISBI_CLASSES",
    "VOC_CLASSES",
    "ClassSet",
    "DavisDataModule",
    "MaskFolderDataModule",
    "PairedFolderDataModule",
    "RandomScale",
    "SegAugment",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentationDataModule",
    "class_set",
    "median_frequency_weights",
    "read_label",
    "resolve_classes",
    "train_transform",
    "voc_colormap",
]
