"""COCO-style detection metrics: mAP@[.5:.95], mAP@0.5, per size, per class, and PR curves.

The evaluation is COCO's (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014;
the protocol of cocodataset.org/#detection-eval, as pycocotools' ``COCOeval`` implements it),
run by torchmetrics' :class:`~torchmetrics.detection.MeanAveragePrecision` on the
``faster_coco_eval`` backend. For one class, one IoU threshold ``t``, one area range and at most
100 detections per image, the detections of all images are ranked by score; a detection is a
true positive when it matches (greedily, in score order) a still unmatched ground-truth box with
``IoU >= t``. With precision ``p`` and recall ``r`` along the ranking, the interpolated precision
is ``p_interp(r) = max_{r' >= r} p(r')`` and

    AP_t = (1 / 101) * sum_{r in {0, 0.01, ..., 1}} p_interp(r)

(101-point interpolation; ``p_interp(r) = 0`` beyond the largest recall reached). ``map`` is the
mean of ``AP_t`` over ``t in {0.50, 0.55, ..., 0.95}`` and over the classes with ground truth;
``map_50`` and ``map_75`` fix ``t``; ``map_small|medium|large`` keep only objects (and unmatched
detections) with area ``< 32^2``, in ``[32^2, 96^2]``, ``> 96^2`` pixels; ``mar_100`` is the
recall reached with 100 detections per image, averaged over ``t`` and the classes.

Ignored objects. Ground truth flagged ``iscrowd`` (COCO crowds) or ``difficult`` (PASCAL VOC,
Everingham et al., IJCV 2010) is passed as ``iscrowd = 1``: it counts in no recall, and a
detection matched to it is neither a true nor a false positive (any number of detections may
match one). Two details are COCO's, not VOC's: the overlap with an ignored object is
``|D n G| / |D|`` (the share of the detection inside it) rather than the IoU, and a detection
is matched to an ignored object only when no regular object is left that it overlaps enough
(VOC takes the object of largest IoU, ignored or not). torchmetrics does pass ``iscrowd`` on to
the faster_coco_eval backend, which honours it (``tests/tasks/test_detection_metrics.py``
checks both against pycocotools).

Boxes are XYXY pixels; torchmetrics turns them into COCO's XYWH, and a box's area (for the size
ranges) is ``w * h`` of that box, or, with masks (``iou_type=("bbox", "segm")``), the area of
the object's mask, for box and mask evaluation alike, as in COCO's annotation files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from visrep.data.samples import BOXES, DIFFICULT, LABELS, MASKS
from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COCO_REC_THRESHOLDS",
    "make_map_metric",
    "pr_curves",
    "summarize",
    "to_metric_inputs",
]

# pycocotools' Params, exactly (float64): torchmetrics' defaults come from a float32 linspace
# (0.55 -> 0.550000011920929), which would turn an IoU of exactly 0.55 into a miss.
COCO_IOU_THRESHOLDS: list[float] = np.linspace(0.5, 0.95, 10).tolist()
COCO_REC_THRESHOLDS: list[float] = np.linspace(0.0, 1.0, 101).tolist()
ISCROWD = "iscrowd"
_SCORES = "scores"
# Index of the area range "all" in COCOeval's arrays (then small, medium, large); the last index
# of their max-detections axis is 100 detections per image.
_ALL_AREAS = 0


def make_map_metric(
    iou_type: str | Sequence[str] = ("bbox",), class_metrics: bool = True
) -> MeanAveragePrecision:
    """COCO mAP as a torchmetrics metric: faster_coco_eval backend, extended summary on.

    Args:
        iou_type: ``("bbox",)`` for boxes, ``("bbox", "segm")`` for boxes and instance masks.
            Mask-only evaluation is refused: torchmetrics then drops images without ground-truth
            masks, and with them the false positives found there.
        class_metrics: also let torchmetrics evaluate each class on its own (``map_per_class``,
            ``mar_100_per_class``; one more COCO evaluation per class). :func:`summarize`
            does not need it: it reads the per-class APs from the extended summary.

    Returns:
        A :class:`~torchmetrics.detection.MeanAveragePrecision` for :func:`to_metric_inputs`'s
        output, with pycocotools' exact IoU and recall thresholds and max detections 1, 10, 100.

    >>> make_map_metric(("bbox", "segm")).iou_type
    ('bbox', 'segm')
    """
    types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
    if types not in (("bbox",), ("bbox", "segm"), ("segm", "bbox")):
        raise ConfigError(f'iou_type must be ("bbox",) or ("bbox", "segm"), got {iou_type!r}')
    return MeanAveragePrecision(
        box_format="xyxy",
        iou_type=("bbox", "segm") if len(types) == 2 else ("bbox",),
        iou_thresholds=COCO_IOU_THRESHOLDS,
        rec_thresholds=COCO_REC_THRESHOLDS,
        max_detection_thresholds=[1, 10, 100],
        class_metrics=class_metrics,
        extended_summary=True,
        average="macro",
        backend="faster_coco_eval",
    )


def _plain(x: Any) -> Tensor:
    """A detached plain tensor (tv_tensors such as BoundingBoxes unwrapped)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    return t.detach().as_subclass(Tensor)


