"""COCO instance annotations rasterised to semantic label maps.

An annotation file (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", the
``instances_*.json`` format) lists ``images`` (``id``, ``file_name``, ``height``, ``width``),
``categories`` (``id``, ``name``) and ``annotations`` (``image_id``, ``category_id``,
``iscrowd``, ``segmentation``: polygons ``[[x1, y1, x2, y2, ...], ...]``, or a run-length mask
``{"counts": [...] or "compressed string", "size": [H, W]}``).

The label map of an image (see :mod:`.polygons` for the pixel rule):

* classes: class 0 is background (pixels no annotation covers); the categories, sorted by id,
  take the class ids 1, 2, ... with their names, except a category named ``background``,
  ``_background_`` or ``__background__`` (labelme's ``labelme2coco`` writes one, with id 0),
  which is class 0 and gives it its name;
* crowd regions (``iscrowd: 1``) are the ignore index, except where an individually annotated
  (non-crowd) object covers them: crowd regions are drawn first, then the other annotations in
  file order, each over the earlier ones (labelme's rule, so a COCO file written from labelme
  draws as labelme does).

A layout from labelme's ``labelme2coco.py``: ``root/annotations.json`` with
``file_name: JPEGImages/x.jpg`` (the defaults). COCO 2017::

    data:
      class_path: visrep.data.CocoSegmentationDataModule
      init_args:
        root: data/coco
        train: {annotations: annotations/instances_train2017.json, images: train2017}
        val: {annotations: annotations/instances_val2017.json, images: val2017}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visrep.data.base import LoaderConfig, SplitConfig, Splits
from visrep.data.segmentation.base import (
    ClassSet,
    Color,
    SegAugment,
    SegmentationDataModule,
    SegmentationDataset,
    resolve_classes,
)
from visrep.data.segmentation.polygons import Region, RegionLabel, polygon_points, rle_counts
from visrep.errors import DataError

#: Category / label names that mean "background" (class 0) rather than a class of their own.
BACKGROUND_NAMES = ("background", "_background_", "__background__")


@dataclass(frozen=True)
class CocoFiles:
    """One split of a COCO source (``--data.train.annotations ... --data.train.images ...``).

    Attributes:
        annotations: the annotation JSON, relative to the module's ``root`` (or absolute).
        images: the folder the images' ``file_name`` are relative to (relative to ``root``).
    """

    annotations: str = "annotations.json"
    images: str = "."


def load_coco_json(path: Path) -> dict[str, Any]:
    """A COCO annotation file with its ``images``, ``annotations`` and ``categories`` lists."""
    if not path.is_file():
        raise DataError(f"COCO annotation file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"COCO annotation file {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"COCO annotation file {str(path)!r} holds a {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"COCO annotation file {str(path)!r} has no {key!r} list")
    return data


def coco_classes(categories: list[Any], path: Path) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names (background first) and ``category_id -> class id`` of a COCO file's
    categories (sorted by id, a background-named category as class 0)."""
    named: dict[int, str] = {}
    for c in categories:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise DataError(f"{str(path)!r}: category {c!r} needs an int 'id' and a 'name'")
        if c["id"] in named:
            raise DataError(f"{str(path)!r}: category id {c['id']} appears twice")
        named[c["id"]] = str(c["name"])
    if not named:
        raise DataError(f"{str(path)!r} lists no categories")
    names, ids = ["background"], {}
    for cid in sorted(named):
        if named[cid].lower() in BACKGROUND_NAMES:
            names[0] = named[cid]
            ids[cid] = 0
        else:
            ids[cid] = len(names)
            names.append(named[cid])
    return tuple(names), ids


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def coco_regions(ann: dict[str, Any], value: int, hw: tuple[int, int], where: str) -> list[Region]:
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        size = seg.get("size")
        if not isinstance(size, list | tuple) or [*size] != [*hw]:
            raise DataError(
                f"{where}: RLE size {size} differs from its image's [height, width] {[*hw]}"
            )
        if "counts" not in seg:
            raise DataError(f"{where}: RLE segmentation has no 'counts'")
        try:
            counts = rle_counts(seg["counts"], hw)
        except DataError as e:
            raise DataError(f"{where}: {e}") from e
        return [Region(value, "rle", counts=counts)]
    if isinstance(seg, list) and seg:
        return [Region(value, "polygon", polygon_points(p, where)) for p in seg]
    raise DataError(
        f"{where}: segmentation {str(seg)[:60]} is neither polygons [[x1, y1, ...], ...] nor "
        "an RLE {'counts': ..., 'size': [H, W]}"
    )


