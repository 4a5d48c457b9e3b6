"""Fast R-CNN: shapes, RoI sampling and targets, the eq. 15 training losses, a tiny overfit,
resizing, options and the shared region helpers."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import Tensor

from visrep.errors import ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.detection import DETECTORS, fast_rcnn
from visrep.models.detection.regions import (
    batch_images,
    clean_proposals,
    decode_boxes,
    encode_boxes,
    match_proposals,
    per_class_detections,
    sample_rois,
)

ENC = partial(small_cnn, channels=(8, 16))  # stride 4, 16 channels


def scene(seed: int = 0, size: tuple[int, int] = (40, 48)) -> tuple[Tensor, dict[str, Tensor]]:
    """A normalised image with a class-0 square (channel 0 up) and a class-1 square (channel
    1 up), its target and proposals: jittered copies of the boxes and random boxes."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    img = torch.randn(3, h, w, generator=g) * 0.1
    boxes = torch.tensor([[4.0, 4, 20, 20], [26, 16, 44, 36]])
    img[0, 4:20, 4:20] += 2.0
    img[1, 16:36, 26:44] += 2.0
    jitter = boxes.repeat(6, 1) + torch.randint(-3, 4, (12, 4), generator=g)
    xy = torch.rand(20, 2, generator=g) * torch.tensor([w - 10.0, h - 10.0])
    wh = 6 + torch.rand(20, 2, generator=g) * 20
    rand = torch.cat([xy, xy + wh], 1)
    proposals = clean_proposals(torch.cat([jitter, rand]), size)
    return img, {"boxes": boxes, "labels": torch.tensor([0, 1]), "proposals": proposals}


def tiny(**kw: object) -> fast_rcnn:
    torch.manual_seed(0)
    return fast_rcnn(3, 2, backbone=ENC, hidden=32, dropout=0.0, **kw)  # type: ignore[arg-type]


def test_detections_have_the_interface_shapes() -> None:
    m = tiny().eval()
    (im1, t1), (im2, t2) = scene(0), scene(1, (36, 52))
    out = m([im1, im2], proposals=[t1["proposals"], t2["proposals"]])
    assert len(out) == 2
    for d, im in zip(out, (im1, im2), strict=True):
        assert set(d) == {"boxes", "scores", "labels"}
        n = len(d["scores"])
        assert d["boxes"].shape == (n, 4) and d["labels"].shape == (n,)
        assert (
            d["labels"].dtype == torch.long and (d["labels"] >= 0).all() and (d["labels"] < 2).all()
        )
        assert (d["boxes"][:, 2] <= im.shape[-1]).all() and (d["boxes"][:, 3] <= im.shape[-2]).all()
        assert (d["scores"] > 0.05).all() and n <= 100
    empty = m([im1], proposals=[torch.zeros(0, 4)])
    assert empty[0]["boxes"].shape == (0, 4)


def test_training_losses_and_gradients() -> None:
    m = tiny().train()
    im, t = scene()
    losses = m([im, scene(1)[0]], [t, scene(1)[1]])
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert m.head.bbox_pred.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.encoder.parameters())


def test_roi_sampling_and_targets_follow_the_paper() -> None:
    m = tiny(rois_per_image=8, fg_fraction=0.25)
    seen: dict[str, Tensor] = {}

    def record(logits: Tensor, deltas: Tensor, labels: Tensor, targets: Tensor) -> dict:
        seen.update(labels=labels, targets=targets, logits=logits)
        return {"loss": logits.sum()}

    m.loss.forward = record  # type: ignore[method-assign]
    im, t = scene()
    # proposals: exact copies of the boxes (IoU 1) and boxes at IoU 0.2 and 0.05
    props = torch.tensor(
        [[4.0, 4, 20, 20]] * 3 + [[26.0, 16, 44, 36]] * 3 + [[4.0, 4, 20, 8]] * 6
        + [[0.0, 0, 5, 5]] * 6
    )  # fmt: skip
    torch.manual_seed(1)
    m([im], [{**t, "proposals": props}])
    labels, targets = seen["labels"], seen["targets"]
    assert len(labels) == 8
    assert (labels > 0).sum() == 2  # 25% of 8
    assert set(labels[:2].tolist()) <= {1, 2}  # class + 1
    assert (labels[2:] == 0).all()
    assert torch.allclose(targets, torch.zeros_like(targets))  # IoU-1 proposals: t = 0
    # background only from IoU in [0.1, 0.5): the IoU-0.05 boxes never appear
    assert seen["logits"].shape == (8, 3)


def test_box_targets_encode_the_offset() -> None:
    p = torch.tensor([[10.0, 10, 30, 50]])
    g = torch.tensor([[12.0, 5, 32, 45]])
    t = encode_boxes(g, p, (10.0, 10.0, 5.0, 5.0))
    # dx = 2 / 20 = 0.1, dy = -5 / 40, dw = dh = log(1) = 0; weighted by 10, 10, 5, 5
    assert torch.allclose(t, torch.tensor([[1.0, -1.25, 0.0, 0.0]]))
    assert torch.allclose(decode_boxes(t, p, (10.0, 10.0, 5.0, 5.0))[:, 0], g, atol=1e-5)


