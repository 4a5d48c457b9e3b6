"""COCO instance JSON rasterised to semantic label maps: exact pixel sets of hand-made polygons,
COCO RLE (uncompressed and the compressed string) against an encoder written here and against
pycocotools, crowd = ignore, bad input, the labelme example's COCO file, and a CLI fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.data.base import SplitConfig
from visrep.data.segmentation import (
    CocoFiles,
    CocoSegmentationDataModule,
    Region,
    draw_label_map,
    rle_counts_from_string,
    rle_decode,
    rle_encode,
)
from visrep.errors import DataError

EXAMPLES = SHARED_DATA / "labelme-examples" / "examples"


# --- a reference encoder, written from pycocotools' maskApi.c (rleEncode, rleToString) ---------
def ref_rle(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a run of 0s (a plain loop, as rleEncode)."""
    counts, prev, run = [], 0, 0
    for v in np.asarray(mask, bool).T.ravel():
        if v != prev:
            counts.append(run)
            prev, run = v, 0
        run += 1
    counts.append(run)
    return counts


def ref_rle_string(counts: list[int]) -> str:
    """rleToString: deltas from the 4th count on, 5-bit groups, 0x20 = more, 0x10 = sign."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [np.zeros((5, 7), bool), np.ones((6, 4), bool), np.eye(5, 8, dtype=bool)]
    for p in (0.05, 0.5, 0.95):
        out.append(rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < p)
    big = np.zeros((300, 400), bool)  # long runs: counts of several 5-bit groups, negative deltas
    big[20:280, 3:397] = True
    big[100:110, 50:60] = False
    return [*out, big]


# --- rasterisation ------------------------------------------------------------------------------
def test_polygon_pixel_sets_are_exact_and_later_regions_win() -> None:
    square = Region(3, "polygon", np.array([[1, 1], [4, 1], [4, 4], [1, 4]], float))
    want = np.zeros((7, 8), np.int32)
    want[1:5, 1:5] = 3  # corners at pixel centres: interior + outline, rows/cols 1..4
    assert np.array_equal(draw_label_map(7, 8, [square]), want)
    tri = Region(5, "polygon", np.array([[0, 0], [4, 0], [0, 4]], float))
    y, x = np.mgrid[:7, :8]
    want_tri = np.where(x + y <= 4, 5, 0)  # the 15 pixels on or below the hypotenuse
    assert np.array_equal(draw_label_map(7, 8, [tri]), want_tri)
    # drawn in order: the square over the triangle, then the triangle over the square
    both = draw_label_map(7, 8, [tri, square], background=9)
    assert np.array_equal(both, np.where(want > 0, 3, np.where(x + y <= 4, 5, 9)))
    assert np.array_equal(draw_label_map(7, 8, [square, tri]), np.where(x + y <= 4, 5, want))
    # an RLE region paints exactly its mask
    m = np.zeros((7, 8), bool)
    m[2:6, 5:7] = True
    got = draw_label_map(7, 8, [square, Region(255, "rle", counts=np.array(ref_rle(m)))])
    assert np.array_equal(got, np.where(m, 255, want))


def test_rle_round_trips_against_the_reference_encoder() -> None:
    for m in _masks():
        counts = ref_rle(m)
        assert rle_encode(m).tolist() == counts
        assert np.array_equal(rle_decode(counts, m.shape), m)
        s = ref_rle_string(counts)
        assert rle_counts_from_string(s).tolist() == counts
        assert np.array_equal(rle_decode(s, m.shape), m)
        assert np.array_equal(rle_decode(s.encode(), m.shape), m)  # bytes, as pycocotools has


def test_rle_bad_input() -> None:
    with pytest.raises(DataError, match=r"sum to 5, not H\*W = 2\*3 = 6"):
        rle_decode([1, 4], (2, 3))
    with pytest.raises(DataError, match=r"negative run lengths \[-1\]"):
        rle_decode([7, -1], (2, 3))
    with pytest.raises(DataError, match=r"holds 'p'; expected characters '0'\.\.'o'"):
        rle_counts_from_string("5p")  # 'p' - 48 = 64: out of range
    with pytest.raises(DataError, match="truncated"):
        rle_counts_from_string("5Q")  # 'Q' - 48 = 33: "more" with nothing after


def test_rle_parity_with_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")
    for m in _masks():
        h, w = m.shape
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle["counts"].decode() == ref_rle_string(ref_rle(m))  # the reference is right
        assert np.array_equal(rle_decode(rle["counts"], (h, w)), mask_utils.decode(rle) > 0)
        uncompressed = {"counts": ref_rle(m), "size": [h, w]}
        ref = mask_utils.decode(mask_utils.frPyObjects(uncompressed, h, w)) > 0
        assert np.array_equal(rle_decode(uncompressed["counts"], (h, w)), ref)


# --- a COCO tree written per test ---------------------------------------------------------------
CATEGORIES = [{"id": 12, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "owl"}]


def _coco_tree(root: Path, n: int = 4, hw: tuple[int, int] = (12, 14)) -> Path:
    """``root/annotations.json`` + ``root/img/i.png``: per image a dog square (polygon), an owl
    in two polygons, a crowd RLE (compressed string) over the lower right, and a cat RLE
    (uncompressed) inside the crowd. Category ids 3, 7, 12 -> classes 1, 2, 3."""
    (root / "img").mkdir(parents=True)
    h, w = hw
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "img" / f"{i}.png"
        )
        images.append({"id": 100 + i, "file_name": f"{i}.png", "height": h, "width": w})
        crowd = np.zeros(hw, bool)
        crowd[6:, 7:] = True
        cat = np.zeros(hw, bool)
        cat[8:10, 9:12] = True
        anns += [
            {"id": 4 * i, "image_id": 100 + i, "category_id": 3, "iscrowd": 0,
             "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4]]},
            {"id": 4 * i + 1, "image_id": 100 + i, "category_id": 7,
             "segmentation": [[8, 0, 10, 0, 10, 2, 8, 2], [0, 8, 2, 8, 2, 10, 0, 10]]},
            {"id": 4 * i + 2, "image_id": 100 + i, "category_id": 12, "iscrowd": 1,
             "segmentation": {"counts": ref_rle_string(ref_rle(crowd)), "size": [h, w]}},
            {"id": 4 * i + 3, "image_id": 100 + i, "category_id": 12, "iscrowd": 0,
             "segmentation": {"counts": ref_rle(cat), "size": [h, w]}},
        ]  # fmt: skip
    data = {"images": images, "annotations": anns, "categories": CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def _expected(hw: tuple[int, int] = (12, 14)) -> np.ndarray:
    want = np.zeros(hw, np.int64)
    want[1:5, 1:5] = 1  # dog
    want[0:3, 8:11] = 2  # owl, first polygon
    want[8:11, 0:3] = 2  # owl, second polygon
    want[6:, 7:] = 255  # crowd ...
    want[8:10, 9:12] = 3  # ... except where the (non-crowd) cat is
    return want


def _module(root: Path, **kw) -> CocoSegmentationDataModule:
    files = CocoFiles("annotations.json", "img")
    split = SplitConfig(val_fraction=0.25, test_fraction=0.25)
    return CocoSegmentationDataModule(str(root), train=files, split=split, **kw)


def test_coco_module_draws_polygons_rle_and_crowd(tmp_path: Path) -> None:
    dm = _module(_coco_tree(tmp_path / "coco"), crop_size=None)
    dm.setup()
    assert dm.classes.names == ("background", "dog", "owl", "cat")  # sorted by category id
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [2, 1, 1]
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        s = ds[0]
        assert s["image"].shape == (3, 12, 14)
        assert np.array_equal(s["mask"].numpy(), _expected())
    spec = dm.spec()
    assert spec.num_classes == 4 and spec.ignore_index == 255 and spec.image_size == (12, 14)
    per_image = np.bincount(_expected()[_expected() != 255], minlength=4)
    assert dm.class_pixels.tolist() == (2 * per_image).tolist()
    b = next(iter(dm.train_dataloader()))
    assert b["mask"].shape == (2, 12, 14)


def test_coco_val_file_and_category_mismatch(tmp_path: Path) -> None:
    root = _coco_tree(tmp_path / "coco")
    val = json.loads((root / "annotations.json").read_text())
    val["images"], val["annotations"] = val["images"][:1], val["annotations"][:4]
    (root / "val.json").write_text(json.dumps(val))
    dm = CocoSegmentationDataModule(
        str(root), CocoFiles(images="img"), CocoFiles("val.json", "img"), crop_size=8
    )
    dm.setup()
    assert len(dm.val_set) == 1 and np.array_equal(dm.val_set[0]["mask"].numpy(), _expected())
    val["categories"] = CATEGORIES[:2]
    val["annotations"] = val["annotations"][:2]
    (root / "val.json").write_text(json.dumps(val))
    dm = CocoSegmentationDataModule(
        str(root), CocoFiles(images="img"), CocoFiles("val.json", "img"), crop_size=8
    )
    with pytest.raises(DataError, match=r"val\.json.*categories \['background', 'dog', 'cat'\]"):
        dm.setup()


def _break(root: Path, edit) -> CocoSegmentationDataModule:
    data = json.loads((root / "annotations.json").read_text())
    edit(data)
    (root / "annotations.json").write_text(json.dumps(data))
    return _module(root, cache=True)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["images"][1].update(file_name="gone.png"),
         r"annotations\.json.*image 101 file '.*gone\.png' does not exist"),
        (lambda d: d["annotations"][5].update(category_id=99),
         r"annotations\.json' annotation 5: category_id 99 is not in its categories \[3, 7, 12\]"),
        (lambda d: d["annotations"][4].update(segmentation=[[1, 1, 4, 1]]),
         r"annotations\.json' annotation 4: polygon has 4 coordinates; .*at least 3 points"),
        (lambda d: d["annotations"][6]["segmentation"].update(size=[12, 15]),
         r"annotation 6: RLE size \[12, 15\] differs from its image's \[height, width\] \[12, 14\]"),
        (lambda d: d["annotations"][7]["segmentation"].update(counts=[1, 2]),
         r"annotation 7: RLE counts sum to 3, not H\*W = 12\*14 = 168"),
        (lambda d: d["annotations"][0].update(image_id=7),
         r"annotation 0: image_id 7 is not in its images"),
        (lambda d: d["annotations"][0].update(category_id=[3]),
         r"annotation 0: category_id \[3\] is not an int or a string"),
        (lambda d: d["images"][0].update(id=[100]),
         r"image id \[100\] is not an int or a string"),
        (lambda d: (d["images"][2].update(height=10),  # a polygon-only image drawn 14x10
                    d.update(annotations=[a for a in d["annotations"] if a["id"] not in (10, 11)])),
         r"annotations\.json \(image 102: 2\.png\)' is 14x10 \(WxH\) but its image is 14x12"),
    ],
)  # fmt: skip
def test_coco_bad_input(tmp_path: Path, edit, match: str) -> None:
    with pytest.raises(DataError, match=match) as e:
        _break(_coco_tree(tmp_path / "coco"), edit).setup()
    assert "\n" not in str(e.value)


def test_coco_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"annotation file '.*nope\.json' does not exist"):
        CocoSegmentationDataModule(str(tmp_path), CocoFiles("nope.json"))
    (tmp_path / "a.json").write_text('{"images": []}')
    with pytest.raises(DataError, match=r"a\.json' has no 'annotations' list"):
        CocoSegmentationDataModule(str(tmp_path), CocoFiles("a.json"))


# --- the labelme example's COCO file (shared/data) ------------------------------------------------
COCO_EXAMPLE = EXAMPLES / "instance_segmentation" / "data_dataset_coco"


@pytest.mark.skipif(not COCO_EXAMPLE.is_dir(), reason="shared/data/labelme-examples is absent")
def test_labelme_example_coco_masks_have_the_files_areas() -> None:
    """labelme2coco wrote each annotation's ``area`` as the pixel count of labelme's own (PIL)
    rasterisation: every one of the 12 instances drawn alone has exactly that many pixels."""
    from visrep.data.segmentation.polygons import polygon_points

    data = json.loads((COCO_EXAMPLE / "annotations.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    assert len(data["annotations"]) == 12
    for a in data["annotations"]:
        regions = [Region(1, "polygon", polygon_points(p, "x")) for p in a["segmentation"]]
        assert int((draw_label_map(*sizes[a["image_id"]], regions) == 1).sum()) == a["area"]
    dm = CocoSegmentationDataModule(str(COCO_EXAMPLE), split=SplitConfig(0.0, 0.34))
    dm.setup()
    assert dm.classes.names[0] == "_background_" and dm.classes.names[15] == "person"
    assert len(dm.classes.names) == 21 and len(dm.train_set) + len(dm.test_set) == 3
    b = next(iter(dm.train_dataloader()))
    assert b["mask"].shape[-2:] == (320, 320)


@pytest.mark.skipif(not COCO_EXAMPLE.is_dir(), reason="shared/data/labelme-examples is absent")
def test_labelme_example_polygons_near_pycocotools() -> None:
    """pycocotools rasterises polygons by its own boundary rule: the masks agree to a pooled
    IoU of 0.9889 over the 12 instances (measured), and pycocotools' never exceed PIL's."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    from visrep.data.segmentation.polygons import polygon_points

    data = json.loads((COCO_EXAMPLE / "annotations.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    inter = union = 0
    for a in data["annotations"]:
        h, w = sizes[a["image_id"]]
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)))
        regions = [Region(1, "polygon", polygon_points(p, "x")) for p in a["segmentation"]]
        ours = draw_label_map(h, w, regions) == 1
        inter += int((ours & (ref > 0)).sum())
        union += int((ours | (ref > 0)).sum())
    assert inter / union > 0.985


# --- the CLI ------------------------------------------------------------------------------------
def test_coco_fit_from_the_cli(tmp_path: Path, cli) -> None:
    root, run = _coco_tree(tmp_path / "coco", n=6, hw=(16, 16)), tmp_path / "run"
    code, _, err = cli(
        "fit", "--model", "visrep.tasks.SegmentationTask",
        "--model.model", '{"class_path": "unet", "init_args": {"depth": 1, "width": 4}}',
        "--data", "visrep.data.CocoSegmentationDataModule", "--data.root", root,
        "--data.train.images", "img", "--data.crop_size", "8",
        "--data.loader.batch_size", "2", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
        "--run_dir", run,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test/iou_per_class"]) == {"background", "dog", "owl", "cat"}
