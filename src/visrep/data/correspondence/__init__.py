"""Learned-correspondence data (Yi et al. 2018): putative SIFT matches of image pairs with
known geometry: pairs made from real photographs with known random homographies, and the real
OpenCV sample pair graf1 / graf3; and real calibrated stereo pairs with a known pose
(essential matrices): Middlebury's Motorcycle (scikit-image) and OpenCV's chessboard rig.

Sample keys (``visrep.data.correspondence.pairs``): ``matches`` ``(N, 4)``, ``inliers``
``(N,)``, ``homography`` / ``essential`` ``(3, 3)``, ``intrinsics`` ``(2, 3, 3)``, ``meta``;
essential pairs also ``pose`` ``(3, 4)`` (the true ``[R | t]``); a batch adds ``match_mask``
``(B, N)``.
"""

from visrep.data.correspondence.datamodule import HomographyPairsDataModule
from visrep.data.correspondence.homography import (
    PairConfig,
    homography_from_corners,
    photometric,
    render_pair,
    sample_homography,
)
from visrep.data.correspondence.opencv_samples import (
    DEFAULT_OPENCV_SAMPLES,
    graf_pair,
    read_opencv_matrix,
    resize_homography,
)
from visrep.data.correspondence.pairs import (
    ESSENTIAL,
    HOMOGRAPHY,
    INLIERS,
    INTRINSICS,
    MATCH_MASK,
    MATCHES,
    POSE,
    MatchPair,
    MatchPairDataset,
    collate_matches,
    default_cache_dir,
    homography_pair,
    intrinsics_of_size,
    label_inliers,
)
from visrep.data.correspondence.sift import SiftConfig, sift_matches
from visrep.data.correspondence.sources import (
    BUILTIN_PHOTOS,
    Photo,
    PhotoSource,
    load_photo,
    scan_source,
    split_photos,
)
from visrep.data.correspondence.stereo import (
    MOTORCYCLE,
    chessboard_stereo_pairs,
    motorcycle_pair,
    stereo_calibration,
)

__all__ = [
    "BUILTIN_PHOTOS",
    "DEFAULT_OPENCV_SAMPLES",
    "ESSENTIAL",
    "HOMOGRAPHY",
    "INLIERS",
    "INTRINSICS",
    "MATCHES",
    "MATCH_MASK",
    "MOTORCYCLE",
    "POSE",
    "HomographyPairsDataModule",
    "MatchPair",
    "MatchPairDataset",
    "PairConfig",
    "Photo",
    "PhotoSource",
    "SiftConfig",
    "chessboard_stereo_pairs",
    "collate_matches",
    "default_cache_dir",
    "graf_pair",
    "homography_from_corners",
    "homography_pair",
    "intrinsics_of_size",
    "label_inliers",
    "load_photo",
    "motorcycle_pair",
    "photometric",
    "read_opencv_matrix",
    "render_pair",
    "resize_homography",
    "sample_homography",
    "scan_source",
    "sift_matches",
    "split_photos",
    "stereo_calibration",
]
