"""Data sources: datasets and LightningDataModules yielding ``(image, target)`` batches.

Images are float ``(B, C, H, W)`` in [0, 1]; normalisation lives in the model.
"""

from visrep.data.augment import (
    AugmentConfig,
    augment_batch,
    color_jitter,
    random_crop,
    random_hflip,
)
from visrep.data.base import (
    ImageDataModule,
    SplitDataModule,
    Splits,
    channel_stats,
    stratified_split,
)
from visrep.data.datasets import ArrayImageDataset, ImageFileDataset, load_image
from visrep.data.digits import DigitsDataModule
from visrep.data.files import ImageFilesDataModule, list_images
from visrep.data.folder import ImageFolderDataModule, scan_class_folders
from visrep.data.idx import IDXDataModule, read_idx
from visrep.data.npz import NpzDataModule

__all__ = [
    "ArrayImageDataset",
    "AugmentConfig",
    "DigitsDataModule",
    "IDXDataModule",
    "ImageDataModule",
    "ImageFileDataset",
    "ImageFilesDataModule",
    "ImageFolderDataModule",
    "NpzDataModule",
    "SplitDataModule",
    "Splits",
    "augment_batch",
    "channel_stats",
    "color_jitter",
    "list_images",
    "load_image",
    "random_crop",
    "random_hflip",
    "read_idx",
    "scan_class_folders",
    "stratified_split",
]
