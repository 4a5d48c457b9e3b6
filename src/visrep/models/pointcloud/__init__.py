"""Networks on point sets: PointNet (Qi et al. 2017) and order-dependent baselines (seed 001)."""

from visrep.models.pointcloud.nets import (
    POINT_NETS,
    PointCloudNet,
    PointNetFactory,
    lexsort_points,
    pointnet,
    pointnet_seg,
    sorted_mlp,
)
from visrep.models.pointcloud.pointnet import (
    PointNet,
    PointNetFeatures,
    SharedMLP,
    TNet,
    critical_point_indices,
    orthogonality_loss,
)
from visrep.models.pointcloud.points import PointBatch, as_point_batch

__all__ = [
    "POINT_NETS",
    "PointBatch",
    "PointCloudNet",
    "PointNet",
    "PointNetFactory",
    "PointNetFeatures",
    "SharedMLP",
    "TNet",
    "as_point_batch",
    "critical_point_indices",
    "lexsort_points",
    "orthogonality_loss",
    "pointnet",
    "pointnet_seg",
    "sorted_mlp",
]
