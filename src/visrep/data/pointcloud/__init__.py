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

# appended: issue 17, point-cloud segmentation (blocks, regions, boxes from mmdetection3d infos)
from visrep.data.pointcloud.blocks import chunk_indices, grid_blocks
from visrep.data.pointcloud.boxes import BoxLabels, label_points_in_boxes, points_in_boxes
from visrep.data.pointcloud.ground import (
    confusion_iou,
    fit_ground_plane,
    fit_height_band,
    height_above,
)
from visrep.data.pointcloud.mmdet3d_info import (
    KITTI_CLASSES,
    SceneBoxes,
    read_info_pickle,
    read_scene_boxes,
)
from visrep.data.pointcloud.segmentation import (
    BlockConfig,
    PointSegmentationDataModule,
    PointSegmentationDataset,
    RegionSplit,
    read_labelled_cloud,
    region_values,
)

__all__ += [
    "KITTI_CLASSES",
    "BlockConfig",
    "BoxLabels",
    "PointSegmentationDataModule",
    "PointSegmentationDataset",
    "RegionSplit",
    "SceneBoxes",
    "chunk_indices",
    "confusion_iou",
    "fit_ground_plane",
    "fit_height_band",
    "grid_blocks",
    "height_above",
    "label_points_in_boxes",
    "points_in_boxes",
    "read_info_pickle",
    "read_labelled_cloud",
    "read_scene_boxes",
    "region_values",
]