def _binary_masks(masks: Any, n: int, where: str) -> Tensor:
    """Instance masks ``(n, H, W)`` as uint8 0/1 (float masks: probabilities, cut at 0.5)."""
    m = _plain(masks)
    if m.ndim != 3 or m.shape[0] != n:
        raise ShapeError(
            f"{where}: masks must be (N, H, W) with N = {n} boxes, got {tuple(m.shape)}"
        )
    return (m > 0.5 if m.is_floating_point() else m != 0).to(torch.uint8)


def _boxes_labels(d: Mapping[str, Any], where: str) -> tuple[Tensor, Tensor]:
    for key in (BOXES, LABELS):
        if key not in d:
            raise ShapeError(f"{where}: missing {key!r} (have {sorted(d)})")
    boxes, labels = _plain(d[BOXES]), _plain(d[LABELS])
    if boxes.ndim == 1 and boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ShapeError(f"{where}: boxes must be (N, 4) XYXY, got {tuple(boxes.shape)}")
    if labels.shape != (len(boxes),) or labels.is_floating_point():
        raise ShapeError(
            f"{where}: labels must be integers (N,) with N = {len(boxes)} boxes, "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    return boxes.float(), labels.long()


def to_metric_inputs(
    detections: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Detector outputs and data targets in the format of ``MeanAveragePrecision.update``.

    Args:
        detections: one dict per image: ``boxes`` ``(N, 4)`` XYXY pixels, ``scores`` ``(N,)``,
            ``labels`` ``(N,)`` class ids, optional ``masks`` ``(N, H, W)`` (bool, 0/1 or
            probabilities, cut at 0.5).
        targets: one dict per image: ``boxes`` ``(M, 4)``, ``labels`` ``(M,)``, optional
            ``difficult`` and ``iscrowd`` ``(M,)`` flags, optional ``masks`` ``(M, H, W)``.

    Returns:
        ``(preds, target)``: plain tensors on the input's device; boxes float32, labels int64,
        masks uint8, and ``iscrowd`` int64 ``(M,)`` set where an object is difficult or a crowd,
        which COCO's evaluation ignores (module docstring).

    >>> p, t = to_metric_inputs(
    ...     [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}],
    ...     [{"boxes": torch.tensor([[0., 0., 4., 4.]]), "labels": torch.tensor([1]),
    ...       "difficult": torch.tensor([True])}])
    >>> t[0]["iscrowd"].tolist()
    [1]
    """
    if len(detections) != len(targets):
        raise ShapeError(
            f"detections and targets must have one entry per image, got {len(detections)} "
            f"and {len(targets)}"
        )
    preds, target = [], []
    for i, (d, t) in enumerate(zip(detections, targets, strict=True)):
        where = f"detections[{i}]"
        boxes, labels = _boxes_labels(d, where)
        if _SCORES not in d:
            raise ShapeError(f"{where}: missing 'scores' (have {sorted(d)})")
        scores = _plain(d[_SCORES]).float()
        if scores.shape != (len(boxes),):
            raise ShapeError(
                f"{where}: scores must be (N,) with N = {len(boxes)} boxes, got {tuple(scores.shape)}"
            )
        p = {BOXES: boxes, _SCORES: scores, LABELS: labels}
        if d.get(MASKS) is not None:
            p[MASKS] = _binary_masks(d[MASKS], len(boxes), where)
        preds.append(p)

        where = f"targets[{i}]"
        boxes, labels = _boxes_labels(t, where)
        crowd = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
        for key in (DIFFICULT, ISCROWD):
            if t.get(key) is not None:
                flag = _plain(t[key]).to(crowd.device)
                if flag.shape != crowd.shape:
                    raise ShapeError(
                        f"{where}: {key} must be (M,) with M = {len(boxes)} boxes, "
                        f"got {tuple(flag.shape)}"
                    )
                crowd |= flag != 0
        g = {BOXES: boxes, LABELS: labels, ISCROWD: crowd.long()}
        if t.get(MASKS) is not None:
            g[MASKS] = _binary_masks(t[MASKS], len(boxes), where)
        target.append(g)
    return preds, target


def _defined(value: float) -> bool:
    """COCO marks an undefined average (nothing to average: no ground truth) with -1."""
    return bool(np.isfinite(value)) and value > -1


def _class_names(result: Mapping[str, Any], class_names: Sequence[str]) -> list[str]:
    """The names of the classes along the K axis of COCOeval's arrays (``result["classes"]``)."""
    ids = _plain(result.get("classes", torch.zeros(0))).reshape(-1).long().tolist()
    bad = [c for c in ids if not 0 <= c < len(class_names)]
    if bad:
        raise DataError(
            f"class ids {bad} are not in 0..{len(class_names) - 1} "
            f"(class_names has {len(class_names)} names)"
        )
    return [class_names[c] for c in ids]


def _iou_index(iou: float) -> int:
    hits = np.flatnonzero(np.isclose(COCO_IOU_THRESHOLDS, iou, rtol=0, atol=1e-9))
    if hits.size == 0:
        raise ConfigError(f"iou must be one of COCO's thresholds 0.50, 0.55, ..., 0.95, got {iou}")
    return int(hits[0])


def _precision(result: Mapping[str, Any], key: str) -> np.ndarray:
    """COCOeval's precision ``(T, R, K, A, M)`` (IoU thresholds, recall points, classes, area
    ranges all/small/medium/large, max detections 1/10/100) from the extended summary."""
    if key not in result:
        raise ConfigError(
            f"the mAP result has no {key!r}: build the metric with extended_summary=True "
            "(make_map_metric)"
        )
    return _plain(result[key]).double().cpu().numpy()


def _mean_defined(a: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """COCO's ``mean(s[s > -1])`` along ``axis``: NaN where every entry is -1 (undefined)."""
    ok = a > -1
    n = ok.sum(axis)
    total = np.where(ok, a, 0.0).sum(axis)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def summarize(
    result: Mapping[str, Any], class_names: Sequence[str], prefix: str
) -> dict[str, float]:
    """The scalars of a ``make_map_metric().compute()`` result, named for ``metrics.json``.

    Keys (``P`` = ``prefix``): ``P/map`` (AP@[.5:.95]), ``P/map_50``, ``P/map_75``,
    ``P/map_small``, ``P/map_medium``, ``P/map_large``, ``P/mar_100``, and per class
    ``P/ap/<name>`` (AP@[.5:.95]) and ``P/ap_50/<name>`` (AP@0.5: the mean over the 101 recall
    points of precision at IoU 0.5, all areas, 100 detections). Per-class values are read from
    the extended summary's precision array as COCO's ``summarize`` averages it (ignoring -1), so
    ``class_metrics`` is not needed. With masks, the same for masks: ``P/mask_map``, ...,
    ``P/mask_ap/<name>``, ``P/mask_ap_50/<name>``.

    Undefined values are left out, not reported as -1 or NaN: a class without (non-ignored)
    ground truth in the evaluated images has no AP even when it was predicted (its false
    positives are not part of any mean, as in COCO), a size range without objects has no
    ``map_<size>``, and a set without ground truth has no ``map``. Classes neither present nor
    predicted are not in the result at all.

    Args:
        result: ``compute()`` of :func:`make_map_metric`'s metric.
        class_names: the name of every class id.
        prefix: e.g. ``"val"`` or ``"test"``.
    """
    names = _class_names(result, class_names)
    kinds = [("bbox_", ""), ("segm_", "mask_")] if "bbox_map" in result else [("", "")]
    out: dict[str, float] = {}
    for src, dst in kinds:
        if f"{src}map" not in result:
            continue
        for stat in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
            value = float(_plain(result[f"{src}{stat}"]).item())
            if _defined(value):
                out[f"{prefix}/{dst}{stat}"] = value
        if f"{src}precision" not in result and not _defined(
            float(_plain(result[f"{src}map"]).item())
        ):
            continue  # no images at all: torchmetrics leaves the extended summary out
        prec = _precision(result, f"{src}precision")[:, :, :, _ALL_AREAS, -1]  # (T, R, K)
        if prec.shape[2] != len(names):
            raise ShapeError(
                f"the mAP result has {prec.shape[2]} classes in 'precision' but "
                f"{len(names)} in 'classes'"
            )
        ap = _mean_defined(prec, (0, 1))
        ap50 = _mean_defined(prec[_iou_index(0.5)], (0,))
        for name, a, a50 in zip(names, ap, ap50, strict=True):
            if _defined(a):
                out[f"{prefix}/{dst}ap/{name}"] = float(a)
            if _defined(a50):
                out[f"{prefix}/{dst}ap_50/{name}"] = float(a50)
    return out


def pr_curves(
    result: Mapping[str, Any],
    class_names: Sequence[str],
    iou: float = 0.5,
    iou_type: str = "bbox",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Interpolated precision-recall curves per class from the extended summary.

    Args:
        result: ``compute()`` of :func:`make_map_metric`'s metric.
        class_names: the name of every class id.
        iou: one of COCO's IoU thresholds (0.50, 0.55, ..., 0.95).
        iou_type: ``"bbox"`` or ``"segm"`` (only with a box-and-mask metric).

    Returns:
        ``{name: (recall, precision)}`` for the classes with ground truth: COCO's recall points
        ``0, 0.01, ...`` up to the largest recall reached, and ``p_interp`` there (all areas,
        100 detections per image); the mean of the full 101-point curve is the class's AP at
        ``iou``.
    """
    if iou_type not in ("bbox", "segm"):
        raise ConfigError(f'iou_type must be "bbox" or "segm", got {iou_type!r}')
    names = _class_names(result, class_names)
    src = f"{iou_type}_" if "bbox_map" in result else ""
    if iou_type == "segm" and not src:
        raise ConfigError('iou_type "segm" needs a metric built with iou_type=("bbox", "segm")')
    t = _iou_index(iou)
    if f"{src}precision" not in result and not _defined(float(_plain(result[f"{src}map"]).item())):
        return {}  # no images at all: torchmetrics leaves the extended summary out
    prec = _precision(result, f"{src}precision")[t, :, :, _ALL_AREAS, -1]  # (R, K)
    # COCOeval's recall (T, K, A, M): the largest recall reached
    recall = _plain(result[f"{src}recall"]).double().cpu().numpy()[t, :, _ALL_AREAS, -1]
    rec_thr = np.asarray(COCO_REC_THRESHOLDS)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, name in enumerate(names):
        if not _defined(float(prec[0, k])):
            continue  # no ground truth of this class
        keep = rec_thr <= recall[k] + 1e-12
        out[name] = (rec_thr[keep], prec[keep, k])
    return out