def coco_image_records(
    data: dict[str, Any], path: Path, image_dir: Path
) -> dict[int | str, tuple[str, tuple[int, int]]]:
    """``image id -> (file, (H, W))`` of a COCO file's ``images``, checked (ids new ints or
    strings, positive height and width, the file present): shared by the segmentation and
    detection readers.

    Raises:
        DataError: naming the file and the image record.
    """
    images: dict[int | str, tuple[str, tuple[int, int]]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(
                f"{str(path)!r}: image record {str(im)[:80]} needs 'id' and 'file_name'"
            )
        if not isinstance(im["id"], int | str):
            raise DataError(f"{str(path)!r}: image id {im['id']!r} is not an int or a string")
        if im["id"] in images:
            raise DataError(f"{str(path)!r}: image id {im['id']} appears twice")
        if not (_positive_int(im.get("height")) and _positive_int(im.get("width"))):
            raise DataError(
                f"{str(path)!r}: image {im['id']} ({im['file_name']!r}) has height "
                f"{im.get('height')!r} and width {im.get('width')!r}; expected positive ints"
            )
        file = image_dir / str(im["file_name"])
        if not file.is_file():
            raise DataError(f"{str(path)!r}: image {im['id']} file {str(file)!r} does not exist")
        images[im["id"]] = (str(file), (im["height"], im["width"]))
    return images


def read_coco(
    path: Path,
    image_dir: Path,
    category_ids: dict[int, int],
    ignore_index: int,
    data: dict[str, Any] | None = None,
) -> tuple[list[str], list[RegionLabel]]:
    """The images of a COCO annotation file and their label maps (drawn on demand).

    Args:
        path: the annotation JSON.
        image_dir: the folder the ``file_name`` are relative to.
        category_ids: ``category_id -> class id`` (:func:`coco_classes`).
        ignore_index: the value of crowd regions.
        data: the file's parsed content, when already read (:func:`load_coco_json`).

    Returns:
        Image paths and :class:`~visrep.data.segmentation.polygons.RegionLabel` s, in the
        order of the file's ``images``.

    Raises:
        DataError: a missing image, an image record without a positive height/width, an
            annotation of an unknown image or category, a bad polygon or RLE (named by file
            and annotation id).
    """
    data = load_coco_json(path) if data is None else data
    images = {
        i: {"file": file, "hw": hw}
        for i, (file, hw) in coco_image_records(data, path, image_dir).items()
    }
    crowd: dict[int, list[Region]] = {i: [] for i in images}
    objects: dict[int, list[Region]] = {i: [] for i in images}
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise DataError(f"{str(path)!r}: annotation {str(ann)[:60]} is not an object")
        where = f"{str(path)!r} annotation {ann.get('id')!r}"
        for key in ("image_id", "category_id"):
            if not isinstance(ann.get(key), int | str):
                raise DataError(f"{where}: {key} {ann.get(key)!r} is not an int or a string")
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in its images")
        if ann.get("category_id") not in category_ids:
            raise DataError(
                f"{where}: category_id {ann.get('category_id')!r} is not in its categories "
                f"{sorted(category_ids)}"
            )
        im = images[ann["image_id"]]
        if ann.get("iscrowd", 0):
            crowd[ann["image_id"]] += coco_regions(ann, ignore_index, im["hw"], where)
        else:
            value = category_ids[ann["category_id"]]
            objects[ann["image_id"]] += coco_regions(ann, value, im["hw"], where)
    files, labels = [], []
    for i, im in images.items():
        source = f"{path} (image {i}: {Path(im['file']).name})"
        files.append(im["file"])
        labels.append(RegionLabel(source, *im["hw"], tuple(crowd[i] + objects[i])))
    return files, labels


class CocoSegmentationDataModule(SegmentationDataModule):
    """Semantic segmentation from COCO instance annotations (polygons, RLE, crowd = ignore).

    Splits: ``train`` always; ``val`` and ``test`` when given (their categories must be the
    training file's), otherwise held out of ``train`` with ``split.val_fraction`` /
    ``split.test_fraction``. Label maps are drawn when an image is read (or once, with
    ``cache``); the annotation JSON of the training split is read when the module is built
    (its categories are the classes).

    Args:
        root: the folder the split files are relative to.
        train, val, test: each split's annotation JSON and image folder (:class:`CocoFiles`).
        class_colors: one ``(R, G, B)`` per class, background first (default: VOC's map).
        ignore_index: the label of crowd regions (and of crop padding).
        crop_size: training crop ``(H, W)`` or int; COCO's images vary in size, so evaluate
            with ``--data.loader.eval_batch_size 1``.
        augment, cache, loader, split: as in
            :class:`~visrep.data.segmentation.base.SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str,
        train: CocoFiles = CocoFiles(),
        val: CocoFiles | None = None,
        test: CocoFiles | None = None,
        class_colors: list[Color] | None = None,
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = 320,
        augment: SegAugment = SegAugment(),
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        self.files: dict[str, CocoFiles | None] = {"train": train, "val": val, "test": test}
        self._json = {"train": load_coco_json(self.root / train.annotations)}
        names, self.category_ids = coco_classes(
            self._json["train"]["categories"], self.root / train.annotations
        )
        classes: ClassSet = resolve_classes(list(names), None, class_colors)
        super().__init__(classes, ignore_index, crop_size, augment, cache, loader, split)

    def _split(self, name: str, files: CocoFiles) -> SegmentationDataset:
        path = self.root / files.annotations
        data = self._json.pop(name, None) or load_coco_json(path)
        if name != "train":
            names, ids = coco_classes(data["categories"], path)
            if ids != self.category_ids or names != self.classes.names:
                raise DataError(
                    f"{str(path)!r}: categories {list(names)} differ from the training file's "
                    f"{list(self.classes.names)}"
                )
        images, labels = read_coco(
            path, self.root / files.images, self.category_ids, self.ignore_index, data
        )
        if not images:
            raise DataError(f"COCO annotation file {str(path)!r} lists no images")
        return self.pairs(images, labels, channels=3)

    def load(self) -> Splits:
        ds = {k: self._split(k, f) for k, f in self.files.items() if f is not None}
        return Splits(ds["train"], None, list(self.classes.names), ds.get("test"), ds.get("val"))
