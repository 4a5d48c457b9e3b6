"""Image classification sources: one source format per file; samples ``{"image", "label"}``."""

from visrep.data.classification.digits import DigitsDataModule
from visrep.data.classification.distorted import DistortedDigitsDataModule, DistortionConfig
from visrep.data.classification.files import ImageFilesDataModule, list_images
from visrep.data.classification.folder import ImageFolderDataModule, scan_class_folders
from visrep.data.classification.idx import IDXDataModule, read_idx
from visrep.data.classification.npz import NpzDataModule
from visrep.data.classification.rings import RingsDataModule

__all__ = [
    "DigitsDataModule",
    "DistortedDigitsDataModule",
    "DistortionConfig",
    "IDXDataModule",
    "ImageFilesDataModule",
    "ImageFolderDataModule",
    "NpzDataModule",
    "RingsDataModule",
    "list_images",
    "read_idx",
    "scan_class_folders",
]
