"""DETR's Hungarian matcher against brute force over every assignment (eq. 1)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert
from torchvision.ops import generalized_box_iou as tv_giou

from visrep.errors import ConfigError, ShapeError
from visrep.models.detection.matcher import (
    HungarianMatcher,
    hungarian_match,
    linear_assignment,
    match_cost,
)


def brute_force(cost: np.ndarray) -> tuple[float, set[tuple[int, int]]]:
    """The lowest total cost over every one-to-one assignment of min(R, C) pairs."""
    r, c = cost.shape
    if 0 in cost.shape:
        return 0.0, set()
    best, pairs = np.inf, set()
    if r >= c:  # every column gets a distinct row
        for rows in itertools.permutations(range(r), c):
            total = cost[list(rows), range(c)].sum()
            if total < best:
                best, pairs = total, set(zip(rows, range(c), strict=True))
    else:
        for cols in itertools.permutations(range(c), r):
            total = cost[range(r), list(cols)].sum()
            if total < best:
                best, pairs = total, set(zip(range(r), cols, strict=True))
    return float(best), pairs


SHAPES = [(1, 1), (3, 3), (5, 2), (6, 6), (7, 3), (2, 5), (4, 6), (4, 0), (0, 3), (6, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_assignment_equals_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.normal(size=shape)
        rows, cols = linear_assignment(torch.from_numpy(cost))
        best, pairs = brute_force(cost)
        assert len(rows) == len(cols) == min(shape)
        assert rows.dtype == torch.long and bool((rows[1:] > rows[:-1]).all())
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows.numpy(), cols.numpy()].sum() == pytest.approx(best, abs=1e-12)
        assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == pairs  # ties: measure 0


def test_linear_assignment_with_integer_costs_and_ties_reaches_the_optimum():
    rng = np.random.default_rng(3)
    cost = rng.integers(0, 3, size=(6, 4)).astype(float)  # many ties
    rows, cols = linear_assignment(cost)
    assert cost[rows.numpy(), cols.numpy()].sum() == brute_force(cost)[0]


def test_linear_assignment_bad_input():
    with pytest.raises(ShapeError, match="R, C"):
        linear_assignment(torch.zeros(2, 2, 2))
    with pytest.raises(ShapeError, match="NaN"):
        linear_assignment(torch.tensor([[0.0, float("nan")]]))


def _random_case(seed: int, sizes: tuple[int, ...], q: int = 6, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(len(sizes), q, k + 1, generator=g, dtype=torch.float64)
    boxes = torch.cat(
        [0.2 + 0.6 * torch.rand(len(sizes), q, 2, generator=g, dtype=torch.float64),
         0.05 + 0.3 * torch.rand(len(sizes), q, 2, generator=g, dtype=torch.float64)], -1
    )  # fmt: skip
    targets = []
    for m in sizes:
        tb = torch.cat(
            [0.2 + 0.6 * torch.rand(m, 2, generator=g, dtype=torch.float64),
             0.05 + 0.3 * torch.rand(m, 2, generator=g, dtype=torch.float64)], -1
        )  # fmt: skip
        targets.append({"labels": torch.randint(0, k, (m,), generator=g), "boxes": tb})
    return logits, boxes, targets


def reference_cost(logits, boxes, target, wc=1.0, wb=5.0, wg=2.0) -> np.ndarray:
    """The pair cost of the paper written out one pair at a time (torchvision's GIoU)."""
    prob = logits.softmax(-1)
    q, m = len(boxes), len(target["labels"])
    out = np.zeros((q, m))
    for i in range(q):
        for j in range(m):
            pb, tb = boxes[i], target["boxes"][j]
            giou = tv_giou(
                box_convert(pb[None], "cxcywh", "xyxy"), box_convert(tb[None], "cxcywh", "xyxy")
            )[0, 0]
            out[i, j] = (
                -wc * prob[i, target["labels"][j]] + wb * (pb - tb).abs().sum() - wg * giou
            ).item()
    return out


def test_match_cost_equals_the_pairwise_formula():
    logits, boxes, targets = _random_case(0, (3, 0, 5))
    cost = match_cost(logits, boxes, targets, 1.5, 4.0, 2.5)
    assert cost.shape == (3, 6, 5)
    for b, t in enumerate(targets):
        ref = reference_cost(logits[b], boxes[b], t, 1.5, 4.0, 2.5)
        np.testing.assert_allclose(cost[b, :, : len(t["labels"])].numpy(), ref, atol=1e-12)
    assert torch.isfinite(cost).all()  # the padding columns too


@pytest.mark.parametrize("seed", range(4))
def test_hungarian_match_equals_brute_force_per_image(seed):
    sizes = (4, 0, 6, 1)  # with an image without objects and one with M = Q
    logits, boxes, targets = _random_case(seed, sizes)
    out = hungarian_match(logits, boxes, targets)
    assert len(out) == len(sizes)
    for (src, tgt), t, b in zip(out, targets, range(len(sizes)), strict=True):
        ref = reference_cost(logits[b], boxes[b], t)
        best, pairs = brute_force(ref)
        assert len(src) == len(tgt) == len(t["labels"])
        assert set(zip(src.tolist(), tgt.tolist(), strict=True)) == pairs
        assert ref[src.numpy(), tgt.numpy()].sum() == pytest.approx(best, abs=1e-9)


def test_matching_follows_a_permutation_of_the_targets():
    logits, boxes, targets = _random_case(7, (5,))
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = [{k: v[perm] for k, v in targets[0].items()}]
    (src, tgt), (src_p, tgt_p) = (
        hungarian_match(logits, boxes, targets)[0],
        hungarian_match(logits, boxes, permuted)[0],
    )
    assert torch.equal(src, src_p) and torch.equal(perm[tgt_p], tgt)


def test_weights_select_the_cost_terms():
    # Query 0 has the right box but the wrong class, query 1 the right class but a far box.
    logits = torch.tensor([[[0.0, 6.0, 0.0], [6.0, 0.0, 0.0]]])
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    t = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])}]
    assert hungarian_match(logits, boxes, t, 1.0, 0.0, 0.0)[0][0].tolist() == [1]
    assert hungarian_match(logits, boxes, t, 0.0, 1.0, 0.0)[0][0].tolist() == [0]
    assert hungarian_match(logits, boxes, t, 0.0, 0.0, 1.0)[0][0].tolist() == [0]


def test_module_equals_function_and_bad_options():
    logits, boxes, targets = _random_case(1, (2, 3))
    a = HungarianMatcher(2.0, 1.0, 0.5)(logits, boxes, targets)
    b = hungarian_match(logits, boxes, targets, 2.0, 1.0, 0.5)
    assert all(
        torch.equal(x, y) for p, r in zip(a, b, strict=True) for x, y in zip(p, r, strict=True)
    )
    with pytest.raises(ConfigError, match="cost_bbox"):
        HungarianMatcher(cost_bbox=-1.0)
    with pytest.raises(ConfigError, match="all be 0"):
        HungarianMatcher(0.0, 0.0, 0.0)
    with pytest.raises(ShapeError, match="2 images but 1 targets"):
        hungarian_match(logits, boxes, targets[:1])
    with pytest.raises(ShapeError, match="target 0"):
        hungarian_match(logits, boxes, [{"labels": torch.zeros(2), "boxes": torch.zeros(3, 4)}] * 2)
