"""Instance masks in detection samples (visrep.data.detection.base): drawn from stored regions,
moved with the image and boxes by DetAugment, kept as lists by the collate, named in the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from visrep.data.detection.base import (
    Annotation,
    DetAugment,
    DetectionDataset,
    check_boxes,
    detection_collate,
    draw_object_masks,
)
from visrep.data.segmentation.polygons import Region, rle_encode
from visrep.errors import DataError

H, W = 10, 12


def _truth() -> np.ndarray:
    """Three objects: a 4x4 square (polygon), an L shape (run lengths) overlapping it, and the
    union of two rectangles (one object drawn from two regions)."""
    m = np.zeros((3, H, W), np.uint8)
    m[0, 1:5, 1:5] = 1
    m[1, 3:9, 3] = 1
    m[1, 8, 3:8] = 1
    m[2, 0:2, 8:12] = 1
    m[2, 6:8, 9:11] = 1
    return m


def _annotation(image: str, masks: bool = True) -> Annotation:
    t = _truth()
    regions = (
        (Region(1, "polygon", np.array([[1, 1], [4, 1], [4, 4], [1, 4]])),),
        (Region(1, "rle", counts=rle_encode(t[1])),),
        (
            Region(1, "rectangle", np.array([[11, 1], [8, 0]])),
            Region(1, "rectangle", np.array([[9, 6], [10, 7]])),
        ),
    )
    boxes = np.array([[1, 1, 5, 5], [3, 3, 8, 9], [8, 0, 12, 8]], np.float32)  # mask extents
    return Annotation(
        image, (H, W), boxes, np.array([0, 2, 1]), np.array([False, True, False]), "a.json",
        regions if masks else None,
    )  # fmt: skip


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return str(path)


def _extents(masks: torch.Tensor) -> list[list[float]]:
    out = []
    for m in masks.numpy().astype(bool):
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(out, np.float32).tolist()


def test_sample_masks_are_exact(image: str) -> None:
    s = DetectionDataset([_annotation(image)])[0]
    assert isinstance(s["masks"], tv_tensors.Mask) and s["masks"].dtype == torch.uint8
    assert s["masks"].shape == (3, H, W)
    assert np.array_equal(s["masks"].numpy(), _truth())
    assert _extents(s["masks"]) == s["boxes"].tolist()
    assert "masks" not in DetectionDataset([_annotation(image, masks=False)])[0]


def test_draw_object_masks_of_no_objects() -> None:
    assert draw_object_masks((H, W), []).shape == (0, H, W)


def test_flip_moves_masks_with_boxes(image: str) -> None:
    torch.manual_seed(0)
    ds = DetectionDataset([_annotation(image)], transform=DetAugment(hflip=True).transform())
    flips = 0
    for _ in range(12):
        s = ds[0]
        m = s["masks"].numpy()
        if np.array_equal(m, _truth()):
            continue
        flips += 1
        assert np.array_equal(m, _truth()[:, :, ::-1])
        assert _extents(s["masks"]) == s["boxes"].tolist()  # still each mask's extent
        assert s["labels"].tolist() == [0, 2, 1] and s["difficult"].tolist() == [0, 1, 0]
    assert 0 < flips < 12


def test_rescale_moves_masks_with_boxes(image: str) -> None:
    ds = DetectionDataset([_annotation(image)], transform=DetAugment(scale=(2, 2)).transform())
    s = ds[0]
    assert s["image"].shape == (3, 2 * H, 2 * W) and s["masks"].shape == (3, 2 * H, 2 * W)
    # nearest-neighbour doubling: every pixel becomes a 2x2 block
    want = _truth().repeat(2, axis=1).repeat(2, axis=2)
    assert np.array_equal(s["masks"].numpy(), want)
    assert _extents(s["masks"]) == s["boxes"].tolist()


def test_collate_keeps_masks_per_image(image: str) -> None:
    a = _annotation(image)
    ds = DetectionDataset([a, a.select(np.array([False, True, False]))])
    b = detection_collate([ds[0], ds[1]])
    assert isinstance(b["masks"], list) and [m.shape[0] for m in b["masks"]] == [3, 1]
    assert np.array_equal(b["masks"][1][0].numpy(), _truth()[1])
    assert b["labels"][1].tolist() == [2] and b["boxes"][1].tolist() == [[3, 3, 8, 9]]


def test_annotations_must_agree(image: str) -> None:
    with pytest.raises(DataError, match=r"some annotations carry instance masks and others"):
        DetectionDataset([_annotation(image), _annotation(image, masks=False)])
    a = _annotation(image)
    with pytest.raises(DataError, match=r"'a\.json': 2 masks for 3 objects"):
        Annotation(a.image, a.size, a.boxes, a.labels, a.difficult, a.source, a.masks[:2])
    with pytest.raises(DataError, match=r"3 boxes, 2 labels and 3 difficult flags"):
        Annotation(a.image, a.size, a.boxes, a.labels[:2], a.difficult, a.source)


def test_check_boxes_names_objects_and_tolerates_round_off() -> None:
    with pytest.raises(DataError, match=r"x\.json'?: annotation 7 has box .*x2 > x1"):
        check_boxes(np.array([[5.0, 1, 5, 4]]), (H, W), "x.json", ["annotation 7"])
    with pytest.raises(DataError, match=r"object 0 has box \[nan"):
        check_boxes(np.array([[np.nan, 1, 5, 4]]), (H, W), "x.json")
    # a few float32 ulps past the border is round-off: clipped, not counted
    boxes, n = check_boxes(np.array([[0, 0, W + 6e-5, H], [-1, 0, 3, 3]]), (H, W), "x")
    assert n == 1 and boxes.tolist() == [[0, 0, W, H], [0, 0, 3, 3]]
