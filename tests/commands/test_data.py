"""``visrep data convert|info`` (visrep.commands.data), in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.data.detection.test_labelme import SHAPES
from tests.data.detection.test_voc import write_voc
from tests.data.segmentation.test_labelme import write_labelme
from visrep.data.detection.convert import read_detection_source

IMAGES = {
    "a": (20, 10, [("dog", 1, 1, 20, 10, 0), ("cat", 3, 2, 7, 5, 0)]),
    "b": (16, 12, [("cat", 5, 5, 5, 5, 0)]),
    "c": (12, 8, []),
}


def test_convert_and_info(cli, tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc", IMAGES, {"train": ["a", "b"], "test": ["c"]})
    code, out, err = cli(
        "data", "convert", "--source", voc, "--source_format", "voc",
        "--target", tmp_path / "coco", "--target_format", "coco",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        f"{tmp_path / 'coco'}: coco data set, 2 classes",
        "train: 2 images, 3 objects (cat 2, dog 1)",
        "test: 1 images, 0 objects (cat 0, dog 0)",
    ]
    splits, names = read_detection_source(str(tmp_path / "coco"), "coco")
    assert names == ["cat", "dog"] and [len(v) for v in splits.values()] == [2, 1]
    assert np.array_equal(splits["train"][0].boxes, [[0, 0, 20, 10], [2, 1, 7, 5]])
    code, out, _ = cli("data", "info", "--source", tmp_path / "coco", "--source_format", "coco")
    assert code == 0 and out.splitlines()[0].endswith("coco data set, 2 classes: cat, dog")


def test_labelme_masks_to_coco(cli, tmp_path: Path) -> None:
    write_labelme(tmp_path / "lm", "a", SHAPES)
    code, out, err = cli(
        "data", "convert", "--source", tmp_path / "lm", "--source_format", "labelme",
        "--target", tmp_path / "coco", "--target_format", "coco", "--masks", "true",
    )  # fmt: skip
    assert code == 0, err
    assert (
        out.splitlines()[1]
        == "train: 1 images, 5 objects (cat 2, dog 2, owl 1), with instance masks"
    )


def test_one_line_errors(cli, tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc", IMAGES)
    code, _, err = cli(
        "data", "convert", "--source", voc, "--source_format", "pascal",
        "--target", tmp_path / "t", "--target_format", "coco",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: --source_format must be") and "pascal" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli(
        "data", "convert", "--source", voc, "--source_format", "voc",
        "--target", voc, "--target_format", "yolo",
    )  # fmt: skip
    assert code == 2 and "exists and is not an empty folder" in err
    (voc / "Annotations" / "a.xml").write_text("<annotation>")
    code, _, err = cli("data", "info", "--source", voc, "--source_format", "voc")
    assert code == 2 and err.startswith("error: cannot read VOC annotation") and "a.xml" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("data", "info", "--source", tmp_path / "nope", "--source_format", "coco")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "t").exists()
