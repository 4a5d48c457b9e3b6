"""LabelmeDetectionDataModule: shape extents, labelme's group_id instances, masks, classes, bad
input; on labelme's example files, agreement with the COCO file labelme wrote for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.data.segmentation.test_labelme import H, W, shape, write_labelme
from visrep.data.base import SplitConfig
from visrep.data.detection.base import object_counts
from visrep.data.detection.coco import CocoDetectionDataModule
from visrep.data.detection.labelme import LabelmeDetectionDataModule
from visrep.data.segmentation.polygons import Region, draw_label_map
from visrep.errors import ConfigError, DataError

EXAMPLES = SHARED_DATA / "labelme-examples" / "examples"


def grouped(label: str, points, group, kind: str = "polygon") -> dict:
    return shape(label, points, kind) | {"group_id": group}


SHAPES = [
    shape("dog", [[10, 6], [6, 3]], "rectangle"),  # corners in either order
    shape("cat", [[1, 1], [4, 1], [4, 4], [1, 4]]),
    shape("owl", [[13, 11], [13, 14]], "circle"),  # centre, a point on it: r = 3
    shape("__ignore__", [[0, 15], [3, 15], [3, 12]]),  # no object
    shape("_background_", [[0, 0], [2, 0], [2, 2]]),  # no object
    grouped("cat", [[6, 9], [8, 9], [8, 11]], 4),  # one cat in two polygons ...
    grouped("cat", [[1, 12], [3, 12], [2, 14.5]], 4),
    grouped("dog", [[15, 0], [17, 0], [17, 2]], 4),  # ... and a dog with the same group id
]


def _mask(*regions: Region) -> np.ndarray:
    return (draw_label_map(H, W, list(regions)) > 0).astype(np.uint8)


def test_extents_groups_and_masks(tmp_path: Path) -> None:
    write_labelme(tmp_path / "lm", "a", SHAPES)
    write_labelme(tmp_path / "lm", "b", [])  # an image without objects
    dm = LabelmeDetectionDataModule(str(tmp_path / "lm"), masks=True)
    s = dm.load()
    assert s.class_names == ["cat", "dog", "owl"]  # no background class
    a = s.train[0]
    assert a["boxes"].tolist() == [
        [6, 3, 10, 6],  # rectangle
        [1, 1, 4, 4],  # polygon
        [10, 8, 16, 14],  # circle: centre (13, 11) +- radius 3
        [1, 9, 8, 14.5],  # the union of the group's two polygons
        [15, 0, 17, 2],
    ]
    assert a["labels"].tolist() == [1, 0, 2, 0, 1] and not a["difficult"].any()
    m = a["masks"].numpy()
    sh = [np.asarray(x["points"], float) for x in SHAPES]
    assert np.array_equal(m[0], _mask(Region(1, "rectangle", sh[0])))
    assert np.array_equal(m[2], _mask(Region(1, "circle", sh[2])))
    assert np.array_equal(m[3], _mask(Region(1, "polygon", sh[5]), Region(1, "polygon", sh[6])))
    assert (
        m[3].sum()
        == _mask(Region(1, "polygon", sh[5])).sum() + _mask(Region(1, "polygon", sh[6])).sum()
    )  # disjoint parts: the union holds both
    assert s.train[1]["boxes"].shape == (0, 4) and s.train[1]["masks"].shape == (0, H, W)
    assert "masks" not in LabelmeDetectionDataModule(str(tmp_path / "lm")).load().train[0]


def test_class_names_file_and_embedded_images(tmp_path: Path) -> None:
    write_labelme(tmp_path / "lm", "a", SHAPES[:3], embed=True)
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\nowl\ndog\ncat\nbird\n")
    s = LabelmeDetectionDataModule(str(tmp_path / "lm"), class_names="../labels.txt").load()
    assert s.class_names == ["owl", "dog", "cat", "bird"]
    x = s.train[0]
    assert x["labels"].tolist() == [1, 2, 0] and x["image"].shape == (3, H, W)


def test_split_folders_and_seeded_split(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 1)):
        for i in range(n):
            write_labelme(tmp_path / "lm" / split, f"{split}{i}", SHAPES[:2])
    dm = LabelmeDetectionDataModule(str(tmp_path / "lm"), split=SplitConfig(test_fraction=0.25))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 1, 1)
    assert object_counts(dm.train_set, 2).tolist() == [3, 3]


@pytest.mark.filterwarnings("ignore:.*were clipped")
def test_clipping_and_line_shapes(tmp_path: Path) -> None:
    shapes = [shape("dog", [[-2, 1], [4, 3]], "rectangle"), shape("cat", [[1, 1], [5, 5]], "line")]
    write_labelme(tmp_path / "lm", "a", shapes)
    with pytest.raises(DataError, match=r"a\.json'?: shape 1 \('cat'\) is a line, which has no"):
        LabelmeDetectionDataModule(str(tmp_path / "lm")).load()
    with pytest.warns(UserWarning, match=r"1 boxes in 1 files .* clipped"):
        s = LabelmeDetectionDataModule(str(tmp_path / "lm"), other_shapes="skip").load()
    assert s.train[0]["boxes"].tolist() == [[0, 1, 4, 3]]


@pytest.mark.parametrize(
    ("shapes", "kw", "match"),
    [
        ([shape("cat", [[1, 2], [5, 2], [3, 2]])], {}, r"shape 0 \('cat'\): its extent .* empty"),
        ([shape("cat", [[1, 2], [1, 2]], "circle")], {}, r"shape 0 \('cat'\): its extent"),
        ([shape("cat", [[1, 2], [3, 4]], "cube")], {}, r"shape 0 \('cat'\) has shape_type 'cube'"),
        ([shape("cat", [[0, 0], [3, 3]], "rectangle"), shape("emu", [[1, 2], [3, 4]], "rectangle")],
         {"class_names": ["cat"]}, r"shape 1 \('emu'\): label 'emu' is not one of"),
        ([shape("cat", [[40, 40], [50, 50]], "rectangle")], {},
         r"a\.json'?: shape 0 \('cat'\) has box .*entirely outside"),
        ([grouped("cat", [[1, 2], [3, 4]], [1], "rectangle")], {}, r"shape 0 has group_id \[1\]"),
    ],
)  # fmt: skip
def test_bad_input(tmp_path: Path, shapes, kw, match: str) -> None:
    write_labelme(tmp_path / "lm", "a", shapes)
    with pytest.raises(DataError, match=match) as e:
        LabelmeDetectionDataModule(str(tmp_path / "lm"), **kw).load()
    assert "\n" not in str(e.value)


def test_unparsable_json_and_options(tmp_path: Path) -> None:
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text("{")
    with pytest.raises(DataError, match=r"a\.json'? is not valid JSON"):
        LabelmeDetectionDataModule(str(tmp_path / "lm"))
    with pytest.raises(ConfigError, match=r"no object class"):
        write_labelme(tmp_path / "lm2", "a", [shape("_background_", [[0, 0], [2, 0], [2, 2]])])
        LabelmeDetectionDataModule(str(tmp_path / "lm2"))


# --- labelme's example files --------------------------------------------------------------------
PHOTOS = EXAMPLES / "instance_segmentation"


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared/data/labelme-examples is absent")
@pytest.mark.filterwarnings("ignore:.*were clipped")
def test_photos_agree_with_labelmes_coco_file() -> None:
    """labelme2coco turned these files into data_dataset_coco/annotations.json: the same 12
    objects (grouped shapes merged, __ignore__ left out), classes and masks; boxes within one
    pixel (the COCO file's bbox is the extent of the drawn mask, ours the shapes' extent)."""
    lm = LabelmeDetectionDataModule(
        str(PHOTOS / "data_annotated"), class_names="../labels.txt", masks=True
    ).load()
    coco = CocoDetectionDataModule(str(PHOTOS / "data_dataset_coco"), masks=True).load()
    assert lm.class_names == coco.class_names and len(lm.class_names) == 20
    by_name = {Path(a.image).name: k for k, a in enumerate(coco.train.annotations)}
    n = 0
    for i, a in enumerate(lm.train.annotations):
        j = by_name[Path(a.image).name]
        x, y = lm.train[i], coco.train[j]
        assert x["labels"].tolist() == y["labels"].tolist()
        assert np.abs((x["boxes"] - y["boxes"]).numpy()).max() <= 1.0
        assert np.array_equal(x["masks"].numpy(), y["masks"].numpy())
        n += len(x["labels"])
    assert n == 12


VIDEO = EXAMPLES / "video_annotation" / "data_annotated"


@pytest.mark.skipif(not VIDEO.is_dir(), reason="shared/data/labelme-examples is absent")
def test_video_frames() -> None:
    s = LabelmeDetectionDataModule(str(VIDEO), class_names="../labels.txt").load()
    assert s.class_names == ["car", "track"] and len(s.train) == 5
    assert object_counts(s.train, 2).tolist() == [5, 10]
    data = json.loads((VIDEO / "00000100.json").read_text())
    car = np.asarray(data["shapes"][2]["points"])
    assert s.train[0]["boxes"][2].tolist() == pytest.approx(
        [*car.min(0).tolist(), *np.minimum(car.max(0), [1000, 563]).tolist()], abs=1e-4
    )
