"""labelme JSON rasterised to semantic label maps: exact pixel sets and the drawing order, embedded
images, class names, bad input, and parity with labelme's own label PNGs and with the COCO file
labelme wrote for the same photos."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from visrep.data.base import SplitConfig
from visrep.data.segmentation import CocoSegmentationDataModule, LabelmeDataModule
from visrep.data.segmentation.coco import read_coco
from visrep.data.segmentation.labelme import labelme_label, read_labelme
from visrep.errors import ConfigError, DataError

EXAMPLES = SHARED_DATA / "labelme-examples" / "examples"
H, W = 16, 18


def shape(label: str, points, kind: str = "polygon") -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


def write_labelme(folder: Path, stem: str, shapes: list[dict], embed: bool = False) -> Path:
    """``stem.json`` (labelme 5 layout) with a ``stem.png`` beside it, or embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(stem) + len(shapes))
    image = Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    data = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{stem}.png",
            "imageData": None, "imageHeight": H, "imageWidth": W}  # fmt: skip
    if embed:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data["imageData"] = base64.b64encode(buf.getvalue()).decode()
    else:
        image.save(folder / f"{stem}.png")
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(data))
    return path


SHAPES = [
    shape("dog", [[10, 6], [6, 3]], "rectangle"),  # corners in either order
    shape("cat", [[1, 1], [4, 1], [4, 4], [1, 4]]),
    shape("cat", [[6, 2], [10, 2], [6, 6]]),  # over the dog: later shapes win
    shape("owl", [[13, 11], [13, 14]], "circle"),  # centre, a point on the circle: r = 3
    shape("__ignore__", [[0, 15], [3, 15], [3, 12]]),
]


def expected() -> np.ndarray:
    y, x = np.mgrid[:H, :W]
    want = np.zeros((H, W), np.int64)
    want[3:7, 6:11] = 2  # dog: x 6..10, y 3..6
    want[1:5, 1:5] = 1
    want[(x >= 6) & (y >= 2) & ((x - 6) + (y - 2) <= 4)] = 1  # the triangle, outline included
    want[(y >= 12) & (y <= 15) & (x <= 3) & (x + y >= 15)] = 255
    return want


def test_labelme_shapes_in_order(tmp_path: Path) -> None:
    write_labelme(tmp_path / "lm", "a", SHAPES)
    write_labelme(tmp_path / "lm", "b", SHAPES[:2], embed=True)
    dm = LabelmeDataModule(str(tmp_path / "lm"), split=SplitConfig(0.0, 0.5))
    dm.setup()
    assert dm.classes.names == ("background", "cat", "dog", "owl")  # sorted shape labels
    mask = dm.train_set.dataset.raw(0)[1]  # a.json
    owl = mask == 3
    want = expected()
    assert np.array_equal(np.where(owl, 0, mask), want)
    y, x = np.mgrid[:H, :W]
    d2 = (x - 13) ** 2 + (y - 11) ** 2
    assert (owl <= (d2 <= 16)).all() and (owl >= (d2 <= 4)).all()  # between radii 2 and 4
    disc = owl[7:16, 9:18]  # centred on (13, 11)
    assert np.array_equal(disc, disc[::-1]) and np.array_equal(disc, disc.T)
    assert np.array_equal(disc, disc[:, ::-1]) and owl.sum() == disc.sum()
    assert owl[11, 10:17].all() and owl[8:15, 13].all()  # the diameters through the centre
    # b.json embeds its image: read from imageData, it is the image that was written
    image, label = dm.test_set.dataset.raw(1)
    assert image.shape == (H, W, 3) and label[1:5, 1:5].min() == 1
    assert image.std() > 30  # a decoded photo, not a blank


def test_labelme_class_names_and_labels_txt(tmp_path: Path) -> None:
    folder = tmp_path / "lm"
    write_labelme(folder, "a", SHAPES)
    (folder / "labels.txt").write_text("__ignore__\n_background_\nowl\ndog\ncat\nbat\n")
    dm = LabelmeDataModule(str(folder), class_names="labels.txt", split=SplitConfig(0.0, 0.0))
    assert dm.classes.names == ("_background_", "owl", "dog", "cat", "bat")
    ds = dm.load().train
    got = ds.raw(0)[1]
    lut = np.zeros(256, np.int64)
    lut[[1, 2, 255]] = [3, 2, 255]  # cat, dog and ignore from expected()'s default ids
    assert np.array_equal(np.where(got == 1, 0, got), lut[expected()])
    dm = LabelmeDataModule(str(folder), class_names=["background", "cat", "dog"])
    with pytest.raises(DataError, match=r"a\.json': shape 3 \('owl'\): label 'owl' is not one"):
        dm.setup()
    with pytest.raises(ConfigError, match=r"data.class_names file '.*nope\.txt' does not exist"):
        LabelmeDataModule(str(folder), class_names="nope.txt")


