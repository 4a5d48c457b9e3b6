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

# Readers, mesh sampling and the class-folder DataModule (issue 17, point-cloud data).
from visrep.data.pointcloud.folder import PointCloudFolderDataModule
from visrep.data.pointcloud.io import Mesh, PointCloud, read_points
from visrep.data.pointcloud.sampling import sample_mesh_surface, triangulate_fan

__all__ += [
    "Mesh",
    "PointCloud",
    "PointCloudFolderDataModule",
    "read_points",
    "sample_mesh_surface",
    "triangulate_fan",
]
