"""Writers and conversion (visrep.data.detection.writers / convert): VOC -> COCO -> YOLO -> VOC
keeps boxes, names and splits; COCO masks read back exactly and load in pycocotools; a failed
conversion leaves nothing behind; on BCCD when present."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.data.detection.test_labelme import SHAPES
from tests.data.detection.test_voc import write_voc
from tests.data.segmentation.test_labelme import write_labelme
from visrep.data.detection.base import Annotation
from visrep.data.detection.convert import (
    coco_layout,
    convert_detection,
    read_detection_source,
)
from visrep.data.detection.writers import coco_json, voc_xml, yolo_lines
from visrep.errors import ConfigError, DataError

# id -> (W, H, [(name, xmin, ymin, xmax, ymax, difficult)]): VOC 1-based inclusive corners
IMAGES = {
    "a": (20, 10, [("dog", 1, 1, 20, 10, 0), ("cat", 3, 2, 7, 5, 1)]),  # whole image; difficult
    "b": (16, 12, [("cat", 5, 5, 5, 5, 0), ("dog", 2.5, 3.25, 9.75, 11.5, 0)]),  # 1 px; fractions
    "c": (12, 8, []),
    "d": (10, 10, [("bird", 2, 3, 9, 4, 0)]),
    "e": (13, 7, [("bird", 1, 1, 1, 7, 0)]),
}
SPLITS = {"train": ["a", "b", "e"], "val": ["c"], "test": ["d"]}


def _flat(splits: dict[str, list[Annotation]]) -> dict[str, tuple]:
    """stem -> (split, size, boxes, labels, difficult)."""
    return {
        Path(str(a.image)).stem: (split, a.size, a.boxes, a.labels.tolist(), a.difficult.tolist())
        for split, anns in splits.items()
        for a in anns
    }


def test_voc_coco_yolo_voc_round_trip(tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc", IMAGES, SPLITS)
    first, names = read_detection_source(str(voc), "voc")
    convert_detection(str(voc), "voc", str(tmp_path / "coco"), "coco")
    mid, mid_names = read_detection_source(str(tmp_path / "coco"), "coco")
    with pytest.warns(
        UserWarning, match=r"--target .*yolo: YOLO txt has no difficult flag; 1 difficult"
    ):
        convert_detection(str(tmp_path / "coco"), "coco", str(tmp_path / "yolo"), "yolo")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clipping warning from round-off at the borders
        convert_detection(str(tmp_path / "yolo"), "yolo", str(tmp_path / "back"), "voc")
        back, back_names = read_detection_source(str(tmp_path / "back"), "voc")
    assert names == mid_names == back_names == ["bird", "cat", "dog"]
    want, got_mid, got = _flat(first), _flat(mid), _flat(back)
    assert sorted(want) == sorted(got) == list("abcde")
    for stem, (split, size, boxes, labels, difficult) in want.items():
        assert got_mid[stem][:2] == got[stem][:2] == (split, size)
        assert got_mid[stem][3] == got[stem][3] == labels
        assert got_mid[stem][4] == difficult  # COCO keeps the flag (iscrowd) ...
        assert not any(got[stem][4])  # ... YOLO cannot
        assert np.abs(got_mid[stem][2] - boxes).max(initial=0) <= 1e-4
        assert np.abs(got[stem][2] - boxes).max(initial=0) <= 1e-4
    # VOC's integers come back as integers
    xml = (tmp_path / "back" / "Annotations" / "d.xml").read_text()
    assert "<xmin>2</xmin><ymin>3</ymin><xmax>9</xmax><ymax>4</ymax>" in xml
    assert (tmp_path / "back" / "ImageSets" / "Main" / "val.txt").read_text() == "c\n"


def test_formats_written_exactly() -> None:
    a = Annotation(
        "x.jpg", (10, 20), np.array([[0, 2, 5.5, 7], [4, 0, 20, 10]], np.float32),
        np.array([1, 0]), np.array([True, False]), "x.xml",
    )  # fmt: skip
    xml = voc_xml(a, "x.jpg", ["cat", "dog"])
    assert "<width>20</width><height>10</height>" in xml
    assert "<name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>3</ymin>" in xml
    assert "<xmax>5.5</xmax><ymax>7</ymax>" in xml
    assert yolo_lines(a).splitlines() == [
        "1 0.13750000 0.45000000 0.27500000 0.50000000",
        "0 0.60000000 0.50000000 0.80000000 1.00000000",
    ]
    data = coco_json([a], ["x.jpg"], ["cat", "dog"])
    assert data["categories"] == [
        {"id": 1, "name": "cat", "supercategory": ""}, {"id": 2, "name": "dog", "supercategory": ""},
    ]  # fmt: skip
    ann = data["annotations"][0]
    assert ann["bbox"] == [0, 2, 5.5, 5] and ann["area"] == 27.5 and ann["iscrowd"] == 1
    assert ann["category_id"] == 2 and "segmentation" not in ann


def test_labelme_to_coco_keeps_masks(tmp_path: Path) -> None:
    write_labelme(tmp_path / "lm", "a", SHAPES)
    write_labelme(tmp_path / "lm", "b", SHAPES[:2], embed=True)
    src, _ = read_detection_source(str(tmp_path / "lm"), "labelme", masks=True)
    convert_detection(str(tmp_path / "lm"), "labelme", str(tmp_path / "coco"), "coco", masks=True)
    assert (tmp_path / "coco" / "train" / "b.png").is_file()  # the embedded image, as PNG
    out, names = read_detection_source(str(tmp_path / "coco"), "coco", masks=True)
    assert names == ["cat", "dog", "owl"]
    from visrep.data.detection.base import DetectionDataset

    a, b = DetectionDataset(src["train"]), DetectionDataset(out["train"])
    for i in range(2):
        assert np.array_equal(a[i]["masks"].numpy(), b[i]["masks"].numpy())
        assert np.abs((a[i]["boxes"] - b[i]["boxes"]).numpy()).max() <= 1e-5
    data = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    kinds = [type(x["segmentation"]).__name__ for x in data["annotations"]]
    # polygons stay polygons; a rectangle, a circle are written as run lengths
    assert kinds[:5] == ["dict", "list", "dict", "list", "list"]
    masks = b[0]["masks"].numpy()
    assert [x["area"] for x in data["annotations"][:5]] == masks.sum((1, 2)).tolist()


def test_written_coco_loads_in_pycocotools(tmp_path: Path) -> None:
    coco_api = pytest.importorskip("pycocotools.coco")
    mask_utils = pytest.importorskip("pycocotools.mask")
    write_labelme(tmp_path / "lm", "a", SHAPES)
    convert_detection(str(tmp_path / "lm"), "labelme", str(tmp_path / "coco"), "coco", masks=True)
    path = tmp_path / "coco" / "annotations" / "instances_train.json"
    coco = coco_api.COCO(str(path))
    assert sorted(coco.getCatIds()) == [1, 2, 3] and len(coco.getAnnIds()) == 5
    out, _ = read_detection_source(str(tmp_path / "coco"), "coco", masks=True)
    from visrep.data.detection.base import draw_object_masks

    ours = draw_object_masks(out["train"][0].size, out["train"][0].masks)
    for k, ann in enumerate(coco.loadAnns(coco.getAnnIds())):
        if isinstance(ann["segmentation"], dict):  # run lengths decode exactly
            assert np.array_equal(coco.annToMask(ann), ours[k])
            rle = mask_utils.frPyObjects(ann["segmentation"], *ann["segmentation"]["size"])
            assert mask_utils.area(rle) == ann["area"]


def test_coco_layouts(tmp_path: Path) -> None:
    (tmp_path / "c" / "annotations").mkdir(parents=True)
    (tmp_path / "c" / "train2017").mkdir()
    for name in ("instances_train2017.json", "instances_val2017.json", "captions_x.json"):
        (tmp_path / "c" / "annotations" / name).write_text("{}")
    root, files = coco_layout(tmp_path / "c")
    assert root == tmp_path / "c" and sorted(files) == ["train", "val"]
    assert files["train"].images == "train2017" and files["val"].images == "."
    root, files = coco_layout(tmp_path / "c" / "annotations" / "instances_val2017.json")
    assert files["train"].annotations == "instances_val2017.json"
    with pytest.raises(DataError, match=r"expected a \.json file, annotations/instances_train"):
        coco_layout(tmp_path)


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc", IMAGES, SPLITS)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match=r"--target .*full' exists and is not an empty folder"):
        convert_detection(str(voc), "voc", str(tmp_path / "full"), "coco")
    with pytest.raises(ConfigError, match=r"--masks: a voc source has no instance masks"):
        convert_detection(str(voc), "voc", str(tmp_path / "t"), "coco", masks=True)
    with pytest.raises(ConfigError, match=r"--masks: a yolo target stores no instance masks"):
        convert_detection(str(voc), "voc", str(tmp_path / "t"), "yolo", masks=True)
    # two images with one stem: refused while writing, after the temporary tree was started
    write_labelme(tmp_path / "lm" / "train", "a", SHAPES[:1])
    write_labelme(tmp_path / "lm" / "val", "a", SHAPES[:1])
    with pytest.raises(DataError, match=r"share the name 'a'; expected unique file stems"):
        convert_detection(str(tmp_path / "lm"), "labelme", str(tmp_path / "t"), "voc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "lm", "voc"]
    (tmp_path / "empty").mkdir()  # an empty target folder is fine
    with pytest.warns(UserWarning, match=r"--target .*empty: YOLO"):
        convert_detection(str(voc), "voc", str(tmp_path / "empty"), "yolo", images="symlink")
    assert (tmp_path / "empty" / "images" / "train" / "a.png").is_symlink()


BCCD = SHARED_DATA / "bccd" / "BCCD"


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd is absent")
def test_bccd_round_trip(tmp_path: Path) -> None:
    """All 364 BCCD images, 4,888 boxes: VOC -> COCO -> YOLO -> VOC within 1e-4 px."""
    first, names = read_detection_source(str(BCCD), "voc")
    steps = [(str(BCCD), "voc", "coco"), ("coco", "coco", "yolo"), ("yolo", "yolo", "voc")]
    for source, source_format, target in steps:
        src = source if source_format == "voc" else str(tmp_path / source)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            convert_detection(src, source_format, str(tmp_path / target), target, images="symlink")
    back, back_names = read_detection_source(str(tmp_path / "voc"), "voc")
    assert back_names == names == ["Platelets", "RBC", "WBC"]
    want, got = _flat(first), _flat(back)
    assert len(want) == len(got) == 364
    assert sum(len(v[3]) for v in got.values()) == 4888
    worst = 0.0
    for stem, (split, size, boxes, labels, _) in want.items():
        assert got[stem][:2] == (split, size) and got[stem][3] == labels
        worst = max(worst, float(np.abs(got[stem][2] - boxes).max(initial=0)))
    assert worst <= 1e-4
