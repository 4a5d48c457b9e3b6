"""Rectified stereo pairs (self-supervised depth): layouts, PFM, augmentation, DataModule."""

from visrep.data.stereo.datamodule import (
    IMAGE_RIGHT,
    StereoAugment,
    StereoDataModule,
    StereoDataset,
    augment_pair,
)
from visrep.data.stereo.pfm import read_pfm, write_pfm
from visrep.data.stereo.sources import (
    StereoPair,
    read_disparity,
    read_view,
    resize_disparity,
    scan_stereo,
)

__all__ = [
    "IMAGE_RIGHT",
    "StereoAugment",
    "StereoDataModule",
    "StereoDataset",
    "StereoPair",
    "augment_pair",
    "read_disparity",
    "read_pfm",
    "read_view",
    "resize_disparity",
    "scan_stereo",
    "write_pfm",
]
