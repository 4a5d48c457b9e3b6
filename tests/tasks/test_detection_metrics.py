"""COCO mAP of visrep (torchmetrics + faster_coco_eval) against pycocotools' COCOeval run
directly, a hand-computed 101-point AP, VOC "difficult" objects ignored, and bad input."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.tasks.detection_metrics import (
    make_map_metric,
    pr_curves,
    summarize,
    to_metric_inputs,
)

NAMES = ["rbc", "wbc", "platelets", "ghost", "unused"]  # ghost: only predicted; unused: nowhere
STATS = [  # COCOeval.stats, in order, as torchmetrics names them
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
]
TOL = 1e-6


# --- fixtures ------------------------------------------------------------------------------------


def _jitter(rng: np.random.Generator, box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    size = max(box[2] - box[0], box[3] - box[1])
    out = box + np.round(rng.normal(0, rng.uniform(0.0, 0.15) * size, 4))
    out[[0, 2]] = np.clip(out[[0, 2]], 0, hw[1])
    out[[1, 3]] = np.clip(out[[1, 3]], 0, hw[0])
    out[2:] = np.maximum(out[2:], out[:2] + 2)
    return out


def _random_box(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    lo, hi = [(6, 28), (40, 90), (110, 250)][rng.integers(3)]  # COCO small / medium / large
    w, h = rng.integers(lo, hi + 1, 2)
    x, y = rng.integers(0, hw[1] - w), rng.integers(0, hw[0] - h)
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def box_fixture(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Six 480 x 640 images, classes 0-2 (and FPs of class 3): misses, duplicates, wrong
    classes, false positives, crowds and VOC difficult objects (one detection inside each), an
    image without objects, objects of all three COCO sizes; integer coordinates (exact in
    float32) and distinct scores (no ranking ties)."""
    rng = np.random.default_rng(seed)
    hw = (480, 640)
    dets, gts = [], []
    for i in range(6):
        n = 0 if i == 5 else int(rng.integers(4, 13))
        g = np.stack([_random_box(rng, hw) for _ in range(n)]) if n else np.zeros((0, 4))
        labels = rng.integers(0, 3, n)
        difficult = rng.random(n) < 0.1
        crowd = rng.random(n) < 0.08
        if i == 0:
            difficult[0], crowd[1] = True, True
        d, dl = [], []
        for k in range(n):
            for _ in range(1 + int(rng.random() < 0.25)):  # a duplicate now and then
                if rng.random() < 0.8 or (i == 0 and k < 2):
                    d.append(_jitter(rng, g[k], hw))
                    dl.append(labels[k] if rng.random() < 0.9 else rng.integers(0, 3))
        for _ in range(int(rng.integers(0, 4)) + (2 if i == 5 else 0)):  # false positives
            d.append(_random_box(rng, hw))
            dl.append(rng.integers(0, 4))
        d = np.stack(d) if d else np.zeros((0, 4))
        gts.append(
            {
                "boxes": torch.tensor(g, dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "difficult": torch.tensor(difficult),
                "iscrowd": torch.tensor(crowd.astype(np.int64)),
            }
        )
        dets.append({"boxes": torch.tensor(d, dtype=torch.float32), "labels": torch.tensor(dl)})
    total = sum(len(d["boxes"]) for d in dets)
    scores = torch.tensor(rng.permutation(total) + 1.0) / (total + 1)
    for d, s in zip(dets, scores.float().split([len(d["boxes"]) for d in dets]), strict=True):
        d["scores"] = s
    return dets, gts


def _ellipse(hw: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.ogrid[: hw[0], : hw[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def mask_fixture(seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Four 200 x 200 images of elliptic instances of all sizes; boxes are the masks' tight boxes,
    predicted masks are probabilities; one crowd object."""
    rng = np.random.default_rng(seed)
    hw = (200, 200)

    def instance(cy: float, cx: float, ry: float, rx: float) -> tuple[np.ndarray, np.ndarray]:
        m = _ellipse(hw, cy, cx, ry, rx)
        ys, xs = np.nonzero(m)
        return m, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)

    dets, gts = [], []
    for i in range(4):
        n = int(rng.integers(3, 7))
        objs = []
        for _ in range(n):
            r = [rng.uniform(3, 14), rng.uniform(18, 45), rng.uniform(60, 80)][rng.integers(3)]
            objs.append((rng.uniform(20, 180), rng.uniform(20, 180), r * rng.uniform(0.7, 1), r))
        gm, gb = zip(*(instance(*o) for o in objs), strict=True)
        labels = rng.integers(0, 3, n)
        crowd = np.zeros(n, dtype=np.int64)
        crowd[0] = int(i == 0)
        dm, db, dl = [], [], []
        for k, (cy, cx, ry, rx) in enumerate(objs):
            if rng.random() < 0.85:
                s = rng.uniform(0, 0.3)
                m, b = instance(
                    cy + rng.normal(0, s * ry), cx + rng.normal(0, s * rx), ry * (1 + s), rx
                )
                dm.append(m)
                db.append(b)
                dl.append(labels[k] if rng.random() < 0.9 else rng.integers(0, 3))
        m, b = instance(rng.uniform(30, 170), rng.uniform(30, 170), 12, 9)  # a false positive
        dm.append(m)
        db.append(b)
        dl.append(rng.integers(0, 3))
        probs = np.stack(dm) * rng.uniform(0.6, 1.0) + (1 - np.stack(dm)) * rng.uniform(0, 0.4)
        gts.append(
            {
                "boxes": torch.tensor(np.stack(gb), dtype=torch.float32),
                "labels": torch.tensor(labels),
                "iscrowd": torch.tensor(crowd),
                "masks": torch.tensor(np.stack(gm).astype(np.uint8)),
            }
        )
        dets.append(
            {
                "boxes": torch.tensor(np.stack(db), dtype=torch.float32),
                "labels": torch.tensor(dl),
                "masks": torch.tensor(probs, dtype=torch.float32),
            }
        )
    total = sum(len(d["boxes"]) for d in dets)
    scores = torch.tensor(rng.permutation(total) + 1.0).float() / (total + 1)
    for d, s in zip(dets, scores.split([len(d["boxes"]) for d in dets]), strict=True):
        d["scores"] = s
    return dets, gts


# --- the reference: pycocotools' COCOeval on the same objects, built as COCO dicts ---------------


def _xywh(b: torch.Tensor) -> list[list[float]]:
    b = b.double()
    return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()


def _coco(dets: list[dict], gts: list[dict], iou_type: str, num_classes: int) -> Any:
    """pycocotools' COCOeval after evaluate + accumulate: GT with ``iscrowd`` = difficult or
    crowd, GT area = ``w * h`` (boxes) or the mask's area (masks, for both IoU types, as in
    COCO's files); detections loaded with ``loadRes`` (which sets their areas itself)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m: torch.Tensor) -> dict:
        return mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))

    images, anns, results = [], [], []
    for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
        h, w = g["masks"].shape[-2:] if "masks" in g else (480, 640)
        images.append({"id": i, "height": int(h), "width": int(w)})
        crowd = torch.zeros(len(g["labels"]), dtype=torch.bool)
        for key in ("difficult", "iscrowd"):
            if key in g:
                crowd |= g[key].bool()
        for k, (box, label) in enumerate(zip(_xywh(g["boxes"]), g["labels"].tolist(), strict=True)):
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": label, "bbox": box}
            ann["iscrowd"] = int(crowd[k])
            if "masks" in g:
                ann["segmentation"] = rle(g["masks"][k])
                ann["area"] = float(g["masks"][k].sum())
            else:
                ann["area"] = box[2] * box[3]
            anns.append(ann)
        for k, (box, label) in enumerate(zip(_xywh(d["boxes"]), d["labels"].tolist(), strict=True)):
            r = {"image_id": i, "category_id": label, "score": float(d["scores"][k])}
            if iou_type == "bbox":
                r["bbox"] = box
            else:
                r["segmentation"] = rle((d["masks"][k] > 0.5).to(torch.uint8))
            results.append(r)
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
    return ev


def _run(ev: Any, cat_ids: list[int] | None = None) -> np.ndarray:
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _compute(dets: list[dict], gts: list[dict], iou_type: tuple[str, ...]) -> dict:
    metric = make_map_metric(iou_type)
    half = len(dets) // 2  # two updates, as two validation batches
    metric.update(*to_metric_inputs(dets[:half], gts[:half]))
    metric.update(*to_metric_inputs(dets[half:], gts[half:]))
    return metric.compute()


def _check_parity(
    result: dict, dets: list, gts: list, iou_type: str, src: str, dst: str
) -> dict[str, list[float]]:
    """Every number against pycocotools; returns the absolute differences of the COCO summary
    (torchmetrics' float32 values) and of the per-class APs (float64, from the precision array)."""
    diffs: dict[str, list[float]] = {"summary": [], "per_class": [], "pr": []}
    ref = _run(_coco(dets, gts, iou_type, num_classes=4))
    ours = summarize(result, NAMES, "test")
    for name, value in zip(STATS, ref, strict=True):
        got = float(result[f"{src}{name}"])
        diffs["summary"].append(abs(got - value))
        assert got == pytest.approx(value, abs=TOL), name
        key = f"test/{dst}{name}"
        if name in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
            assert (key in ours) == (value > -1), key  # undefined (-1): left out
            if value > -1:
                assert ours[key] == pytest.approx(value, abs=TOL), key
    per_class = {c: _run(_coco(dets, gts, iou_type, 4), [c]) for c in range(4)}
    curves = pr_curves(result, NAMES, iou_type=iou_type)
    ev = _coco(dets, gts, iou_type, 4)
    _run(ev)
    ref_prec = ev.eval["precision"][0, :, :, 0, -1]  # (R, K) at IoU 0.5, all areas, 100 dets
    for c, stats in per_class.items():
        name = NAMES[c]
        if stats[0] <= -1:  # no ground truth: COCO leaves it out of every mean, and so do we
            assert f"test/{dst}ap/{name}" not in ours and name not in curves
            continue
        for key, value in (
            (f"test/{dst}ap/{name}", stats[0]),
            (f"test/{dst}ap_50/{name}", stats[1]),
        ):
            diffs["per_class"].append(abs(ours[key] - value))
            assert ours[key] == pytest.approx(value, abs=TOL), key
        recall, precision = curves[name]
        n = len(recall)
        diffs["pr"].append(float(np.abs(precision - ref_prec[:n, c]).max()))
        assert np.allclose(precision, ref_prec[:n, c], atol=TOL, rtol=0)
        assert np.all(ref_prec[n:, c] == 0)  # the curve stops at the largest recall reached
        assert np.mean(np.r_[precision, np.zeros(101 - n)]) == pytest.approx(stats[1], abs=TOL)
    assert all("/unused" not in k for k in ours)
    return diffs


# --- tests ---------------------------------------------------------------------------------------


def test_box_map_equals_pycocotools() -> None:
    pytest.importorskip("pycocotools")
    dets, gts = box_fixture()
    result = _compute(dets, gts, ("bbox",))
    sizes = {float(result[f"map_{s}"]) > -1 for s in ("small", "medium", "large")}
    assert sizes == {True} and 0.2 < float(result["map"]) < 0.9  # a fixture with something to rank
    assert 3 in torch.cat([d["labels"] for d in dets])  # "ghost": predicted, never true
    plain = [{"boxes": g["boxes"], "labels": g["labels"]} for g in gts]
    assert float(_compute(dets, plain, ("bbox",))["map"]) != float(result["map"])  # flags matter
    _check_parity(result, dets, gts, "bbox", "", "")
    # torchmetrics' own per-class evaluation (class_metrics) agrees with the extended summary
    ours = summarize(result, NAMES, "t")
    for c, ap in zip(result["classes"].tolist(), result["map_per_class"].tolist(), strict=True):
        assert (f"t/ap/{NAMES[c]}" in ours) == (ap > -1)
        if ap > -1:
            assert ours[f"t/ap/{NAMES[c]}"] == pytest.approx(ap, abs=TOL)


def test_box_and_mask_map_equal_pycocotools() -> None:
    pytest.importorskip("pycocotools")
    dets, gts = mask_fixture()
    result = _compute(dets, gts, ("bbox", "segm"))
    assert float(result["segm_map"]) > 0.1
    _check_parity(result, dets, gts, "bbox", "bbox_", "")
    _check_parity(result, dets, gts, "segm", "segm_", "mask_")
    assert "test/mask_ap_50/rbc" in summarize(result, NAMES, "test")


def _hand_case() -> tuple[list[dict], list[dict]]:
    """One class, 2 objects; ranked detections: TP (IoU 0.82), FP, TP (IoU 0.72)."""
    dets = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 8.2], [50, 50, 60, 60], [20, 0, 30, 7.2]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.tensor([0, 0, 0]),
        }
    ]
    gts = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]]), "labels": torch.tensor([0, 0])}
    ]
    return dets, gts


