"""Image classification sources: one source format per file; samples ``{"image", "label"}``."""

from visrep.data.classification.digits import DigitsDataModule
from visrep.data.classification.files import ImageFilesDataModule, list_images
from visrep.data.classification.folder import ImageFolderDataModule, scan_class_folders
from visrep.data.classification.idx import IDXDataModule, read_idx
from visrep.data.classification.npz import NpzDataModule

__all__ = [
    "DigitsDataModule",
    "IDXDataModule",
    "ImageFilesDataModule",
    "ImageFolderDataModule",
    "NpzDataModule",
    "list_images",
    "read_idx",
    "scan_class_folders",
]

from visrep.data.classification.rings import RingsDataModule  # noqa: E402 (appended: issue 19)

__all__ += ["RingsDataModule"]

from visrep.data.classification.distorted import (  # noqa: E402 (appended: issue 18)
    DistortedDigitsDataModule,
    DistortionConfig,
)

__all__ += ["DistortedDigitsDataModule", "DistortionConfig"]
