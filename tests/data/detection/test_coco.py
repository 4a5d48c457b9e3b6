"""CocoDetectionDataModule on tiny COCO files written here, and on labelme's example COCO file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from tests.data.segmentation.test_coco import ref_rle, ref_rle_string
from visrep.data.base import SplitConfig
from visrep.data.detection.base import object_counts
from visrep.data.detection.coco import CocoDetectionDataModule
from visrep.data.segmentation import CocoFiles
from visrep.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*were clipped")
H, W = 12, 16
CATEGORIES = [
    {"id": 7, "name": "dog"},
    {"id": 0, "name": "_background_"},
    {"id": 2, "name": "cat"},
]


def _masks() -> dict[str, np.ndarray]:
    crowd = np.zeros((H, W), bool)
    crowd[6:, 8:] = True
    cat = np.zeros((H, W), bool)
    cat[2:5, 9:14] = True
    return {"crowd": crowd, "cat": cat}


def _tree(root: Path, n: int = 3, edit=None) -> Path:
    """Image 0: a dog polygon (two parts), a cat RLE (list counts), a crowd of cats (compressed
    RLE string) and a dog box past the right edge; image 1: nothing; image 2 ...: a dog."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    m = _masks()
    images, anns = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
            root / "img" / f"{i}.png"
        )
        images.append({"id": 10 + i, "file_name": f"{i}.png", "height": H, "width": W})
    anns += [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 7, 9.5], "iscrowd": 0,
         "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4], [6, 8, 7, 8, 7, 9, 6, 9]]},
        {"id": 2, "image_id": 10, "category_id": 2, "bbox": [9, 2, 5, 3],
         "segmentation": {"counts": ref_rle(m["cat"]), "size": [H, W]}},
        {"id": 3, "image_id": 10, "category_id": 2, "bbox": [8, 6, 8, 6], "iscrowd": 1,
         "segmentation": {"counts": ref_rle_string(ref_rle(m["crowd"])), "size": [H, W]}},
        {"id": 4, "image_id": 10, "category_id": 7, "bbox": [12.5, 0, 6, 2],
         "segmentation": [[12.5, 0, 15, 0, 15, 1, 12.5, 1]]},
    ]  # fmt: skip
    anns += [
        {"id": 10 + i, "image_id": 10 + i, "category_id": 7, "bbox": [0, 0, 3, 3],
         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}
        for i in range(2, n)
    ]  # fmt: skip
    data = {"images": images, "annotations": anns, "categories": CATEGORIES}
    if edit is not None:
        edit(data)
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def _module(root: Path, **kw) -> CocoDetectionDataModule:
    return CocoDetectionDataModule(str(root), train=CocoFiles("annotations.json", "img"), **kw)


def test_boxes_classes_crowds_and_empty_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "coco")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = _module(root).load()
    msgs = [str(x.message) for x in w if "clipped" in str(x.message)]
    assert len(msgs) == 1 and "1 boxes in 1 files" in msgs[0]
    # categories sorted by id (2 cat, 7 dog), the background category is no class
    assert s.class_names == ["cat", "dog"] and len(s.train) == 3
    a = s.train[0]
    assert a["boxes"].tolist() == [[1, 1, 8, 10.5], [9, 2, 14, 5], [8, 6, 16, 12], [12.5, 0, 16, 2]]
    assert a["labels"].tolist() == [1, 0, 0, 1]
    assert a["difficult"].tolist() == [False, False, True, False]  # the crowd
    assert "masks" not in a
    assert s.train[1]["boxes"].shape == (0, 4) and s.train[1]["labels"].shape == (0,)
    no_crowd = _module(root, keep_crowd=False).load().train[0]
    assert no_crowd["labels"].tolist() == [1, 0, 1] and not no_crowd["difficult"].any()


def test_masks_polygons_rle_and_compressed_rle(tmp_path: Path) -> None:
    s = _module(_tree(tmp_path / "coco"), masks=True).load()
    masks = s.train[0]["masks"].numpy()
    assert masks.shape == (4, H, W) and masks.dtype == np.uint8
    dog = np.zeros((H, W), np.uint8)
    dog[1:5, 1:5] = 1  # PIL's rule: corners 1..4 cover pixels 1..4
    dog[8:10, 6:8] = 1
    assert np.array_equal(masks[0], dog)
    assert np.array_equal(masks[1], _masks()["cat"])
    assert np.array_equal(masks[2], _masks()["crowd"])
    assert s.train[1]["masks"].shape == (0, H, W)


def test_compressed_rle_parity_with_pycocotools(tmp_path: Path) -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    blob = rng.random((H, W)) > 0.6
    rle = mask_utils.encode(np.asfortranarray(blob.astype(np.uint8)))

    def edit(data: dict) -> None:
        data["annotations"][2]["segmentation"] = {"counts": rle["counts"].decode(), "size": [H, W]}

    s = _module(_tree(tmp_path / "coco", edit=edit), masks=True).load()
    assert np.array_equal(s.train[0]["masks"][2].numpy(), mask_utils.decode(rle))


