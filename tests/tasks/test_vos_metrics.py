"""DAVIS J / F / statistics (issue 16): analytic values, a dense brute-force F, and parity with
the official code (vos-benchmark, test-only) to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F_

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.tasks.vos_metrics import (
    aggregate_scores,
    boundary_map,
    boundary_radius,
    contour_accuracy,
    evaluate_sequence,
    region_similarity,
    sequence_statistics,
)


def _square(h: int, w: int, y: int, x: int, k: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y : y + k, x : x + k] = True
    return m


def _blobs(g: torch.Generator, n: int, h: int, w: int, cells: int = 6) -> torch.Tensor:
    """Smooth random blobs: thresholded bilinear upsampling of coarse noise."""
    noise = torch.rand(n, 1, cells, cells, generator=g)
    up = F_.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return up > 0.55


def _fixtures(h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (pred, gt) of one size: blobs and their shifts, thin lines, single pixels at the
    corners and borders, a checkerboard, empty and full masks."""
    g = torch.Generator().manual_seed(seed)
    blobs = _blobs(g, 6, h, w)
    preds, gts = [], []
    for i in range(0, 6, 2):  # independent blobs, and a blob against its shifted self
        preds += [blobs[i], blobs[i].roll((2, -3), dims=(0, 1))]
        gts += [blobs[i + 1], blobs[i]]
    zero, full = torch.zeros(h, w, dtype=torch.bool), torch.ones(h, w, dtype=torch.bool)
    line_h, line_v = zero.clone(), zero.clone()
    line_h[h // 2, 1:-1] = True
    line_v[:, w // 3] = True
    diag = torch.eye(h, w, dtype=torch.bool)
    checker = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0
    corners = []
    for y, x in ((0, 0), (h - 1, w - 1), (h - 1, 0), (0, w - 1), (h // 2, w - 1), (h - 1, w // 2)):
        c = zero.clone()
        c[y, x] = True
        corners.append(c)
    preds += [zero, blobs[0], zero, full, full, line_h, line_v, diag, checker, *corners[:3]]
    gts += [blobs[0], zero, zero, full, blobs[1], line_h.roll(1, 0), blobs[2], diag, ~checker]
    gts += corners[3:]
    preds += [blobs[3] | line_h, corners[0], checker]
    gts += [blobs[3], corners[0], checker]
    return torch.stack(preds), torch.stack(gts)


def _dense_f(pred: torch.Tensor, gt: torch.Tensor, r: int) -> torch.Tensor:
    """Brute force F: boundaries dilated by a full disk convolution."""
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    disk = ((d[:, None] ** 2 + d[None, :] ** 2) <= r * r).double()[None, None]

    def dil(b: torch.Tensor) -> torch.Tensor:
        return F_.conv2d(b.double()[:, None], disk, padding=r)[:, 0] > 0

    fb, gb = boundary_map(pred), boundary_map(gt)
    n_fg, n_gt = fb.sum((-2, -1)).double(), gb.sum((-2, -1)).double()
    p = (fb & dil(gb)).sum((-2, -1)) / n_fg
    rc = (gb & dil(fb)).sum((-2, -1)) / n_gt
    p = torch.where(n_fg == 0, 1.0, torch.where(n_gt == 0, 0.0, p))
    rc = torch.where(n_gt == 0, 1.0, torch.where(n_fg == 0, 0.0, rc))
    s = p + rc
    return torch.where(s == 0, 0.0, 2 * p * rc / torch.where(s == 0, 1.0, s))


# ---------------------------------------------------------------- analytic, no reference needed
def test_region_similarity_squares_and_empty():
    a, b = _square(30, 40, 5, 5, 10), _square(30, 40, 5, 10, 10)
    assert region_similarity(a, b).item() == pytest.approx(50 / 150, abs=1e-15)
    z = torch.zeros(30, 40, dtype=torch.bool)
    out = region_similarity(torch.stack([z, a, z, a]), torch.stack([z, z, a, a]))
    assert out.dtype == torch.float64 and out.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_boundary_map_counts_and_border_rules():
    assert int(boundary_map(_square(40, 40, 10, 12, 10)).sum()) == 40  # 4k for a k x k square
    c = torch.zeros(5, 6, dtype=torch.bool)
    c[-1, -1] = True  # bottom-right pixel: never itself on the boundary
    assert boundary_map(c).nonzero().tolist() == [[3, 4], [3, 5], [4, 4]]
    full = torch.ones(2, 5, 6, dtype=torch.bool)
    assert not boundary_map(full).any() and boundary_map(full).shape == (2, 5, 6)


def test_contour_accuracy_analytic():
    h = w = 100  # r = ceil(0.008 * sqrt(2) * 100) = 2
    assert boundary_radius(h, w) == 2 and boundary_radius(480, 854) == 8
    sq = _square(h, w, 30, 30, 10)
    far = _square(h, w, 70, 75, 10)
    blob = _square(h, w, 70, 10, 4)
    z = torch.zeros(h, w, dtype=torch.bool)
    pred = torch.stack([sq, sq.roll(2, 1), sq.roll(3, 1), far, sq | blob, z, sq, z])
    gt = torch.stack([sq, sq, sq, sq, sq, sq, z, z])
    f = contour_accuracy(pred, gt)
    assert f[0].item() == 1.0 and f[1].item() == 1.0  # identical; shifted within the tolerance
    assert 0 < f[2].item() < 1  # 3 px: only the top and bottom edges still match
    assert f[3].item() == 0.0  # beyond the tolerance everywhere
    assert f[4].item() == pytest.approx(5 / 6, abs=1e-15)  # P = 40 / 56, R = 1
    assert f[5:].tolist() == [0.0, 0.0, 1.0]  # empty pred / empty gt / both empty
    # bound_th >= 1 is the radius itself: a 3 px shift is then within it
    assert contour_accuracy(pred[2], gt[2], bound_th=3).item() == 1.0


@pytest.mark.parametrize("hw,bound_th", [((37, 53), 0.008), ((64, 48), 0.05), ((25, 31), 4)])
def test_contour_accuracy_equals_dense_dilation(hw, bound_th):
    pred, gt = _fixtures(*hw, seed=hw[0])
    r = boundary_radius(*hw, bound_th)
    torch.testing.assert_close(contour_accuracy(pred, gt, bound_th), _dense_f(pred, gt, r))
    # leading dimensions are kept
    assert contour_accuracy(pred.view(3, -1, *hw), gt.view(3, -1, *hw), bound_th).shape[0] == 3


def test_sequence_statistics_hand_values():
    v = torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1, 0.6, 0.8, 0.2, 0.4, 0.0], dtype=torch.float64)
    s = sequence_statistics(v)
    assert s["mean"].item() == pytest.approx(0.45, abs=1e-12)
    assert s["recall"].item() == pytest.approx(0.4, abs=1e-12)  # 0.5 itself is not above
    # T = 10: round(1, 3.25, 5.5, 7.75, 10) - 1 = 0, 2, 5, 7, 9 -> v[0:3] and v[7:10]
    assert s["decay"].item() == pytest.approx(0.7 - 0.2, abs=1e-12)
    cases = {  # T -> decay of [1, 2, ..., T]: first quarter minus last
        1: 0.0,  # one bin, [v0] - [v0]
        2: 1 - 2,  # ids 0 0 1 1 1: [v0] - [v1]
        3: 1.5 - 3,  # ids 0 1 1 2 2: mean(v0, v1) - [v2]
        5: 1.5 - 4.5,  # ids 0 1 2 3 4: mean(v0, v1) - mean(v3, v4)
    }
    for t, d in cases.items():
        assert sequence_statistics(torch.arange(1.0, t + 1))["decay"].item() == d
    batch = sequence_statistics(torch.stack([v, 1 - v, torch.full_like(v, float("nan"))]))
    assert batch["mean"].shape == (3,) and batch["mean"][1].item() == pytest.approx(0.55)
    assert math.isnan(batch["mean"][2].item()) and batch["recall"][2].item() == 0.0
    v_nan = v.clone()
    v_nan[4] = float("nan")  # NaN frames are left out of the mean
    assert sequence_statistics(v_nan)["mean"].item() == pytest.approx((4.5 - 0.1) / 9)


def test_evaluate_sequence_protocol_and_aggregate():
    t, h, w = 6, 40, 50
    gt = torch.zeros(t, h, w, dtype=torch.uint8)
    gt[:, 5:15, 5:15] = 1
    gt[:, 20:30, 25:40] = 2
    gt[:, 0:3, 45:50] = 255  # void: background for the evaluation
    pred = gt.clone()
    pred[pred == 255] = 0
    pred[0] = 0  # the first and last frames are not evaluated
    pred[-1] = 2
    pred[1:-1][pred[1:-1] == 2] = 0  # object 2 lost in every evaluated frame
    s = evaluate_sequence(pred, gt)
    assert s.object_ids.tolist() == [1, 2] and s.frames.tolist() == [1, 2, 3, 4]
    assert s.j.shape == s.f.shape == (2, 4)
    assert s.j_stats["mean"].tolist() == [1.0, 0.0] and s.f_stats["mean"].tolist() == [1.0, 0.0]
    assert s.j_stats["recall"].tolist() == [1.0, 0.0] and s.jf_mean.tolist() == [1.0, 0.0]
    full = evaluate_sequence(pred, gt, skip_first_last=False)
    assert full.frames.tolist() == list(range(6)) and full.j_stats["mean"][0].item() < 1
    # an id below the largest is an object even when absent: its empty masks score 1
    gap = gt.clone()
    gap[gap == 1] = 3
    s3 = evaluate_sequence(gap.masked_fill(gap == 255, 0), gap)
    assert s3.object_ids.tolist() == [1, 2, 3] and s3.j_stats["mean"].tolist() == [1.0] * 3
    agg = aggregate_scores([s, s3])
    assert agg["j_mean"] == pytest.approx(4 / 5) and agg["f_mean"] == pytest.approx(4 / 5)
    assert agg["jf_mean"] == pytest.approx(4 / 5) and set(agg) == {
        "jf_mean", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay"
    }  # fmt: skip


def test_bad_input_raises():
    a = torch.zeros(5, 8, 8, dtype=torch.long)
    with pytest.raises(ShapeError, match="pred and gt"):
        region_similarity(a[0], a[0, :4])
    with pytest.raises(ShapeError, match="integer ids"):
        evaluate_sequence(a.float(), a)
    with pytest.raises(ShapeError, match="at least 3 frames"):
        evaluate_sequence(a[:2], a[:2])
    b = a.clone()
    b[2, 0, 0] = 4
    with pytest.raises(DataError, match="object id 4"):
        evaluate_sequence(b, a)
    with pytest.raises(ConfigError, match="bound_th"):
        contour_accuracy(a[0], a[0], bound_th=2.5)
    with pytest.raises(ConfigError, match="bound_th"):
        boundary_radius(8, 8, -0.1)
    with pytest.raises(DataError, match="no objects"):
        aggregate_scores([])


# ---------------------------------------------------------------- parity with the official code
def _official_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """vos-benchmark's per-frame J and F of object 1 (its evaluator only scores objects seen
    so far, so a primer frame holding object 1 comes first and is dropped)."""
    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    ev = evaluator.Evaluator(boundary=0.008)
    primer = np.zeros(pred.shape[-2:], dtype=np.uint8)
    primer[0, 0] = 1
    ev.feed_frame(primer, primer)
    for p, g in zip(pred.numpy().astype(np.uint8), gt.numpy().astype(np.uint8), strict=True):
        ev.feed_frame(p, g)
    return np.array(ev.object_iou[1][1:]), np.array(ev.boundary_f[1][1:])


@pytest.mark.parametrize("hw", [(37, 53), (64, 48), (120, 90), (480, 854)])
def test_j_and_f_equal_official(hw):
    pred, gt = _fixtures(*hw, seed=sum(hw))
    if hw == (480, 854):  # once at DAVIS resolution, a few frames
        pred, gt = pred[:6], gt[:6]
    j_ref, f_ref = _official_per_frame(pred, gt)
    np.testing.assert_allclose(region_similarity(pred, gt).numpy(), j_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(contour_accuracy(pred, gt).numpy(), f_ref, rtol=0, atol=1e-6)


def test_boundary_map_equals_official_seg2bmap():
    utils = pytest.importorskip("vos_benchmark.utils")
    pred, gt = _fixtures(33, 47, seed=3)
    masks = torch.cat([pred, gt])
    ref = np.stack([utils._seg2bmap(m.numpy().copy()) for m in masks])
    assert np.array_equal(boundary_map(masks).numpy(), ref)


def test_evaluate_sequence_equals_official_per_object(tmp_path):
    benchmark = pytest.importorskip("vos_benchmark.benchmark")
    from PIL import Image

    t, h, w = 7, 60, 90
    g = torch.Generator().manual_seed(7)
    gt = torch.zeros(t, h, w, dtype=torch.uint8)
    for k in (1, 2, 3):  # three moving objects, later ids drawn over earlier ones
        blob = _blobs(g, 1, h, w, cells=4)[0] & _square(h, w, 5 + 10 * k, 10 * k, 30)
        blob[8 + 10 * k, 5 + 10 * k] = True  # never empty
        for i in range(t):
            gt[i][blob.roll((0, 2 * i), dims=(0, 1))] = k
    pred = gt.roll(1, dims=2).clone()
    pred[3][pred[3] == 2] = 0  # object 2 lost in one frame
    pred[4][_square(h, w, 40, 60, 12)] = 3  # a false positive
    pred[0] = 0
    for root, masks in (("gt", gt), ("pred", pred)):
        (tmp_path / root / "seq").mkdir(parents=True)
        for i, m in enumerate(masks.numpy()):
            Image.fromarray(m, mode="L").save(tmp_path / root / "seq" / f"{i:05d}.png")
    _, iou, boundary_f = benchmark.VideoEvaluator(str(tmp_path / "gt"), str(tmp_path / "pred"))(
        "seq"
    )
    s = evaluate_sequence(pred, gt)
    assert s.object_ids.tolist() == sorted(iou) == [1, 2, 3]
    for row, k in enumerate(s.object_ids.tolist()):
        assert abs(s.j_stats["mean"][row].item() * 100 - iou[k]) < 1e-6
        assert abs(s.f_stats["mean"][row].item() * 100 - boundary_f[k]) < 1e-6
    assert s.j_stats["mean"][1].item() < 1 and s.f_stats["mean"][2].item() < 1
