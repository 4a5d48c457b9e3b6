"""Object-detection data: samples ``{"image": Image, "boxes": BoundingBoxes (XYXY pixels),
"labels": int64, "difficult": bool}`` (and ``"masks"`` for instance data), one source format per
file (:mod:`.voc` PASCAL VOC XML, :mod:`.yolo` YOLO txt, :mod:`.coco` COCO JSON, :mod:`.labelme`
labelme JSON, :mod:`.masks` instance / semantic mask images such as DAVIS), on the shared base in
:mod:`.base`; :mod:`.writers` and :mod:`.convert` write VOC, COCO and YOLO trees."""

from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataModule,
    DetectionDataset,
    check_boxes,
    detection_collate,
    object_counts,
)
from visrep.data.detection.coco import CocoDetectionDataModule, read_coco_detection
from visrep.data.detection.convert import convert_detection, read_detection_source
from visrep.data.detection.labelme import LabelmeDetectionDataModule
from visrep.data.detection.masks import MaskDetectionDataModule
from visrep.data.detection.voc import VOCDetectionDataModule, read_voc_xml, voc_class_names
from visrep.data.detection.writers import write_coco, write_voc, write_yolo
from visrep.data.detection.yolo import (
    YOLODataModule,
    read_yolo_labels,
    yolo_class_names,
    yolo_to_xyxy,
)

__all__ = [
    "Annotation",
    "CocoDetectionDataModule",
    "DetAugment",
    "DetectionDataModule",
    "DetectionDataset",
    "LabelmeDetectionDataModule",
    "MaskDetectionDataModule",
    "VOCDetectionDataModule",
    "YOLODataModule",
    "check_boxes",
    "convert_detection",
    "detection_collate",
    "object_counts",
    "read_coco_detection",
    "read_detection_source",
    "read_voc_xml",
    "read_yolo_labels",
    "voc_class_names",
    "write_coco",
    "write_voc",
    "write_yolo",
    "yolo_class_names",
    "yolo_to_xyxy",
]