def test_ap_by_hand_from_the_101_point_interpolation() -> None:
    result = _compute(*_hand_case(), ("bbox",))
    out = summarize(result, NAMES, "val")
    # IoU <= 0.70: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> p_interp = 1 for r <= 0.5
    # (51 points), 2/3 for r in 0.51..1 (50 points). IoU 0.75, 0.80: only the first is a TP ->
    # 1 up to r = 0.5, then 0. IoU >= 0.85: nothing.
    ap_low = (51 + Fraction(2, 3) * 50) / 101
    ap_mid = Fraction(51, 101)
    ap = (5 * ap_low + 2 * ap_mid) / 10
    assert out["val/ap_50/rbc"] == pytest.approx(float(ap_low), abs=1e-12)
    assert out["val/ap/rbc"] == pytest.approx(float(ap), abs=1e-12)
    assert out["val/map_50"] == pytest.approx(float(ap_low), abs=TOL)
    assert out["val/map_75"] == pytest.approx(float(ap_mid), abs=TOL)
    assert out["val/map"] == pytest.approx(float(ap), abs=TOL)
    assert out["val/map_small"] == out["val/map"]  # every object is small
    assert "val/map_medium" not in out and "val/map_large" not in out  # undefined: left out
    assert out["val/mar_100"] == pytest.approx(0.6, abs=TOL)  # recall 1 up to IoU 0.7, 1/2 to 0.8
    recall, precision = pr_curves(result, NAMES)["rbc"]
    assert np.allclose(recall, np.linspace(0, 1, 101))
    assert np.allclose(precision, [1.0] * 51 + [2 / 3] * 50)
    recall, precision = pr_curves(result, NAMES, iou=0.8)["rbc"]
    assert recall[-1] == pytest.approx(0.5) and np.all(precision == 1)


