"""Object-detection data: samples ``{"image": Image, "boxes": BoundingBoxes (XYXY pixels),
"labels": int64, "difficult": bool}``, one source format per file (:mod:`.voc` PASCAL VOC XML,
:mod:`.yolo` YOLO txt), on the shared base in :mod:`.base`."""

from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataModule,
    DetectionDataset,
    check_boxes,
    detection_collate,
    object_counts,
)
from visrep.data.detection.voc import VOCDetectionDataModule, read_voc_xml, voc_class_names
from visrep.data.detection.yolo import (
    YOLODataModule,
    read_yolo_labels,
    yolo_class_names,
    yolo_to_xyxy,
)

__all__ = [
    "Annotation",
    "DetAugment",
    "DetectionDataModule",
    "DetectionDataset",
    "VOCDetectionDataModule",
    "YOLODataModule",
    "check_boxes",
    "detection_collate",
    "object_counts",
    "read_voc_xml",
    "read_yolo_labels",
    "voc_class_names",
    "yolo_class_names",
    "yolo_to_xyxy",
]
