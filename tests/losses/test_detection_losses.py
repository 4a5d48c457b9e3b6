"""DETR's set criterion (eq. 2) on hand-computed cases, and the batched generalised IoU."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import generalized_box_iou as tv_giou

from visrep.errors import ConfigError, ShapeError
from visrep.losses.detection import (
    SetCriterion,
    generalized_box_iou,
    hungarian_loss,
    set_criterion,
)
from visrep.models.detection.matcher import HungarianMatcher


def _xyxy(n: int, g: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    xy = 10 * torch.rand(n, 2, generator=g, dtype=dtype)
    return torch.cat([xy, xy + 0.1 + 5 * torch.rand(n, 2, generator=g, dtype=dtype)], -1)


def test_generalized_box_iou_equals_torchvision_batched():
    g = torch.Generator().manual_seed(0)
    a = torch.stack([_xyxy(5, g) for _ in range(6)]).view(2, 3, 5, 4)
    b = torch.stack([_xyxy(4, g) for _ in range(6)]).view(2, 3, 4, 4)
    out = generalized_box_iou(a, b)
    assert out.shape == (2, 3, 5, 4)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], tv_giou(a[i, j], b[i, j]))
    assert generalized_box_iou(a[0, 0], b[0, 0]).shape == (5, 4)


def test_generalized_box_iou_hand_cases():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    # overlap 1, union 7, hull 9: 1/7 - 2/9; identical: 1; disjoint, hull 12, union 8: -1/3
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, -1 / 3]])
    torch.testing.assert_close(generalized_box_iou(a, b), expected)
    with pytest.raises(ShapeError, match="generalized_box_iou"):
        generalized_box_iou(a, torch.zeros(2, 3))


def _t(labels, boxes):
    return {
        "labels": torch.tensor(labels, dtype=torch.long),
        "boxes": torch.tensor(boxes, dtype=torch.float64),
    }


def _ce(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


def test_perfect_boxes_give_zero_box_losses_and_the_hand_computed_ce():
    # 2 classes + no-object; image 0: 3 queries, 2 objects; image 1: 3 queries, no object.
    logits = torch.tensor(
        [[[3.0, 0.0, 1.0], [0.0, 2.0, 0.5], [0.0, 0.0, 4.0]],
         [[1.0, 1.0, 1.0], [0.5, 0.0, 2.0], [2.0, 0.0, 0.0]]], dtype=torch.float64
    )  # fmt: skip
    boxes = torch.tensor(
        [[[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]],
         [[0.5, 0.5, 0.5, 0.5]] * 3], dtype=torch.float64
    )  # fmt: skip
    targets = [_t([1, 0], [[0.3, 0.6, 0.1, 0.1], [0.5, 0.5, 0.2, 0.4]]), _t([], [])]
    targets[1]["boxes"] = targets[1]["boxes"].view(0, 4)
    indices = [(torch.tensor([0, 1]), torch.tensor([1, 0])), (torch.tensor([]).long(),) * 2]
    eos = 0.1
    out = hungarian_loss(logits, boxes, targets, indices, num_boxes=2.0, eos_coef=eos)
    assert float(out["loss_bbox"]) == 0.0 and abs(float(out["loss_giou"])) < 1e-12
    rows = logits.tolist()
    # (query, target class, weight): matched queries weigh 1, the rest are no-object (index 2)
    terms = [(rows[0][0], 0, 1.0), (rows[0][1], 1, 1.0), (rows[0][2], 2, eos),
             (rows[1][0], 2, eos), (rows[1][1], 2, eos), (rows[1][2], 2, eos)]  # fmt: skip
    expected = sum(w * _ce(z, c) for z, c, w in terms) / sum(w for _, _, w in terms)
    assert float(out["loss_ce"]) == pytest.approx(expected, abs=1e-12)


def test_box_losses_sum_over_pairs_and_divide_by_the_number_of_boxes():
    logits = torch.zeros(1, 2, 3, dtype=torch.float64)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]]], dtype=torch.float64)
    # target 0 is query 0 shifted by 0.1 in x; target 1 is query 1 twice as wide
    targets = [_t([0, 1], [[0.6, 0.5, 0.2, 0.2], [0.2, 0.2, 0.4, 0.2]])]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    out = hungarian_loss(logits, boxes, targets, indices, num_boxes=4.0)
    assert float(out["loss_bbox"]) == pytest.approx((0.1 + 0.2) / 4, abs=1e-12)
    # shifted: overlap 0.1*0.2, union 0.06, hull 0.3*0.2 -> 1/3; nested: IoU 1/2, hull = union
    assert float(out["loss_giou"]) == pytest.approx(((1 - 1 / 3) + (1 - 1 / 2)) / 4, abs=1e-12)
    assert float(out["loss_ce"]) == pytest.approx(math.log(3), abs=1e-12)  # uniform logits


def _layers(seed: int, layers: int = 3, q: int = 5, k: int = 2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, 2, q, k + 1, generator=g, dtype=torch.float64)
    boxes = torch.cat(
        [0.3 + 0.4 * torch.rand(layers, 2, q, 2, generator=g, dtype=torch.float64),
         0.1 + 0.2 * torch.rand(layers, 2, q, 2, generator=g, dtype=torch.float64)], -1
    )  # fmt: skip
    targets = [
        _t([0, 1, 1], [[0.4, 0.4, 0.2, 0.2], [0.6, 0.5, 0.1, 0.3], [0.5, 0.6, 0.2, 0.1]]),
        _t([1], [[0.5, 0.5, 0.3, 0.3]]),
    ]
    return logits, boxes, targets


def test_set_criterion_matches_each_layer_and_weights_the_terms():
    logits, boxes, targets = _layers(0)
    matcher = HungarianMatcher()
    out = set_criterion(logits, boxes, targets, matcher, 0.1, 1.0, 5.0, 2.0, aux_loss=True)
    names = {f"loss_{t}{s}" for t in ("ce", "bbox", "giou") for s in ("", "_0", "_1")}
    assert set(out) == names
    for layer, suffix in ((0, "_0"), (1, "_1"), (2, "")):
        idx = matcher(logits[layer], boxes[layer], targets)
        ref = hungarian_loss(logits[layer], boxes[layer], targets, idx, 4.0, 0.1)
        torch.testing.assert_close(out[f"loss_ce{suffix}"], ref["loss_ce"])
        torch.testing.assert_close(out[f"loss_bbox{suffix}"], 5.0 * ref["loss_bbox"])
        torch.testing.assert_close(out[f"loss_giou{suffix}"], 2.0 * ref["loss_giou"])
    last = set_criterion(logits, boxes, targets, matcher, aux_loss=False)
    assert set(last) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert all(torch.equal(last[k], out[k]) for k in last)
    one = set_criterion(logits[-1], boxes[-1], targets, matcher, aux_loss=True)
    assert all(torch.equal(one[k], out[k]) for k in last)


def test_eos_coef_weights_the_no_object_class():
    logits, boxes, targets = _layers(1, layers=1)
    matcher = HungarianMatcher()
    idx = matcher(logits[0], boxes[0], targets)
    a = hungarian_loss(logits[0], boxes[0], targets, idx, 4.0, eos_coef=1.0)["loss_ce"]
    target = torch.full((2, 5), 2)
    for b, (src, tgt) in enumerate(idx):
        target[b, src] = targets[b]["labels"][tgt]
    unweighted = torch.nn.functional.cross_entropy(logits[0].reshape(10, 3), target.view(-1))
    torch.testing.assert_close(a, unweighted)
    c = hungarian_loss(logits[0], boxes[0], targets, idx, 4.0, eos_coef=0.1)["loss_ce"]
    ce = torch.nn.functional.cross_entropy(
        logits[0].reshape(10, 3), target.view(-1), reduction="none"
    )
    w = torch.where(target.view(-1) == 2, 0.1, 1.0).double()
    torch.testing.assert_close(c, (w * ce).sum() / w.sum())


def test_module_equals_function_gradients_and_no_targets():
    logits, boxes, targets = _layers(2)
    logits.requires_grad_(True)
    boxes.requires_grad_(True)
    crit = SetCriterion(HungarianMatcher(), eos_coef=0.2, bbox_weight=3.0)
    out = crit(logits, boxes, targets)
    ref = set_criterion(logits, boxes, targets, HungarianMatcher(), eos_coef=0.2, bbox_weight=3.0)
    assert all(torch.equal(out[k], ref[k]) for k in ref)
    sum(out.values()).backward()
    assert logits.grad.abs().sum() > 0 and boxes.grad.abs().sum() > 0
    empty = [_t([], []), _t([], [])]
    for t in empty:
        t["boxes"] = t["boxes"].view(0, 4)
    none = crit(logits.detach(), boxes.detach(), empty)
    assert float(none["loss_bbox"]) == 0.0 and float(none["loss_giou"]) == 0.0
    # every query is no-object: the weights cancel in the weighted mean
    ce = torch.nn.functional.cross_entropy(logits[-1].detach().reshape(10, 3), torch.full((10,), 2))
    torch.testing.assert_close(none["loss_ce"], ce)


def test_bad_input():
    logits, boxes, targets = _layers(3)
    with pytest.raises(ConfigError, match="eos_coef"):
        SetCriterion(HungarianMatcher(), eos_coef=0.0)
    with pytest.raises(ConfigError, match="giou_weight"):
        SetCriterion(HungarianMatcher(), giou_weight=-1.0)
    with pytest.raises(ShapeError, match="set_criterion"):
        set_criterion(logits, boxes[..., :3], targets, HungarianMatcher())
    with pytest.raises(ShapeError, match="2 images but 1 targets"):
        hungarian_loss(logits[0], boxes[0], targets[:1], [], 1.0)


def test_gradcheck_float64():
    logits, boxes, targets = _layers(4, layers=1)
    idx = HungarianMatcher()(logits[0], boxes[0], targets)

    def f(z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(hungarian_loss(z, b, targets, idx, 4.0, 0.1).values())

    z = logits[0].clone().requires_grad_(True)
    b = boxes[0].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z, b))
    g = torch.Generator().manual_seed(5)
    a1, a2 = _xyxy(3, g).requires_grad_(True), _xyxy(2, g).requires_grad_(True)
    assert torch.autograd.gradcheck(generalized_box_iou, (a1, a2))
