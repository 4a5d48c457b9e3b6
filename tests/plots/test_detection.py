"""Detection figures: the grid and PR curves are written as PNGs; draw_detections changes
exactly the pixels it should (box outlines, captions, masks); bad input raises; the real BCCD
files draw (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.errors import ShapeError
from visrep.plots.detection import draw_detections, overlay_masks, plot_detections, plot_pr_curves

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["rbc", "wbc", "platelets"]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
BCCD = Path("/work/shared/data/bccd/BCCD")


def _png_size(p: Path) -> tuple[int, int]:
    assert p.read_bytes()[:8] == PNG and p.stat().st_size > 1000
    with Image.open(p) as im:
        return im.size


def _outline(hw: tuple[int, int], box: tuple[int, int, int, int], w: int) -> np.ndarray:
    """The pixels a ``w``-wide outline of the integer XYXY box covers, inside the box."""
    y, x = np.mgrid[: hw[0], : hw[1]]
    x1, y1, x2, y2 = box
    inside = (x >= x1) & (x < x2) & (y >= y1) & (y < y2)
    core = (x >= x1 + w) & (x < x2 - w) & (y >= y1 + w) & (y < y2 - w)
    return inside & ~core


@pytest.mark.parametrize("w", [1, 3])
def test_draw_detections_changes_exactly_the_outline(w: int) -> None:
    img = np.full((40, 50, 3), 128, np.uint8)
    out = draw_detections(
        img, [[5, 6, 25, 30]], [1], [0.9], NAMES, [RED, GREEN, BLUE], width=w, captions=False
    )
    changed = (out != img).any(-1)
    assert np.array_equal(changed, _outline((40, 50), (5, 6, 25, 30), w))
    assert (out[changed] == GREEN).all() and out.dtype == np.uint8
    assert (img == 128).all()  # the input is not modified


def test_draw_detections_captions_and_masks() -> None:
    img = np.zeros((60, 80, 3), np.uint8)
    pal = [RED, GREEN, BLUE]
    box = (10, 30, 40, 50)
    out = draw_detections(
        img,
        torch.tensor([box]),
        torch.tensor([2]),
        torch.tensor([0.87]),
        NAMES,
        [RED, GREEN, BLUE],
        width=1,
    )
    changed = (out != img).any(-1)
    outline = _outline((60, 80), box, 1)
    assert changed[outline].all()
    extra = (
        changed & ~outline
    )  # the caption: a filled label right above the box, from its left edge
    rows, cols = np.nonzero(extra)
    assert rows.max() < box[1] and cols.min() == box[0] and 20 < cols.max() - box[0] < 79
    assert (out[extra] == BLUE).sum() > 0.5 * extra.sum()  # mostly label colour, some text
    # a box at the top edge: the caption goes inside the box
    top = draw_detections(img, [[10, 0, 40, 20]], [0], None, NAMES, [RED, GREEN, BLUE], width=1)
    assert not (top != img).any(-1)[20:].any()
    # masks: blended in the class colour, the higher score on top; nothing else changes
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 5:15, 5:15] = True
    masks[1, 10:20, 10:20] = True
    grey = np.full((60, 80, 3), 100, np.uint8)
    boxes = [[5, 5, 15, 15], [10, 10, 20, 20]]
    out = draw_detections(grey, boxes, [0, 1], [0.3, 0.8], NAMES, pal, masks=masks, captions=False)
    lines = _outline((60, 80), boxes[0], 1) | _outline((60, 80), boxes[1], 1)
    expect_green = masks[1] & ~lines
    expect_red = masks[0] & ~masks[1] & ~lines
    assert (out[expect_green] == [55, 170, 55]).all()  # round(0.55 * 100 + 0.45 * 255) = 170
    assert (out[expect_red] == [170, 55, 55]).all()
    assert (out[~masks.any(0) & ~lines] == 100).all()
    assert (out[_outline((60, 80), boxes[1], 1)] == GREEN).all()  # the higher score on top


def test_overlay_masks_is_vectorised_blend() -> None:
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    masks = np.array([[[1, 0, 0], [0, 1, 0]], [[1, 1, 0], [0, 0, 0]]], bool)
    out = overlay_masks(img, masks, np.array([[255, 255, 255], [0, 0, 0]]), alpha=0.5)
    assert np.array_equal(out[0, 0], np.round(0.5 * img[0, 0] + 127.5).astype(np.uint8))
    assert np.array_equal(out[0, 1], np.round(0.5 * img[0, 1]).astype(np.uint8))
    assert np.array_equal(out[:, 2], img[:, 2]) and np.array_equal(out[1, 0], img[1, 0])


def _scene(rng: np.random.Generator, n: int, hw: tuple[int, int]) -> tuple[dict, dict]:
    xy = rng.uniform(0, [hw[1] - 60, hw[0] - 60], (n, 2))
    wh = rng.uniform(20, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    labels = rng.integers(0, 3, n)
    pred = {
        "boxes": torch.tensor(boxes + rng.normal(0, 3, boxes.shape)),
        "scores": torch.tensor(rng.uniform(0.2, 1.0, n)),
        "labels": torch.tensor(labels),
    }
    return pred, {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}


def test_plot_detections_writes_a_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hw = (120, 160)
    scenes = [_scene(rng, n, hw) for n in (20, 3, 0)]
    preds, targets = [s[0] for s in scenes], [s[1] for s in scenes]
    masks = rng.random((3, *hw)) > 0.7
    preds[1]["masks"] = torch.tensor(masks, dtype=torch.float32)
    targets[1]["masks"] = torch.tensor(masks, dtype=torch.uint8)
    images = [
        rng.random((*hw, 3)),
        (rng.random(hw) * 255).astype(np.uint8),
        np.zeros((*hw, 3), np.uint8),
    ]
    path = tmp_path / "a" / "det.png"  # folders are made
    w, h = _png_size(plot_detections(images, preds, targets, NAMES, path, titles=["a", "b", "c"]))
    w3, h3 = _png_size(plot_detections(images, preds, None, NAMES, tmp_path / "c.png", 0, cols=3))
    assert 1.3 < w3 / w < 1.7 and 1.7 < h / h3 < 2.3  # default 2 x 2 (one left empty); 1 x 3


def test_plot_pr_curves(tmp_path: Path) -> None:
    r = np.linspace(0, 1, 101)
    curves = {"rbc": (r, 1 - r**2), "wbc": (r[:60], np.full(60, 0.8))}
    _png_size(plot_pr_curves(curves, {"rbc": 0.667}, tmp_path / "pr.png", title="test, IoU 0.5"))
    _png_size(plot_pr_curves({}, {}, tmp_path / "empty.png"))
    with pytest.raises(ShapeError, match=r"curves\['rbc'\]"):
        plot_pr_curves({"rbc": (r, r[:5])}, {}, tmp_path / "bad.png")


def test_bad_input_raises(tmp_path: Path) -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    pal = [RED, GREEN, BLUE]
    with pytest.raises(ShapeError, match=r"image \(H, W, 3\)"):
        draw_detections(np.zeros((3, 10, 10, 1)), [[0, 0, 1, 1]], [0], None, NAMES, pal)
    with pytest.raises(ShapeError, match=r"labels \[3\] not in 0..2"):
        draw_detections(img, [[0, 0, 1, 1]], [3], None, NAMES, pal)
    with pytest.raises(ShapeError, match=r"boxes \(N, 4\)"):
        draw_detections(img, [[0, 0, 1, 1, 1, 1]], [0], None, NAMES, pal)
    with pytest.raises(ShapeError, match="scores"):
        draw_detections(img, [[0, 0, 1, 1]], [0], [0.5, 0.2], NAMES, pal)
    with pytest.raises(ShapeError, match="masks"):
        draw_detections(img, [[0, 0, 1, 1]], [0], None, NAMES, pal, masks=np.zeros((1, 5, 5)))
    with pytest.raises(ShapeError, match="colors"):
        draw_detections(img, [[0, 0, 1, 1]], [0], None, NAMES, pal[:2])
    pred = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}
    with pytest.raises(ShapeError, match="one prediction and target per image"):
        plot_detections([img], [pred, pred], None, NAMES, tmp_path / "x.png")
    with pytest.raises(ShapeError, match=r"predictions\[0\]: expected 'scores'"):
        plot_detections(
            [img], [{"boxes": np.zeros((0, 4)), "labels": []}], None, NAMES, tmp_path / "x.png"
        )


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared BCCD data absent")
def test_bccd_image_with_its_boxes(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    xml = sorted((BCCD / "Annotations").glob("*.xml"))[0]
    root = ET.parse(xml).getroot()
    objs = root.findall("object")
    boxes = np.array(
        [
            [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            for o in objs
        ]
    )
    labels = np.array(
        [["RBC", "WBC", "Platelets"].index(o.find("name").text.strip()) for o in objs]
    )
    img = np.asarray(Image.open(BCCD / "JPEGImages" / f"{xml.stem}.jpg").convert("RGB"))
    scores = np.linspace(1.0, 0.4, len(boxes))
    out = draw_detections(img, boxes, labels, scores, NAMES)
    assert out.shape == img.shape and (out != img).any(-1).mean() > 0.02
    preds = {"boxes": boxes + 4, "scores": scores, "labels": labels}
    targets = {"boxes": boxes, "labels": labels}
    _png_size(plot_detections([img], [preds], [targets], NAMES, tmp_path / "bccd.png"))