def test_iou_exactly_on_a_threshold_is_a_match_as_in_pycocotools() -> None:
    # IoU 55 / 100 = 0.55 exactly: a match at 0.50 and 0.55 (pycocotools: iou >= t), so AP 2/10.
    # torchmetrics' default thresholds (a float32 linspace: 0.550000011920929) would give 1/10.
    dets = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 5.5]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([0]),
        }
    ]
    gts = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    assert float(_compute(dets, gts, ("bbox",))["map"]) == pytest.approx(0.2, abs=1e-7)
    if importlib.util.find_spec("pycocotools"):
        assert _run(_coco(dets, gts, "bbox", 1))[0] == pytest.approx(0.2, abs=1e-12)


@pytest.mark.parametrize("key", ["difficult", "iscrowd"])
def test_detection_of_a_difficult_or_crowd_object_is_neither_tp_nor_fp(key: str) -> None:
    dets = [
        {
            "boxes": torch.tensor([[100.0, 100, 140, 140], [0, 0, 10, 10]]),
            "scores": torch.tensor([0.95, 0.9]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    gts = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [98, 99, 141, 142]]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    flagged = [{**gts[0], key: torch.tensor([0, 1])}]
    assert summarize(_compute(dets, flagged, ("bbox",)), NAMES, "v")["v/ap_50/rbc"] == 1.0
    # the same object as a regular one: recall 1 at precision 1 (rank 2): AP 1; dropped from the
    # ground truth, the first detection is a false positive: p = 0, 1/2 -> AP 0.5
    assert summarize(_compute(dets, gts, ("bbox",)), NAMES, "v")["v/ap_50/rbc"] == 1.0
    dropped = [{"boxes": gts[0]["boxes"][:1], "labels": gts[0]["labels"][:1]}]
    assert summarize(_compute(dets, dropped, ("bbox",)), NAMES, "v")["v/ap_50/rbc"] == 0.5


def test_to_metric_inputs_formats() -> None:
    from torchvision import tv_tensors

    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 0, 4, 4]]), format="XYXY", canvas_size=(8, 8)
    )
    masks = torch.tensor([[[0.2, 0.7], [0.5, 0.51]]])
    p, t = to_metric_inputs(
        [
            {
                "boxes": boxes,
                "scores": torch.tensor([0.5], dtype=torch.float64),
                "labels": torch.tensor([2]),
                "masks": masks,
            }
        ],
        [
            {
                "boxes": boxes,
                "labels": torch.tensor([1], dtype=torch.int32),
                "difficult": torch.tensor([False]),
                "iscrowd": torch.tensor([1]),
                "masks": torch.tensor([[[True, False], [False, True]]]),
            }
        ],
    )
    assert type(p[0]["boxes"]) is torch.Tensor and p[0]["scores"].dtype == torch.float32
    assert p[0]["masks"].tolist() == [[[0, 1], [0, 1]]] and p[0]["masks"].dtype == torch.uint8
    assert t[0]["masks"].tolist() == [[[1, 0], [0, 1]]] and t[0]["labels"].dtype == torch.int64
    assert t[0]["iscrowd"].tolist() == [1]
    empty = {
        "boxes": torch.zeros(0),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    p, t = to_metric_inputs(
        [empty], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    )
    assert p[0]["boxes"].shape == (0, 4) and t[0]["iscrowd"].shape == (0,)


@pytest.mark.filterwarnings("ignore:.*called before the ``update`` method")
def test_no_detections_and_no_images() -> None:
    _, gts = _hand_case()
    none = [
        {
            "boxes": torch.zeros(0, 4),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.long),
        }
    ]
    out = summarize(_compute(none, gts, ("bbox",)), NAMES, "val")
    assert out["val/map"] == 0 and out["val/ap_50/rbc"] == 0 and out["val/mar_100"] == 0
    empty = make_map_metric().compute()
    assert summarize(empty, NAMES, "val") == {} and pr_curves(empty, NAMES) == {}


