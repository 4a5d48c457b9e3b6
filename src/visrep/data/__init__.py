"""Data sources: datasets and LightningDataModules yielding sample dicts (:mod:`visrep.data.samples`).

``base`` holds what every family shares (``DataSpec``, ``LoaderConfig``, ``SplitConfig``, the
split/loader base); each task family has a folder (``classification/``, ``embedding/`` ...).
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
    DataSpec,
    EpochShuffleSampler,
    ImageDataModule,
    LoaderConfig,
    SplitConfig,
    SplitDataModule,
    Splits,
    channel_stats,
    stratified_split,
)
from visrep.data.classification import (
    DigitsDataModule,
    IDXDataModule,
    ImageFilesDataModule,
    ImageFolderDataModule,
    NpzDataModule,
    list_images,
    read_idx,
    scan_class_folders,
)
from visrep.data.datasets import ArrayImageDataset, ImageFileDataset, load_image
from visrep.data.detection import (
    CocoDetectionDataModule,
    LabelmeDetectionDataModule,
    MaskDetectionDataModule,
    VOCDetectionDataModule,
    YOLODataModule,
)
from visrep.data.embedding import (
    IdentityFolderDataModule,
    IdentitySplit,
    PKBatchSampler,
    read_pairs,
    scan_identity_folders,
    split_identities,
)
from visrep.data.generative import (
    GaussianMixtureDataModule,
    UnpairedImageDataModule,
    mixture_modes,
    sample_mixture,
)
from visrep.data.pointcloud import ModelNetDataModule, PointAugmentConfig
from visrep.data.samples import collate
from visrep.data.segmentation import (
    CocoSegmentationDataModule,
    DavisDataModule,
    LabelmeDataModule,
    MaskFolderDataModule,
    PairedFolderDataModule,
    VOCSegmentationDataModule,
)

__all__ = [
    "ArrayImageDataset",
    "AugmentConfig",
    "CocoDetectionDataModule",
    "CocoSegmentationDataModule",
    "DataSpec",
    "DavisDataModule",
    "DigitsDataModule",
    "EpochShuffleSampler",
    "GaussianMixtureDataModule",
    "IDXDataModule",
    "IdentityFolderDataModule",
    "IdentitySplit",
    "ImageDataModule",
    "ImageFileDataset",
    "ImageFilesDataModule",
    "ImageFolderDataModule",
    "LabelmeDataModule",
    "LabelmeDetectionDataModule",
    "LoaderConfig",
    "MaskDetectionDataModule",
    "MaskFolderDataModule",
    "ModelNetDataModule",
    "NpzDataModule",
    "PKBatchSampler",
    "PairedFolderDataModule",
    "PointAugmentConfig",
    "SplitConfig",
    "SplitDataModule",
    "Splits",
    "UnpairedImageDataModule",
    "VOCDetectionDataModule",
    "VOCSegmentationDataModule",
    "YOLODataModule",
    "augment_batch",
    "channel_stats",
    "collate",
    "color_jitter",
    "list_images",
    "load_image",
    "mixture_modes",
    "random_crop",
    "random_hflip",
    "read_idx",
    "read_pairs",
    "sample_mixture",
    "scan_class_folders",
    "scan_identity_folders",
    "split_identities",
    "stratified_split",
]

from visrep.data.correspondence import (  # appended: issue 17
    HomographyPairsDataModule,
    PairConfig,
    PhotoSource,
    SiftConfig,
)

__all__ += ["HomographyPairsDataModule", "PairConfig", "PhotoSource", "SiftConfig"]

from visrep.data.pointcloud import (  # noqa: E402 (appended: issue 17, point segmentation)
    BlockConfig,
    PointSegmentationDataModule,
    RegionSplit,
)

__all__ += ["BlockConfig", "PointSegmentationDataModule", "RegionSplit"]

from visrep.data.video import (  # noqa: E402 (appended: issue 15, moving digits and forecasting)
    FramesForecastDataModule,
    MovingDigitsDataModule,
    MovingDigitsForecastDataModule,
    VideoFolderDataModule,
)

__all__ += [
    "FramesForecastDataModule",
    "MovingDigitsDataModule",
    "MovingDigitsForecastDataModule",
    "VideoFolderDataModule",
]

from visrep.data.classification import RingsDataModule  # noqa: E402 (appended: issue 19, polar demo)

__all__ += ["RingsDataModule"]

from visrep.data.video import (  # noqa: E402 (appended: issue 19)
    DigitStringsDataModule,
    MovingDigitsGestureDataModule,
)

__all__ += ["DigitStringsDataModule", "MovingDigitsGestureDataModule"]

from visrep.data.classification import (  # noqa: E402 (appended: issue 18, distorted digits)
    DistortedDigitsDataModule,
    DistortionConfig,
)

__all__ += ["DistortedDigitsDataModule", "DistortionConfig"]

from visrep.data.vos import DavisVosDataModule  # noqa: E402 (appended: issue 16)

__all__ += ["DavisVosDataModule"]

from visrep.data.stereo import (  # noqa: E402 (appended: issue 18, self-supervised depth)
    StereoAugment,
    StereoDataModule,
)

__all__ += ["StereoAugment", "StereoDataModule"]

from visrep.data.keypoints import (  # noqa: E402 (appended: issue 18, heat-map keypoints)
    ChessboardDataModule,
    KeypointAugment,
    KeypointDataModule,
)

__all__ += ["ChessboardDataModule", "KeypointAugment", "KeypointDataModule"]

from visrep.data.correspondence.lift_patches import (  # noqa: E402 (appended: issue 18, LIFT)
    LiftPatchDataModule,
)

__all__ += ["LiftPatchDataModule"]
