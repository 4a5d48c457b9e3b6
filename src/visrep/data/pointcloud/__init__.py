"""Point-cloud data: transforms, farthest-point sampling, readers and data modules."""

from visrep.data.pointcloud.folder import PointCloudFolderDataModule
from visrep.data.pointcloud.io import Mesh, PointCloud, read_points
from visrep.data.pointcloud.modelnet import (
    ModelNetDataModule,
    PointAugmentConfig,
    PointCloudDataset,
    normalize_unit_sphere,
)
from visrep.data.pointcloud.sampling import (
    farthest_point_sample,
    gather_points,
    sample_mesh_surface,
    triangulate_fan,
)
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
    "ComposePoints",
    "FixedSize",
    "Jitter",
    "Mesh",
    "ModelNetDataModule",
    "NormalizeUnitSphere",
    "PointAugmentConfig",
    "PointCloud",
    "PointCloudDataset",
    "PointCloudFolderDataModule",
    "PointDropout",
    "PointTransform",
    "RandomRotateUp",
    "RandomScale",
    "RandomTranslate",
    "farthest_point_sample",
    "gather_points",
    "normalize_unit_sphere",
    "read_points",
    "sample_mesh_surface",
    "triangulate_fan",
]
