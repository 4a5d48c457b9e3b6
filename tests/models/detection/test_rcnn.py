"""R-CNN: warped crops with context, fine-tuning losses and sampling, a tiny overfit, the SVM and
box-regression stage (fitted buffers, checkpoint round trip), options."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pytest
import torch
from torch import Tensor
from torchvision.ops import box_iou, roi_align

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.detection import DETECTORS, rcnn
from visrep.models.detection.rcnn import class_ious, ridge_regressor, warp_regions
from visrep.models.detection.rcnn_svm import SVMTrainer
from visrep.models.detection.regions import clean_proposals

ENC = partial(small_cnn, channels=(8, 16))


def scene(seed: int) -> tuple[Tensor, dict[str, Tensor]]:
    """A normalised 40x48 image with a class-0 square (channel 0 up) and a class-1 square
    (channel 1 up) at seeded places, its target and proposals (jittered boxes, random boxes)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(3, 40, 48, generator=g) * 0.1
    x0, y0 = (int(v) for v in torch.randint(0, 8, (2,), generator=g))
    x1, y1 = (int(v) for v in torch.randint(24, 30, (2,), generator=g)) if seed % 2 else (28, 14)
    boxes = torch.tensor(
        [[x0, y0, x0 + 16, y0 + 16], [x1, y1 - 8, x1 + 16, y1 + 8]], dtype=torch.float32
    )
    for c, (a, b, cc, d) in enumerate(boxes.long().tolist()):
        img[c, b:d, a:cc] += 2.0
    jitter = boxes.repeat(8, 1) + torch.randint(-3, 4, (16, 4), generator=g)
    xy = torch.rand(30, 2, generator=g) * torch.tensor([38.0, 30.0])
    rand = torch.cat([xy, xy + 6 + torch.rand(30, 2, generator=g) * 16], 1)
    proposals = clean_proposals(torch.cat([jitter, rand]), (40, 48))
    return img, {"boxes": boxes, "labels": torch.tensor([0, 1]), "proposals": proposals}


def tiny(**kw: object) -> rcnn:
    torch.manual_seed(0)
    opts = {"warp_size": 16, "context_padding": 2, "batch_fg": 8, "batch_bg": 24, **kw}
    return rcnn(3, 2, backbone=ENC, **opts)  # type: ignore[arg-type]


def batches_of(scenes: list[tuple[Tensor, dict[str, Tensor]]], size: int = 2):
    def batches() -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]]]]:
        for i in range(0, len(scenes), size):
            part = scenes[i : i + size]
            yield [s[0] for s in part], [s[1] for s in part]

    return batches


def test_warp_keeps_the_box_in_the_centre_with_context() -> None:
    img = torch.zeros(1, 1, 40, 40)
    img[0, 0, 10:30, 10:30] = 1.0
    rois = torch.tensor([[0.0, 10, 10, 30, 30]])
    crop = warp_regions(img, rois, 16, 4)[0, 0]
    # the box fills the central 8x8 of 16x16 (its edge bins average a little of the outside);
    # the 4-pixel border is the context around it
    assert torch.allclose(crop[5:11, 5:11], torch.ones(6, 6), atol=1e-6)
    assert crop[4:12, 4:12].min() > 0.9 and crop[3, 3] < 0.1
    assert crop[:3].abs().max() < 1e-6 and crop[:, 13:].abs().max() < 1e-6
    # without padding it is RoIAlign of the box itself; outside the image it is zero (mean)
    plain = warp_regions(img, rois, 16, 0)
    ref = roi_align(img, rois, 16, 1.0, sampling_ratio=0, aligned=True)
    assert torch.allclose(plain, ref)
    outside = warp_regions(img, torch.tensor([[0.0, -30, -30, -10, -10]]), 8, 0)
    assert outside.abs().max() == 0


def test_class_ious_match_brute_force() -> None:
    p = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [30, 30, 40, 40]])
    gt = torch.tensor([[0.0, 0, 10, 10], [4, 4, 16, 16], [31, 31, 40, 40]])
    labels = torch.tensor([1, 1, 0])
    got = class_ious(p, gt, labels, 3)
    iou = box_iou(p, gt)
    ref = torch.stack(
        [
            iou[:, labels == c].max(1).values if (labels == c).any() else torch.zeros(3)
            for c in range(3)
        ],
        1,
    )
    assert torch.allclose(got, ref)
    assert class_ious(p, torch.zeros(0, 4), torch.zeros(0), 3).abs().sum() == 0


def test_ridge_regressor_recovers_a_linear_map_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ rng.normal(size=(5, 4)) + 0.3
    beta, mu, t_inv = ridge_regressor(x, y, 1e-6)
    pred = np.concatenate([x, np.ones((200, 1))], 1) @ beta @ t_inv + mu
    assert np.allclose(pred, y, atol=1e-4)
    beta_big, mu_big, t_big = ridge_regressor(x, y, 1e6)
    pred_big = np.concatenate([x, np.ones((200, 1))], 1) @ beta_big @ t_big + mu_big
    assert np.allclose(pred_big, y.mean(0), atol=0.05)  # strong ridge: the mean target


def test_finetuning_loss_samples_the_papers_batch() -> None:
    m = tiny(batch_fg=4, batch_bg=12)
    seen = {}
    m.classifier.register_forward_hook(lambda mod, a, out: seen.update(n=len(out)))
    im, t = scene(0)
    losses = m([im, scene(1)[0]], [t, scene(1)[1]])
    assert set(losses) == {"loss_classifier"} and torch.isfinite(losses["loss_classifier"])
    assert seen["n"] == 16  # 4 foreground + 12 background windows over the step's images
    losses["loss_classifier"].backward()
    assert all(p.grad is not None for p in m.encoder.parameters())


