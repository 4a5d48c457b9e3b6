"""Keypoint data: samples ``{"image": Image, "keypoints": (K, 3) x, y, v, "meta"}``, one source
format per file (:mod:`.csvfile` plain CSV, :mod:`.coco` COCO-keypoints JSON, :mod:`.chessboard`
OpenCV chessboard corners of real photos), on the shared base in :mod:`.base`."""

from visrep.data.keypoints.base import (
    KeypointAugment,
    KeypointDataModule,
    KeypointDataset,
    KeypointRecord,
    hide_outside,
    resize_keypoints,
    to_source,
)
from visrep.data.keypoints.chessboard import (
    ChessboardDataModule,
    chessboard_corners,
    chessboard_records,
    write_chessboard_csv,
)
from visrep.data.keypoints.coco import read_coco_keypoints
from visrep.data.keypoints.csvfile import read_keypoint_csv, write_keypoint_csv

__all__ = [
    "ChessboardDataModule",
    "KeypointAugment",
    "KeypointDataModule",
    "KeypointDataset",
    "KeypointRecord",
    "chessboard_corners",
    "chessboard_records",
    "hide_outside",
    "read_coco_keypoints",
    "read_keypoint_csv",
    "resize_keypoints",
    "to_source",
    "write_chessboard_csv",
    "write_keypoint_csv",
]