def test_splits_from_files_and_seeded(tmp_path: Path) -> None:
    root = _tree(tmp_path / "coco", n=8)
    (root / "val.json").write_text((root / "annotations.json").read_text())
    files = CocoFiles("annotations.json", "img")
    dm = CocoDetectionDataModule(str(root), train=files, val=CocoFiles("val.json", "img"))
    s = dm.load()
    assert len(s.val) == 8 and s.test is None
    split = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=3)
    a, b = (CocoDetectionDataModule(str(root), train=files, split=split) for _ in range(2))
    a.setup()
    b.setup()
    assert a.val_set.indices == b.val_set.indices and a.test_set.indices == b.test_set.indices
    every = sorted([*a.train_set.indices, *a.val_set.indices, *a.test_set.indices])
    assert every == list(range(8)) and len(a.test_set) == 2 and len(a.val_set) == 2
    assert a.spec().keys == ("image", "boxes", "labels", "difficult")
    assert (
        object_counts(a.train_set, 2).sum()
        + object_counts(a.val_set, 2).sum()
        + (object_counts(a.test_set, 2).sum())
        == 4 + 6
    )


def test_spec_names_masks(tmp_path: Path) -> None:
    dm = _module(_tree(tmp_path / "coco", n=6), masks=True, split=SplitConfig(0.2, 0.2))
    dm.setup()
    assert dm.spec().keys == ("image", "boxes", "labels", "difficult", "masks")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch["masks"], list)


def test_val_categories_must_match(tmp_path: Path) -> None:
    root = _tree(tmp_path / "coco")
    data = json.loads((root / "annotations.json").read_text())
    data["categories"][0]["name"] = "wolf"
    (root / "val.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"val\.json'?: categories \['cat', 'wolf'\] differ"):
        _module(root, val=CocoFiles("val.json", "img")).load()


def _set(path: str, value):
    def edit(data: dict) -> None:
        *keys, last = path.split(".")
        node = data
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        node[int(last) if last.isdigit() else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("annotations.0.bbox", [1, 1, 0, 3]), r"annotation 1: bbox .* expected .*w > 0"),
        (_set("annotations.0.bbox", [1, 1, 3]), r"annotation 1: bbox \[1, 1, 3\] is not \[x, y"),
        (_set("annotations.1.bbox", None), r"annotation 2: bbox None is not"),
        (_set("annotations.0.bbox", [30, 1, 3, 3]), r"annotation 1 has box .*entirely outside"),
        (_set("annotations.0.category_id", 5), r"annotation 1: category_id 5 is not one of"),
        (_set("annotations.0.category_id", 0), r"annotation 1: category_id 0 is not one of"),
        (_set("annotations.0.image_id", 99), r"annotation 1: image_id 99 is not in its images"),
        (_set("annotations.1.segmentation.size", [H, W + 1]), r"annotation 2: RLE size"),
        (_set("annotations.0.segmentation", [[1, 2, 3]]), r"annotation 1: polygon has 3 coord"),
        (_set("images.0.height", 0), r"image 10 .*expected positive ints"),
        (_set("images.0.file_name", "x.png"), r"image 10 file .*x\.png' does not exist"),
        (_set("categories", [{"id": 0, "name": "background"}]), r"lists no object categories"),
    ],
)
def test_bad_input(tmp_path: Path, edit, match: str) -> None:
    root = _tree(tmp_path / "coco", edit=edit)
    with pytest.raises(DataError, match=match) as e:
        _module(root, masks=True).load()
    assert "\n" not in str(e.value) and "annotations.json" in str(e.value)


def test_unparsable_json(tmp_path: Path) -> None:
    root = _tree(tmp_path / "coco")
    (root / "annotations.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"annotations\.json'? is not valid JSON"):
        _module(root)


def test_mask_size_must_match_the_image(tmp_path: Path) -> None:
    root = _tree(tmp_path / "coco")
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(root / "img" / "0.png")
    s = _module(root, masks=True).load()
    with pytest.raises(DataError, match=r"0\.png' is 16x13 \(WxH\) but .* gives 16x12"):
        s.train[0]


# --- labelme's example COCO file ----------------------------------------------------------------
COCO_EXAMPLE = SHARED_DATA / "labelme-examples" / "examples" / "instance_segmentation"
COCO_EXAMPLE = COCO_EXAMPLE / "data_dataset_coco"


@pytest.mark.skipif(not COCO_EXAMPLE.is_dir(), reason="shared/data/labelme-examples is absent")
def test_labelme_example_coco() -> None:
    """3 photos, 12 instances: boxes are the file's bbox, masks have the file's areas (labelme
    wrote both from its own PIL drawing, which visrep's reader repeats)."""
    data = json.loads((COCO_EXAMPLE / "annotations.json").read_text())
    s = CocoDetectionDataModule(str(COCO_EXAMPLE), masks=True).load()
    assert len(s.class_names) == 20 and s.class_names[14] == "person"  # no _background_
    counts = object_counts(s.train, 20)
    assert {s.class_names[i]: int(c) for i, c in enumerate(counts) if c} == {
        "bottle": 1, "bus": 2, "car": 1, "chair": 1, "person": 6, "sofa": 1,
    }  # fmt: skip
    boxes, areas = [], []
    for i in range(len(s.train)):
        x = s.train[i]
        boxes += x["boxes"].tolist()
        areas += x["masks"].sum((1, 2)).tolist()
    by_image = sorted(
        data["annotations"], key=lambda a: [im["id"] for im in data["images"]].index(a["image_id"])
    )
    want = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in by_image]  # fmt: skip
    assert boxes == want
    assert areas == [a["area"] for a in by_image]


def test_two_categories_with_one_name_are_refused(tmp_path: Path) -> None:
    from visrep.data.detection.coco import coco_detection_classes

    cats = [{"id": 1, "name": "cell"}, {"id": 2, "name": "cell"}]
    with pytest.raises(DataError, match="share the name 'cell'"):
        coco_detection_classes(cats, tmp_path / "a.json")