def test_labelme_line_shapes_refused_or_skipped(tmp_path: Path) -> None:
    line = shape("cat", [[0, 0], [5, 5], [9, 2]], "linestrip")
    write_labelme(tmp_path / "lm", "a", [*SHAPES[:2], line])
    with pytest.raises(DataError, match=r"a\.json': shape 2 \('cat'\) is a linestrip, which has"):
        LabelmeDataModule(str(tmp_path / "lm")).setup()
    dm = LabelmeDataModule(str(tmp_path / "lm"), other_shapes="skip")
    want = np.zeros((H, W), np.int64)
    want[3:7, 6:11] = 2
    want[1:5, 1:5] = 1  # only the dog and the square
    assert np.array_equal(dm.load().train.raw(0)[1], want)


@pytest.mark.parametrize(
    ("shapes", "edit", "match"),
    [
        ([shape("cat", [[1, 1], [4, 4]])], None,
         r"a\.json': polygon shape 0 \('cat'\) has 2 points; expected at least 3"),
        ([shape("cat", [[1, 1], [4, 4], [3, 3]], "rectangle")], None,
         r"rectangle shape 0 \('cat'\) has 3 points; expected 2"),
        ([shape("cat", [[1, 1], [4, 4]], "ellipse")], None,
         r"a\.json': shape 0 \('cat'\) has shape_type 'ellipse'; expected one of \['polygon'"),
        (SHAPES, lambda d: d.update(imagePath="gone.png"),
         r"a\.json': image '.*gone\.png' \(imagePath, relative to the JSON's folder\) does not"),
        (SHAPES, lambda d: d.update(imageHeight=12),
         r"label map '.*a\.json' is 18x12 \(WxH\) but its image is 18x16"),
        (SHAPES, lambda d: d.update(imageData="not base64!"),
         r"labelme file .*a\.json: imageData is not a readable image"),
        (SHAPES, lambda d: (d.update(imageData="not base64!"), d.pop("imageHeight")),
         r"labelme file .*a\.json: imageData is not a readable image"),
    ],
)  # fmt: skip
def test_labelme_bad_input(tmp_path: Path, shapes, edit, match: str) -> None:
    path = write_labelme(tmp_path / "lm", "a", shapes)
    if edit is not None:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=match) as e:
        LabelmeDataModule(str(tmp_path / "lm"), cache=True).load()  # cache: reads every file
    assert "\n" not in str(e.value)


def test_labelme_split_folders(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            write_labelme(tmp_path / "lm" / split, f"{split}{i}", SHAPES[:3])
    dm = LabelmeDataModule(str(tmp_path / "lm"), split=SplitConfig(test_fraction=0.3))
    dm.setup()
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [2, 1, 1]
    assert dm.classes.names == ("background", "cat", "dog")
    with pytest.raises(DataError, match=r"folder '.*empty' holds no labelme \.json files"):
        (tmp_path / "empty").mkdir()
        LabelmeDataModule(str(tmp_path / "empty"))


# --- shared/data: labelme's own examples --------------------------------------------------------
VIDEO = EXAMPLES / "video_annotation"
PHOTOS = EXAMPLES / "instance_segmentation"


@pytest.mark.skipif(not VIDEO.is_dir(), reason="shared/data/labelme-examples is absent")
def test_video_frames_equal_labelmes_own_label_pngs() -> None:
    """labelme2voc drew data_dataset_voc/SegmentationClassPNG from the same JSONs: all 5 frames
    (1000x563) agree pixel for pixel."""
    dm = LabelmeDataModule(str(VIDEO / "data_annotated"), class_names="../labels.txt")
    assert dm.classes.names == ("_background_", "car", "track")
    for path in sorted((VIDEO / "data_annotated").glob("*.json")):
        ours = labelme_label(read_labelme(path), dm.class_ids, 255, "error")()
        theirs = np.asarray(Image.open(VIDEO / "data_dataset_voc/SegmentationClassPNG" / f"{path.stem}.png"))  # fmt: skip
        assert ours.shape == (563, 1000) and np.array_equal(ours, theirs), path.name


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared/data/labelme-examples is absent")
def test_photos_labelme_and_coco_agree() -> None:
    """The 3 VOC photos as labelme JSON and as the COCO file labelme2coco wrote from them: equal
    on every pixel labelme does not mark ``__ignore__`` (COCO drops those shapes; 9460 and 909
    pixels of 2011_000003 and 2011_000006)."""
    lm = LabelmeDataModule(str(PHOTOS / "data_annotated"), class_names="../labels.txt")
    coco = CocoSegmentationDataModule(str(PHOTOS / "data_dataset_coco"))
    assert lm.classes.names == coco.classes.names and len(lm.classes.names) == 21
    root = PHOTOS / "data_dataset_coco"
    files, labels = read_coco(root / "annotations.json", root, coco.category_ids, 255)
    ignored = {}
    for file, label in zip(files, labels, strict=True):
        stem = Path(file).stem
        a = label()
        b = labelme_label(read_labelme(PHOTOS / "data_annotated" / f"{stem}.json"), lm.class_ids, 255, "error")()  # fmt: skip
        keep = b != 255
        assert np.array_equal(a[keep], b[keep]), stem
        assert len(np.unique(a)) >= 3
        ignored[stem] = int((~keep).sum())
    assert ignored == {"2011_000003": 9460, "2011_000025": 0, "2011_000006": 909}