def test_tiny_overfit_makes_the_loss_drop() -> None:
    m = tiny().train()
    images, targets = zip(*(scene(i) for i in range(2)), strict=True)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = m(list(images), list(targets))["loss_classifier"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.4 * np.mean(losses[:3])
    # before the SVMs: the fine-tuned softmax scores, the proposals themselves as boxes
    d = m.eval()([images[0]], proposals=[targets[0]["proposals"]])[0]
    assert set(d) == {"boxes", "scores", "labels"} and (d["scores"] <= 1).all()
    props = {tuple(b) for b in targets[0]["proposals"].tolist()}
    assert all(tuple(b) in props for b in d["boxes"].tolist())


def test_fit_after_training_fills_buffers_that_survive_a_round_trip() -> None:
    m = tiny(svm_retrain_limit=20, bbox_lambda=1.0)
    scenes = [scene(i) for i in range(6)]
    assert not bool(m.fitted)
    m.train()
    with torch.inference_mode():  # as Lightning's validation loop runs it
        m.fit_after_training(batches_of(scenes))
    assert m.training  # the mode is restored
    assert bool(m.fitted) and m.svm_weight.abs().sum() > 0
    assert m.bbox_beta.abs().sum() > 0 and float(m.feature_scale) > 0
    fresh = tiny()
    fresh.load_state_dict(m.state_dict())
    assert bool(fresh.fitted)
    im, t = scenes[0]
    a = m.eval()([im], proposals=[t["proposals"]])[0]
    b = fresh.eval()([im], proposals=[t["proposals"]])[0]
    for k in a:
        assert torch.equal(a[k], b[k])
    # the paper's comparison: the fine-tuned softmax on the same fitted model
    fresh.scorer = "softmax"
    soft = fresh([im], proposals=[t["proposals"]])[0]
    assert (soft["scores"] > 0).all() and (soft["scores"] <= 1).all()
    assert not torch.equal(soft["scores"], a["scores"])


def test_svms_and_regressors_find_the_training_objects() -> None:
    m = tiny(bbox_lambda=1.0)
    scenes = [scene(i) for i in range(6)]
    stats = m.fit_svms(batches_of(scenes))
    assert stats["positives"] == [6, 6] and min(stats["negatives"]) > 0
    assert stats["retrains"] >= 2 and min(stats["regression_samples"]) > 6
    hits = 0
    for im, t in scenes:
        d = m.eval()([im], proposals=[t["proposals"]])[0]
        for c in (0, 1):
            best = d["boxes"][d["labels"] == c][:1]
            if len(best) and box_iou(best, t["boxes"][c : c + 1]).item() >= 0.5:
                hits += 1
    assert hits >= 10  # of 12 objects, the best-scored box of its class is a hit
    # box regression moves proposals near an object closer to it
    im, t = scenes[0]
    near = t["boxes"][:1] + torch.tensor([[2.0, -2, 3, 1]])
    x = m.region_features(im[None], torch.cat([torch.zeros(1, 1), near], 1)) * m.feature_scale
    moved = m.regress(x, near)[:, 0]
    assert box_iou(moved, t["boxes"][:1]) > box_iou(near, t["boxes"][:1])


def test_svm_trainer_mines_hard_negatives_and_evicts_easy_ones() -> None:
    rng = np.random.default_rng(0)
    tr = SVMTrainer(1, 1.0, 2.0, 10.0, -1.0001, -1.2, retrain_limit=5, max_iter=5000)
    tr.add_positives(rng.normal(3, 0.5, (20, 2)), np.zeros(20, np.int64))
    neg = np.ones((40, 1), bool)
    tr.start(1.0, rng.normal(-3, 0.5, (40, 2)), neg)
    assert tr.retrains == 1 and len(tr.neg[0]) < 40  # easy negatives evicted
    # hard negatives (near the positives) are cached, easy ones are not
    before = len(tr.neg[0])
    tr.mine(
        np.concatenate([rng.normal(2, 0.3, (10, 2)), rng.normal(-6, 0.3, (10, 2))]),
        np.ones((20, 1), bool),
    )
    assert tr.retrains == 2  # 10 > retrain_limit added: retrained
    assert len(tr.neg[0]) > before - 1
    tr.finish()
    w, b = tr.weights()
    assert (np.array([[3.0, 3.0]]) @ w.T + b > 0).all() and (
        np.array([[-3.0, -3.0]]) @ w.T + b < 0
    ).all()


def test_registry_and_bad_options() -> None:
    m = DETECTORS.build(
        {"class_path": "rcnn", "init_args": {"backbone": "small_cnn", "warp_size": 48}}, 3, 3
    )
    assert isinstance(m, rcnn) and m.needs_proposals and m.svm_weight.shape[0] == 3
    for bad in (
        {"context_padding": 8},  # = warp_size / 2
        {"svm_evict_thresh": 0.0},
        {"fg_iou": 2.0},
        {"batch_fg": 0},
        {"svm_c": -1.0},
        {"scorer": "both"},
    ):
        with pytest.raises(ConfigError):
            tiny(**bad)
    im, t = scene(0)
    with pytest.raises(ConfigError, match="proposals"):
        tiny()([im])
    with pytest.raises(ConfigError, match="proposals"):
        tiny()([im], [{"boxes": t["boxes"], "labels": t["labels"]}])
    with pytest.raises(ShapeError):
        tiny()([im[None]], proposals=[t["proposals"]])
    with pytest.raises(ConfigError, match="not fitted"):
        tiny(scorer="svm").eval()([im], proposals=[t["proposals"]])
    with pytest.raises(ConfigError, match="no proposals"):
        tiny().fit_svms(batches_of([]))