def test_bad_input_raises() -> None:
    dets, gts = _hand_case()
    with pytest.raises(ShapeError, match="one entry per image"):
        to_metric_inputs(dets, gts * 2)
    with pytest.raises(ShapeError, match=r"detections\[0\]: boxes must be \(N, 4\)"):
        to_metric_inputs([{**dets[0], "boxes": torch.zeros(3, 5)}], gts)
    with pytest.raises(ShapeError, match=r"detections\[0\]: scores"):
        to_metric_inputs([{**dets[0], "scores": torch.zeros(2)}], gts)
    with pytest.raises(ShapeError, match=r"targets\[0\]: labels must be integers"):
        to_metric_inputs(dets, [{**gts[0], "labels": torch.zeros(2)}])
    with pytest.raises(ShapeError, match=r"targets\[0\]: difficult"):
        to_metric_inputs(dets, [{**gts[0], "difficult": torch.zeros(3, dtype=torch.bool)}])
    with pytest.raises(ShapeError, match=r"targets\[0\]: masks must be \(N, H, W\)"):
        to_metric_inputs(dets, [{**gts[0], "masks": torch.zeros(2, 1, 4, 4)}])
    with pytest.raises(ShapeError, match="missing 'scores'"):
        to_metric_inputs([{"boxes": dets[0]["boxes"], "labels": dets[0]["labels"]}], gts)
    with pytest.raises(ConfigError, match="iou_type"):
        make_map_metric(("segm",))
    result = _compute(dets, gts, ("bbox",))
    with pytest.raises(DataError, match=r"class ids \[0\]"):
        summarize(result, [], "val")
    with pytest.raises(ConfigError, match="one of COCO's thresholds"):
        pr_curves(result, NAMES, iou=0.52)
    with pytest.raises(ConfigError, match="segm"):
        pr_curves(result, NAMES, iou_type="segm")
    metric = make_map_metric()
    metric.extended_summary = False
    metric.update(*to_metric_inputs(dets, gts))
    with pytest.raises(ConfigError, match="extended_summary"):
        summarize(metric.compute(), NAMES, "val")