def test_tiny_overfit_makes_the_loss_drop() -> None:
    m = tiny(rois_per_image=32).train()
    data = [scene(0), scene(1)]
    images, targets = [d[0] for d in data], [d[1] for d in data]
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = sum(m(images, targets).values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first
    det = m.eval()([images[0]], proposals=[targets[0]["proposals"]])[0]
    best = det["labels"][:2].tolist()
    assert sorted(best) == [0, 1]  # both objects found as the top detections


@pytest.mark.parametrize(
    "opts",
    [
        {"roi_op": "align"},
        {"box_loss": "squared", "box_loss_weight": 2.0},
        {"min_size": 64, "max_size": 80},
        {"level": 0, "add_gt_proposals": False, "train_proposals": 10},
    ],
)
def test_options_run(opts: dict) -> None:
    m = tiny(**opts)
    im, t = scene()
    losses = m([im], [t])
    assert all(torch.isfinite(v) for v in losses.values())
    d = m.eval()([im], proposals=[t["proposals"]])[0]
    # boxes are in the input image's pixels whatever the internal resize
    assert (d["boxes"][:, 2] <= 48).all() and (d["boxes"][:, 3] <= 40).all()


def test_resize_scales_boxes_back() -> None:
    m = tiny(min_size=80, max_size=200).eval()
    m.head.bbox_pred.weight.data.zero_()  # no regression: detections are the proposals
    m.head.cls_score.weight.data.zero_()
    m.head.cls_score.bias.data = torch.tensor([0.0, 5.0, 0.0])  # class 0 everywhere
    im, _ = scene()
    box = torch.tensor([[4.0, 4, 20, 20]])
    d = m([im], proposals=[box])[0]
    assert torch.allclose(d["boxes"], box, atol=1e-4) and d["labels"].tolist() == [0]


def test_registry_builds_it() -> None:
    spec = {"class_path": "fast_rcnn", "init_args": {"backbone": "small_cnn", "hidden": 16}}
    m = DETECTORS.build(spec, 3, 4)
    assert isinstance(m, fast_rcnn) and m.needs_proposals and m.head.cls_score.out_features == 5


def test_bad_options_and_inputs() -> None:
    for bad in (
        {"roi_op": "warp"},
        {"fg_iou": 1.5},
        {"bg_iou_low": 0.6},
        {"box_weights": (1.0, 1.0, 1.0)},
        {"level": 7},
        {"box_loss": "l1"},
        {"rois_per_image": 0},
        {"nms_thresh": -0.1},
    ):
        with pytest.raises(ConfigError):
            tiny(**bad)
    m = tiny()
    im, t = scene()
    with pytest.raises(ConfigError, match="proposals"):
        m.eval()([im])
    with pytest.raises(ConfigError, match="proposals"):
        m([im], [{"boxes": t["boxes"], "labels": t["labels"]}])
    with pytest.raises(ShapeError, match="expected \\(3, H, W\\)"):
        m([im[:1]], proposals=[t["proposals"]])
    with pytest.raises(ShapeError, match="one each"):
        m([im], proposals=[t["proposals"]] * 2)
    with pytest.raises(ShapeError, match="\\(P, 4\\)"):
        m([im], proposals=[t["proposals"][:, :3]])


def test_region_helpers() -> None:
    p = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    iou, match = match_proposals(p, torch.tensor([[0.0, 0, 10, 5], [20, 20, 30, 30]]))
    assert iou.tolist() == [0.5, 1.0] and match.tolist() == [0, 1]
    iou0, match0 = match_proposals(p, torch.zeros(0, 4))
    assert iou0.tolist() == [0.0, 0.0] and match0.tolist() == [0, 0]
    torch.manual_seed(0)
    fg, bg = sample_rois(torch.tensor([0.9, 0.6, 0.3, 0.05, 0.2, 0.7]), 0.5, 0.1, 2, 5)
    assert sorted(fg.tolist()) in ([0, 1], [0, 5], [1, 5]) and sorted(bg.tolist()) == [2, 4]
    canvas = batch_images([torch.ones(1, 3, 5), torch.ones(1, 6, 2)], divisible=4)
    assert canvas.shape == (2, 1, 8, 8) and canvas.sum() == 27
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10]], [[1.0, 1, 10, 10], [0, 0, 3, 3]]])
    scores = torch.tensor([[0.9, 0.2], [0.8, 0.01]])
    d = per_class_detections(boxes, scores, (8, 8), 0.05, 0.3, 10)
    # class 0: the two overlapping boxes (IoU 0.77) keep the better; class 1 at 0.2 stays
    assert d["labels"].tolist() == [0, 1] and d["scores"].tolist() == pytest.approx([0.9, 0.2])
    assert d["boxes"][0].tolist() == [0, 0, 8, 8]  # clipped to the image
