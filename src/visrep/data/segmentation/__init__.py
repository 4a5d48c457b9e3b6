"""Semantic-segmentation data: samples ``{"image": Image, "mask": Mask}``, one source format per
file (:mod:`.paired` CamVid-style folders, :mod:`.masks` binary masks of ISBI 2012 and DAVIS,
:mod:`.voc` PASCAL VOC, :mod:`.coco` COCO instance JSON and :mod:`.labelme` labelme JSON, both
rasterised by :mod:`.polygons`), on the shared base in :mod:`.base`."""

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
from visrep.data.segmentation.coco import CocoFiles, CocoSegmentationDataModule
from visrep.data.segmentation.labelme import LabelmeDataModule
from visrep.data.segmentation.masks import DavisDataModule, MaskFolderDataModule
from visrep.data.segmentation.paired import PairedFolderDataModule
from visrep.data.segmentation.polygons import (
    Region,
    RegionLabel,
    draw_label_map,
    rle_counts_from_string,
    rle_decode,
    rle_encode,
)
from visrep.data.segmentation.voc import VOCSegmentationDataModule

__all__ = [
    "BINARY_CLASSES",
    "CAMVID_CLASSES",
    "CLASS_SETS",
    "ISBI_CLASSES",
    "VOC_CLASSES",
    "ClassSet",
    "CocoFiles",
    "CocoSegmentationDataModule",
    "DavisDataModule",
    "LabelmeDataModule",
    "MaskFolderDataModule",
    "PairedFolderDataModule",
    "RandomScale",
    "Region",
    "RegionLabel",
    "SegAugment",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentationDataModule",
    "class_set",
    "draw_label_map",
    "median_frequency_weights",
    "read_label",
    "resolve_classes",
    "rle_counts_from_string",
    "rle_decode",
    "rle_encode",
    "train_transform",
    "voc_colormap",
]
