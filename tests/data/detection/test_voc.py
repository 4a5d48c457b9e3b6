"""VOCDetectionDataModule on tiny VOC trees written here, and DetAugment / detection_collate."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visrep.data.base import LoaderConfig, SplitConfig
from visrep.data.detection import (
    DetAugment,
    VOCDetectionDataModule,
    detection_collate,
    read_voc_xml,
)
from visrep.errors import ConfigError, DataError

# id -> (W, H, [(name, xmin, ymin, xmax, ymax, difficult)])
IMAGES = {
    "a": (20, 10, [("dog", 1, 1, 20, 10, 0), ("cat", 3, 2, 7, 5, 1)]),
    "b": (16, 12, [("cat", 5, 5, 5, 5, 0)]),  # one pixel: xmin == xmax is width 1
    "c": (12, 8, []),  # no objects
    "d": (10, 10, [("bird", 2, 3, 9, 4, 0)]),
}


def xml(w: int, h: int, objects: list, size: bool = True) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d in objects
    )
    sz = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><filename>x.jpg</filename>{sz}{objs}</annotation>"


def write_voc(root: Path, images: dict = IMAGES, splits: dict | None = None) -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h, objects) in images.items():
        (root / "Annotations" / f"{i}.xml").write_text(xml(w, h, objects))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{i}.png"
        )
    for name, ids in (splits or {}).items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path / "voc", splits={"train": ["a", "b"], "val": ["c"], "test": ["d"]})


def test_samples_exact(voc: Path) -> None:
    dm = VOCDetectionDataModule(str(voc), loader=LoaderConfig(batch_size=2))
    s = dm.load()
    assert s.class_names == ["bird", "cat", "dog"]  # collected, sorted
    assert (len(s.train), len(s.val), len(s.test)) == (2, 1, 1)
    a = s.train[0]
    assert isinstance(a["image"], tv_tensors.Image) and a["image"].shape == (3, 10, 20)
    assert a["image"].dtype == torch.float32 and 0 <= a["image"].min() <= a["image"].max() <= 1
    assert isinstance(a["boxes"], tv_tensors.BoundingBoxes)
    assert a["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(a["boxes"].canvas_size) == (10, 20)
    # 1-based inclusive -> (xmin - 1, ymin - 1, xmax, ymax): the whole image is (0, 0, W, H)
    assert a["boxes"].tolist() == [[0, 0, 20, 10], [2, 1, 7, 5]]
    assert a["labels"].dtype == torch.int64 and a["labels"].tolist() == [2, 1]
    assert a["difficult"].tolist() == [False, True]
    assert s.train[1]["boxes"].tolist() == [[4, 4, 5, 5]]
    c = s.val[0]
    assert c["boxes"].shape == (0, 4) and c["labels"].shape == (0,)
    assert s.test[0]["labels"].tolist() == [0]


def test_drop_difficult_and_given_classes(voc: Path) -> None:
    dm = VOCDetectionDataModule(str(voc), classes=["dog", "cat", "bird"], keep_difficult=False)
    s = dm.load()
    assert s.class_names == ["dog", "cat", "bird"]
    a = s.train[0]
    assert a["labels"].tolist() == [0] and a["boxes"].tolist() == [[0, 0, 20, 10]]


def test_setup_spec_and_batches(voc: Path) -> None:
    dm = VOCDetectionDataModule(str(voc), loader=LoaderConfig(batch_size=2))
    dm.setup()
    spec = dm.spec()
    assert spec.family == "detection" and spec.num_classes == 3
    assert spec.class_names == ("bird", "cat", "dog") and spec.in_chans == 3
    assert len(spec.mean) == 3 and all(0 < m < 1 for m in spec.mean)
    batch = next(iter(dm.train_dataloader()))
    # the two training images differ in size: images stay a list, boxes/labels one per image
    assert isinstance(batch["image"], list) and len(batch["image"]) == 2
    assert sorted(len(b) for b in batch["boxes"]) == [1, 2]
    assert isinstance(batch["labels"], list) and isinstance(batch["difficult"], list)


def test_without_split_lists(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "voc")
    dm = VOCDetectionDataModule(str(root), split=SplitConfig(val_fraction=0.25, test_fraction=0.25))
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == len(IMAGES)


def test_collate_stacks_equal_sizes() -> None:
    def sample(n: int) -> dict:
        return {
            "image": tv_tensors.Image(torch.rand(3, 4, 5)),
            "boxes": tv_tensors.BoundingBoxes(
                torch.ones(n, 4) * torch.tensor([0, 0, 2, 2]), format="XYXY", canvas_size=(4, 5)
            ),
            "labels": torch.zeros(n, dtype=torch.int64),
            "difficult": torch.zeros(n, dtype=torch.bool),
        }

    b = detection_collate([sample(2), sample(2)])
    assert b["image"].shape == (2, 3, 4, 5)
    # equal box counts still give lists, not a stacked (B, N, 4) tensor
    assert isinstance(b["boxes"], list) and isinstance(b["difficult"], list)
    assert b["boxes"][0].shape == (2, 4)


def test_flip_moves_boxes() -> None:
    torch.manual_seed(0)
    w, h = 20, 10
    boxes = torch.tensor([[0.0, 0, 20, 10], [2, 1, 7, 5]])
    s = {
        "image": tv_tensors.Image(torch.arange(h * w, dtype=torch.float32).reshape(1, h, w)),
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([2, 1]),
        "difficult": torch.tensor([False, True]),
    }
    t = DetAugment(hflip=True).transform()
    flipped = 0
    for _ in range(20):
        out = t(s)
        if torch.equal(out["image"], s["image"]):
            assert torch.equal(out["boxes"], boxes)
            continue
        flipped += 1
        assert torch.equal(out["image"], s["image"].flip(-1))
        # x1' = W - x2, x2' = W - x1, y unchanged
        expect = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        assert torch.equal(out["boxes"], expect)
        assert out["labels"].tolist() == [2, 1] and out["difficult"].tolist() == [False, True]
    assert 0 < flipped < 20


def test_scale_moves_boxes() -> None:
    s = {
        "image": tv_tensors.Image(torch.rand(3, 10, 20)),
        "boxes": tv_tensors.BoundingBoxes([[2.0, 1, 8, 5]], format="XYXY", canvas_size=(10, 20)),
        "labels": torch.tensor([0]),
    }
    out = DetAugment(scale=(2.0, 2.0)).transform()(s)
    assert out["image"].shape == (3, 20, 40)
    assert tuple(out["boxes"].canvas_size) == (20, 40)
    assert out["boxes"].tolist() == [[4, 2, 16, 10]]


def test_augment_options() -> None:
    assert DetAugment().transform() is None
    with pytest.raises(ConfigError, match=r"data\.augment\.scale"):
        DetAugment(scale=(2.0, 1.0))
    with pytest.raises(ConfigError, match=r"data\.augment\.brightness"):
        DetAugment(brightness=-1)


def bad_tree(tmp_path: Path, text: str) -> Path:
    root = write_voc(tmp_path / "voc", {"a": (20, 10, [])})
    (root / "Annotations" / "a.xml").write_text(text)
    return root


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<annotation><size>", r"cannot read VOC annotation .*a\.xml"),
        (xml(20, 10, [], size=False), r"a\.xml'?: the annotation has no <size>"),
        ("<annotation><size><width>20</width></size></annotation>", r"<size> has no <height>"),
        (
            "<annotation><size><width>20</width><height>10</height></size>"
            "<object><name>dog</name></object></annotation>",
            r"a\.xml'?: object 0 \(dog\) has no <bndbox>",
        ),
        (
            "<annotation><size><width>20</width><height>10</height></size><object><name>dog"
            "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object>"
            "</annotation>",
            r"object 0 \(dog\) has no <ymax>",
        ),
        (xml(20, 10, [("dog", 5, 1, 3, 4, 0)]), r"a\.xml'?: object 0 has box .*x2 > x1"),
        (xml(20, 10, [("dog", 1, 5, 3, 3, 0)]), r"object 0 has box .*y2 > y1"),
        (xml(20, 10, [("dog", 30, 1, 40, 4, 0)]), r"entirely outside the 20x10"),
    ],
)
def test_bad_xml(tmp_path: Path, text: str, match: str) -> None:
    root = bad_tree(tmp_path, text)
    with pytest.raises(DataError, match=match) as e:
        VOCDetectionDataModule(str(root)).load()
    assert "\n" not in str(e.value)


def test_unknown_class(voc: Path) -> None:
    with pytest.raises(DataError, match=r"a\.xml'?: object 0 is 'dog', not one of data.classes"):
        VOCDetectionDataModule(str(voc), classes=["cat", "bird"]).load()


def test_clipped_boxes_warn_once(tmp_path: Path) -> None:
    images = {
        "a": (20, 10, [("dog", 0, -2, 25, 10, 0), ("dog", 1, 1, 4, 4, 0)]),
        "b": (20, 10, [("dog", 15, 5, 22, 12, 0)]),
    }
    root = write_voc(tmp_path / "voc", images)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = VOCDetectionDataModule(str(root)).load()
    msgs = [str(x.message) for x in w if "clipped" in str(x.message)]
    assert len(msgs) == 1 and "2 boxes in 2 files" in msgs[0] and "\n" not in msgs[0]
    assert s.train[0]["boxes"].tolist() == [[0, 0, 20, 10], [0, 0, 4, 4]]
    assert s.train[1]["boxes"].tolist() == [[14, 4, 20, 10]]


def test_missing_files(voc: Path) -> None:
    (voc / "JPEGImages" / "d.png").unlink()
    with pytest.raises(DataError, match=r"VOC image .*d\.jpg' of 'd' is missing"):
        VOCDetectionDataModule(str(voc)).load()
    (voc / "Annotations" / "a.xml").unlink()
    with pytest.raises(DataError, match=r"VOC annotation .*a\.xml' of 'a' is missing"):
        VOCDetectionDataModule(str(voc), classes=["bird", "cat", "dog"]).load()
    with pytest.raises(DataError, match="does not exist"):
        VOCDetectionDataModule(str(voc / "nope"))


def test_image_size_disagrees(voc: Path) -> None:
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(voc / "JPEGImages" / "a.png")
    s = VOCDetectionDataModule(str(voc)).load()
    with pytest.raises(DataError, match=r"a\.png' is 5x5 \(WxH\) but .*a\.xml' gives 20x10"):
        s.train[0]


def test_read_voc_xml(voc: Path) -> None:
    size, names, boxes, difficult = read_voc_xml(voc / "Annotations" / "a.xml")
    assert size == (10, 20) and names == ["dog", "cat"]
    assert boxes.tolist() == [[0, 0, 20, 10], [2, 1, 7, 5]] and difficult.tolist() == [0, 1]
