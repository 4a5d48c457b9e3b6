"""Learned correspondences (Yi et al. 2018): two-view geometry and the context-normalisation
network that weighs putative matches."""

from visrep.models.correspondence.geometry import (
    MIN_MATCHES,
    apply_homography,
    corner_error,
    decompose_essential,
    dlt_matrix,
    eight_point_matrix,
    essential_from_pose,
    hartley_normalization,
    recover_pose,
    rotation_error_deg,
    sampson_distance,
    skew,
    smallest_eigenvector,
    symmetric_epipolar_distance,
    transfer_error,
    translation_error_deg,
    weighted_dlt,
    weighted_eight_point,
)

__all__ = [
    "MIN_MATCHES",
    "apply_homography",
    "corner_error",
    "decompose_essential",
    "dlt_matrix",
    "eight_point_matrix",
    "essential_from_pose",
    "hartley_normalization",
    "recover_pose",
    "rotation_error_deg",
    "sampson_distance",
    "skew",
    "smallest_eigenvector",
    "symmetric_epipolar_distance",
    "transfer_error",
    "translation_error_deg",
    "weighted_dlt",
    "weighted_eight_point",
]
