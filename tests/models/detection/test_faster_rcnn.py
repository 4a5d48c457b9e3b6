"""Faster R-CNN / Mask R-CNN on visrep backbones: anchors, box coding, the eq. 16-17 losses,
label translation, options."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import fastrcnn_loss, maskrcnn_loss
from torchvision.ops import roi_align

from visrep.errors import ConfigError
from visrep.models.detection import DETECTORS, PyramidFeatures, faster_rcnn, mask_rcnn
from visrep.models.segmentation.encoder import DilatedCNN

ENC = partial(DilatedCNN, channels=(8, 8, 16, 16, 16))


def small(cls=faster_rcnn, **kw):
    torch.manual_seed(0)
    opts = dict(backbone=ENC, fpn_channels=16, min_size=64, max_size=96, roi_batch_size=32)
    return cls(3, 2, **{**opts, **kw})


def test_pyramid_levels_names_and_strides():
    enc = ENC(3, 0, None)
    feats = PyramidFeatures(enc, fpn=True, num_levels=4, channels=16)
    out = feats(torch.zeros(1, 3, 64, 96))
    assert list(out) == ["0", "1", "2", "3", "pool"] and feats.reductions == [4, 8, 16, 32, 64]
    for name, r in zip(out, feats.reductions, strict=True):
        assert out[name].shape == (1, 16, math.ceil(64 / r), math.ceil(96 / r))
    single = PyramidFeatures(enc, fpn=False)
    assert list(single(torch.zeros(1, 3, 64, 96))) == ["0"] and single.out_channels == 16


def test_anchors_per_level_sizes_and_ratios():
    m = small()
    gen = m.model.rpn.anchor_generator
    assert [s[0] for s in gen.sizes] == [32, 64, 128, 256, 512]  # 8 x stride, P2..P6
    for size, cell in zip(gen.sizes, gen.cell_anchors, strict=True):
        w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
        # each anchor keeps the area size^2 (up to torchvision's rounding) and h / w = ratio
        assert torch.allclose(w * h, torch.full_like(w, float(size[0] ** 2)), rtol=0.05)
        assert torch.allclose(h / w, torch.tensor([0.5, 1.0, 2.0]), rtol=0.05)
        assert torch.allclose((cell[:, :2] + cell[:, 2:]) / 2, torch.zeros(3, 2), atol=0.5)
    plain = small(fpn=False)
    assert plain.model.rpn.anchor_generator.sizes == ((128, 256, 512),)
    assert plain.model.rpn.head.cls_logits.out_channels == 9  # 3 scales x 3 ratios


def test_box_encoding_round_trip_and_known_deltas():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[0.0, 0, 10, 20], [5, 5, 15, 15]])
    boxes = torch.tensor([[1.0, 2, 13, 18], [4, 6, 20, 11]])
    deltas = coder.encode_single(boxes, anchors)
    assert torch.allclose(coder.decode_single(deltas, anchors), boxes, atol=1e-4)
    # Ren et al. eq. 2: t_x = (x - x_a) / w_a, t_w = log(w / w_a), times the weights
    cx, cxa, w, wa = 7.0, 5.0, 12.0, 10.0
    assert deltas[0, 0].item() == pytest.approx(10 * (cx - cxa) / wa)
    assert deltas[0, 2].item() == pytest.approx(5 * math.log(w / wa))


def test_fast_rcnn_loss_eq15_hand_case():
    # two RoIs: one of class 1 (box error 0.5 in one coordinate), one background
    logits = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    labels = [torch.tensor([1, 0])]
    box = torch.zeros(2, 3 * 4)
    box[0, 4] = 0.5  # class 1's t_x
    box[1, 8:] = 3.0  # a background RoI's box output counts in no loss
    targets = [torch.zeros(2, 4)]
    cls, loc = fastrcnn_loss(logits, box, labels, targets)
    ce = (-F.log_softmax(logits[0], 0)[1] - F.log_softmax(logits[1], 0)[0]) / 2
    assert cls.item() == pytest.approx(ce.item(), rel=1e-6)
    # smooth L1 with beta 1/9: 0.5 >= 1/9 -> 0.5 - 0.5 / 9, summed, divided by the 2 RoIs
    assert loc.item() == pytest.approx((0.5 - 0.5 / 9) / 2, rel=1e-6)


def test_rpn_loss_eq16_hand_case():
    m = small()
    rpn = m.model.rpn
    objectness = torch.tensor([2.0, -1.0, 0.5, 0.0])
    deltas = torch.tensor([[0.2, 0, 0, 0], [9, 9, 9, 9], [0, 0, 0, 0], [0, 0, 0, 0]])
    labels = [torch.tensor([1.0, 0.0, -1.0, 0.0])]  # -1: neither (ignored)
    targets = [torch.zeros(4, 4)]
    torch.manual_seed(0)
    obj_loss, box_loss = rpn.compute_loss(objectness, deltas, labels, targets)
    # eq. 16: mean log loss over the sampled anchors; box loss of positives only, / N_cls
    bce = F.binary_cross_entropy_with_logits(objectness[[0, 1, 3]], torch.tensor([1.0, 0, 0]))
    assert obj_loss.item() == pytest.approx(bce.item(), rel=1e-6)
    sl1 = 0.2 - 0.5 / 9  # smooth L1 at beta 1/9: |x| = 0.2 >= beta, the linear part
    assert box_loss.item() == pytest.approx(sl1 / 3, rel=1e-6)


def test_mask_loss_eq17_hand_case():
    # one positive RoI of class 2 (of 3 with background); the loss reads only class 2's mask
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = torch.tensor([[2.0, -2.0], [0.0, 0.0]])
    logits[0, 1] = 50.0  # another class's mask: no effect
    # a 4x4 mask, left half on; the m x m target is the mask resampled on the RoI by RoIAlign
    # (2 samples per bin, aligned=False): [[0.75, 0], [0.75, 0]]
    gt = [torch.zeros(1, 4, 4)]
    gt[0][0, :, :2] = 1
    proposals = [torch.tensor([[0.0, 0, 4, 4]])]
    loss = maskrcnn_loss(logits, proposals, gt, [torch.tensor([2])], [torch.tensor([0])])
    target = torch.tensor([[0.75, 0], [0.75, 0]])
    assert torch.equal(roi_align(gt[0][None], proposals, (2, 2), 1.0)[0, 0], target)
    want = F.binary_cross_entropy_with_logits(logits[0, 2], target)  # mean over m^2 pixels
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_training_losses_and_label_translation():
    m = small().train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 60, 64)]
    targets = [
        {"boxes": torch.tensor([[4.0, 4, 30, 30]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no object
    ]
    losses = m(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert targets[0]["labels"].tolist() == [1]  # the caller's targets are left alone
    m.eval()
    with torch.no_grad():
        out = m(images)
    for d, im in zip(out, images, strict=True):
        assert d["labels"].min().item() >= 0 if len(d["labels"]) else True
        assert d["labels"].max().item() <= 1 if len(d["labels"]) else True
        h, w = im.shape[1:]
        assert (d["boxes"][:, 2] <= w + 1e-3).all() and (d["boxes"][:, 3] <= h + 1e-3).all()


def test_detections_in_input_pixels_whatever_the_resize():
    # the model resizes to min_size internally; detections come back in the input's pixels
    m = small(min_size=64, max_size=200, score_thresh=0.0).eval()
    big = torch.rand(3, 128, 160)
    with torch.no_grad():
        out = m([big])[0]
    assert (out["boxes"][:, 2] <= 160 + 1e-3).all() and (out["boxes"][:, 3] <= 128 + 1e-3).all()
    assert out["boxes"][:, 2].max() > 64  # not the resized 64x80 frame


def test_mask_rcnn_trains_on_masks_and_returns_masks():
    m = small(mask_rcnn).train()
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, 10:30, 10:40] = 1
    t = [{"boxes": torch.tensor([[10.0, 10, 40, 30]]), "labels": torch.tensor([0]), "masks": mask}]
    losses = m([torch.rand(3, 64, 64)], t)
    assert "loss_mask" in losses and torch.isfinite(losses["loss_mask"])
    m.eval()
    with torch.no_grad():
        d = m([torch.rand(3, 64, 64)])[0]
    assert d["masks"].shape[1:] == (64, 64) and d["masks"].dim() == 3


def test_registry_spec_round_trip_and_bad_options():
    spec = DETECTORS.spec({"class_path": "faster_rcnn", "init_args": {"backbone": "resnet18"}})
    assert spec["init_args"]["backbone"]["class_path"].endswith("resnet18")
    for bad, word in (
        ({"min_size": 0}, "min_size"),
        ({"min_size": []}, "min_size"),
        ({"score_thresh": 1.5}, "score_thresh"),
        ({"aspect_ratios": (0.0, 1.0)}, "aspect_ratios"),
        ({"anchor_sizes": (32, 64)}, "anchor_sizes"),
    ):
        with pytest.raises(ConfigError, match=word):
            small(**bad)


def test_frozen_bn_keeps_statistics():
    from torchvision.ops import FrozenBatchNorm2d

    m = small(frozen_bn=True)
    enc = m.model.backbone.encoder
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in enc.modules())
    assert any(isinstance(x, FrozenBatchNorm2d) for x in enc.modules())
