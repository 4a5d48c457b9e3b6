"""YOLODataModule on tiny YOLO trees written here."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visrep.data.detection import YOLODataModule, read_yolo_labels, yolo_to_xyxy
from visrep.errors import DataError

# split -> stem -> (W, H, label text or None for no label file)
TREE = {
    "train": {
        "a": (20, 10, "1 0.5 0.5 1.0 1.0\n0 0.25 0.3 0.1 0.2\n"),
        "b": (16, 8, ""),  # an empty label file: no objects
        "c": (10, 10, None),  # no label file: no objects
    },
    "val": {"d": (8, 8, "1 0.5 0.5 0.5 0.25\n")},
}


def write_yolo(root: Path, tree: dict = TREE, names: str | None = "yaml") -> Path:
    rng = np.random.default_rng(0)
    for split, items in tree.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for stem, (w, h, text) in items.items():
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                root / "images" / split / f"{stem}.png"
            )
            if text is not None:
                (root / "labels" / split / f"{stem}.txt").write_text(text)
    if names == "yaml":
        (root / "data.yaml").write_text("path: .\nnames:\n  0: cell\n  1: nucleus\n")
    elif names == "txt":
        (root / "classes.txt").write_text("cell\nnucleus\n")
    return root


def test_samples_exact(tmp_path: Path) -> None:
    s = YOLODataModule(str(write_yolo(tmp_path))).load()
    assert s.class_names == ["cell", "nucleus"]
    assert (len(s.train), len(s.val), s.test) == (3, 1, None)
    a = s.train[0]
    assert isinstance(a["image"], tv_tensors.Image) and a["image"].shape == (3, 10, 20)
    assert isinstance(a["boxes"], tv_tensors.BoundingBoxes)
    assert tuple(a["boxes"].canvas_size) == (10, 20)
    # (cx - w/2) W, (cy - h/2) H, (cx + w/2) W, (cy + h/2) H
    assert torch.allclose(a["boxes"], torch.tensor([[0.0, 0, 20, 10], [4, 2, 6, 4]]))
    assert a["labels"].dtype == torch.int64 and a["labels"].tolist() == [1, 0]
    assert a["difficult"].tolist() == [False, False]
    for empty in (s.train[1], s.train[2]):
        assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert s.val[0]["boxes"].tolist() == [[2, 3, 6, 5]]


def test_names_sources(tmp_path: Path) -> None:
    assert YOLODataModule(str(write_yolo(tmp_path / "t", names="txt"))).load().class_names == [
        "cell",
        "nucleus",
    ]
    root = write_yolo(tmp_path / "n", names=None)
    with pytest.raises(DataError, match=r"no data\.yaml or classes\.txt"):
        YOLODataModule(str(root)).load()
    assert YOLODataModule(str(root), classes=["x", "y"]).load().class_names == ["x", "y"]
    (root / "data.yaml").write_text("names: [p, q]\n")
    assert YOLODataModule(str(root)).load().class_names == ["p", "q"]


def test_setup_and_spec(tmp_path: Path) -> None:
    dm = YOLODataModule(str(write_yolo(tmp_path)))
    dm.setup()
    spec = dm.spec()
    assert spec.family == "detection" and spec.num_classes == 2
    assert spec.class_names == ("cell", "nucleus")
    assert len(dm.val_set) == 1 and len(dm.train_set) + len(dm.test_set) == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 0.5 0.5 0.2\n", r"a\.txt' line 1: 4 columns; expected 5"),
        ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2 7\n", r"a\.txt' line 2: 6 columns"),
        ("0 0.5 0.5 1.2 0.2\n", r"a\.txt' line 1: cx cy w h = .*expected values in \[0, 1\]"),
        ("0 -0.1 0.5 0.2 0.2\n", r"line 1: cx cy w h"),
        ("2 0.5 0.5 0.2 0.2\n", r"line 1: class 2; expected an integer in \[0, 2\)"),
        ("0.5 0.5 0.5 0.2 0.2\n", r"line 1: class 0.5"),
        ("0 0.5 x 0.2 0.2\n", r"a\.txt' line 1: a value is not a number"),
        ("0 0.5 0.5 0 0.2\n", r"a\.txt'?: object 0 has box .*x2 > x1"),
    ],
)
def test_bad_labels(tmp_path: Path, text: str, match: str) -> None:
    root = write_yolo(tmp_path, {"train": {"a": (20, 10, text)}})
    with pytest.raises(DataError, match=match) as e:
        YOLODataModule(str(root)).load()
    assert "\n" not in str(e.value)


def test_clipped_warning(tmp_path: Path) -> None:
    root = write_yolo(
        tmp_path, {"train": {"a": (20, 10, "0 0.9 0.5 0.4 0.2\n0 0.5 0.5 0.2 0.2\n")}}
    )
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = YOLODataModule(str(root)).load()
    msgs = [str(x.message) for x in w if "clipped" in str(x.message)]
    assert len(msgs) == 1 and "1 boxes in 1 files" in msgs[0]
    assert torch.allclose(s.train[0]["boxes"][0], torch.tensor([14.0, 4, 20, 6]))


def test_missing_train(tmp_path: Path) -> None:
    root = write_yolo(tmp_path, {"val": {"a": (8, 8, "")}})
    with pytest.raises(DataError, match=r"images/train' does not exist"):
        YOLODataModule(str(root)).load()
    with pytest.raises(DataError, match="does not exist"):
        YOLODataModule(str(tmp_path / "nope"))


def test_helpers(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("\n1 0.5 0.5 0.5 1.0\n\n")
    cls, box = read_yolo_labels(p, 2)
    assert cls.tolist() == [1] and box.tolist() == [[0.5, 0.5, 0.5, 1.0]]
    assert yolo_to_xyxy(box, (10, 20)).tolist() == [[5.0, 0.0, 15.0, 10.0]]
