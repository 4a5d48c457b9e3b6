"""Point-cloud data: transforms, farthest-point sampling, readers and data modules."""

from visrep.data.pointcloud.modelnet import (
    ModelNetDataModule,
    PointAugmentConfig,
    PointCloudDataset,
    normalize_unit_sphere,
)
from visrep.data.pointcloud.sampling import farthest_point_sample, gather_points
from visrep.data.pointcloud.transforms import (
    ComposePoints,
    FixedSize,
    Jitter,
    NormalizeUnitSphere,
    PointDropout,
    PointTransform,
    RandomRotateUp,
    RandomScale,
    RandomTranslate,
)

__all__ = [
    "ModelNetDataModule",
    "PointAugmentConfig",
    "PointCloudDataset",
    "normalize_unit_sphere",
    "ComposePoints",
    "FixedSize",
    "Jitter",
    "NormalizeUnitSphere",
    "PointDropout",
    "PointTransform",
    "RandomRotateUp",
    "RandomScale",
    "RandomTranslate",
    "farthest_point_sample",
    "gather_points",
]
