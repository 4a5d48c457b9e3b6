"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015; seed 001, "convolutions are applied only once
to the image", loss eq. 15) on any visrep backbone.

The image goes once through the backbone (one feature level, by default the last: the paper's
conv5, stride 16 for VGG16, here the backbone's stride); each region proposal is max-pooled
from that map into a fixed ``roi_size x roi_size`` grid (RoI pooling, Sec. 2.1,
``torchvision.ops.roi_pool``; or RoIAlign, He et al. 2017, ``roi_align`` with aligned corners
as an option), then two fully connected layers (the paper's fc6 and fc7, ReLU and dropout)
feed two sibling outputs: a softmax over ``K + 1`` classes and ``4 K`` class-specific box
offsets (Sec. 2.2; ``4 (K + 1)`` here, the background's unused, as in the authors' code).

Training (Sec. 2.3): per image ``rois_per_image`` RoIs (paper: 64, from mini-batches of 2
images), 25% from proposals with IoU >= 0.5 with a ground-truth box (that box's class), the
rest background from IoU in ``[0.1, 0.5)``; the ground-truth boxes join the proposals (the
authors' code). Box targets: the R-CNN parametrisation normalised by weights 10, 10, 5, 5
(:mod:`.regions`); loss: eq. 15, :func:`visrep.losses.rcnn.fast_rcnn_loss` (smooth L1, or the
seed's squared error). Test (Sec. 3): softmax scores, each class's regressed box, per-class
non-maximum suppression (the paper's 0.3), a score threshold and a cap per image.

Proposals come with the data (``--data.proposals``: selective search, Uijlings et al. 2013):
in training each target has ``proposals`` ``(P, 4)``, at test time ``forward(images,
proposals=[...])``. Images may be resized (the paper's single scale: shorter side 600, longer
at most 1000) or, by default, used at their size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from visrep.errors import ConfigError
from visrep.losses.rcnn import BoxLoss, FastRCNNLoss
from visrep.models.detection.base import DETECTORS, Detection, Detector, Target
from visrep.models.detection.pyramid import detection_encoder
from visrep.models.detection.regions import (
    batch_images,
    check_inputs,
    check_positive,
    check_unit,
    clean_proposals,
    decode_boxes,
    encode_boxes,
    match_proposals,
    per_class_detections,
    sample_rois,
)
from visrep.models.interface import BackboneFactory, take_indices

__all__ = ["FastRCNNHead", "fast_rcnn", "resize_images"]

Proposals = list[Tensor]


class FastRCNNHead(nn.Module):
    """fc6, fc7 (ReLU, dropout) and the two sibling layers: class scores ``(R, K + 1)`` and box
    offsets ``(R, 4 (K + 1))``; the paper's initialisation of the new layers (Gaussian, standard
    deviation 0.01 for the classifier, 0.001 for the regressor, zero biases).

    Shape: ``(R, C, S, S)`` -> ``(R, K + 1)``, ``(R, 4 (K + 1))``.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.drop(F.relu(self.fc6(x.flatten(1))))
        x = self.drop(F.relu(self.fc7(x)))
        return self.cls_score(x), self.bbox_pred(x)


def resize_images(
    images: list[Tensor], min_size: int | None, max_size: int
) -> tuple[list[Tensor], list[float]]:
    """The paper's single-scale resize: the shorter side to ``min_size`` unless the longer
    would pass ``max_size`` (bilinear); ``min_size=None`` keeps the images. Returns the images
    and each one's factor (boxes scale by it)."""
    if min_size is None:
        return list(images), [1.0] * len(images)
    out, factors = [], []
    for im in images:  # per image: sizes differ
        h, w = im.shape[-2:]
        f = min(min_size / min(h, w), max_size / max(h, w))
        size = (max(1, round(h * f)), max(1, round(w * f)))
        out.append(F.interpolate(im[None], size=size, mode="bilinear", align_corners=False)[0])
        factors.append(f)
    return out, factors


@DETECTORS.register
class fast_rcnn(Detector):  # noqa: N801 (the registered, user-facing name)
    """Fast R-CNN on region proposals (module docstring).

    Args:
        in_chans: input channels.
        num_classes: object classes (no background).
        backbone: the shared convolutional network, any registered backbone with
            ``feature_info`` (default ``resnet18``, from scratch).
        pretrained_path: the backbone's weights: a visrep run or ``.ckpt``, or a state dict.
        frozen_bn: replace the backbone's batch norms by frozen ones (with pretrained weights).
        level: the backbone level whose map is pooled (default -1: the last).
        roi_op: ``pool`` (RoI max pooling, the paper) or ``align`` (RoIAlign, bilinear).
        roi_size: the pooled grid ``H = W`` (paper: 7).
        hidden: width of fc6 and fc7 (VGG16: 4096).
        dropout: dropout after fc6 and fc7 (VGG16: 0.5).
        min_size, max_size: resize the shorter side to ``min_size`` (paper: 600) with the longer
            at most ``max_size`` (paper: 1000); ``min_size=None`` keeps the image size.
        rois_per_image: RoIs sampled per training image (paper: 128 per 2 images).
        fg_fraction: the foreground share of them (paper: 0.25).
        fg_iou: IoU with a ground-truth box from which a proposal is foreground (paper: 0.5).
        bg_iou_low: background RoIs have IoU in ``[bg_iou_low, fg_iou)`` (paper: 0.1).
        add_gt_proposals: add the ground-truth boxes to the training proposals (authors' code).
        train_proposals, test_proposals: use the first (best-ranked) this many proposals per
            image (paper: 2000); None uses all.
        box_weights: the target normalisation (weights on ``t_x, t_y, t_w, t_h``).
        box_loss: ``smooth_l1`` (paper) or ``squared`` (seed 001's eq. 15 box term).
        box_loss_weight: ``lambda`` of eq. 15 (paper: 1).
        score_thresh: detections at or below this softmax score are dropped.
        nms_thresh: per-class non-maximum suppression IoU (paper: 0.3).
        detections_per_img: at most this many detections per image.

    >>> from functools import partial
    >>> from visrep.models.segmentation.encoder import DilatedCNN
    >>> enc = partial(DilatedCNN, channels=(8, 8, 16, 16, 16))
    >>> m = fast_rcnn(3, 2, backbone=enc, hidden=32).eval()
    >>> out = m([torch.rand(3, 64, 48)], proposals=[torch.tensor([[4.0, 4, 40, 30]])])
    >>> sorted(out[0]), out[0]["boxes"].shape[1]
    (['boxes', 'labels', 'scores'], 4)
    """

    needs_proposals = True

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        backbone: BackboneFactory | None = None,
        pretrained_path: str | None = None,
        frozen_bn: bool = False,
        level: int = -1,
        roi_op: Literal["pool", "align"] = "pool",
        roi_size: int = 7,
        hidden: int = 1024,
        dropout: float = 0.5,
        min_size: int | None = None,
        max_size: int = 1000,
        rois_per_image: int = 64,
        fg_fraction: float = 0.25,
        fg_iou: float = 0.5,
        bg_iou_low: float = 0.1,
        add_gt_proposals: bool = True,
        train_proposals: int | None = 2000,
        test_proposals: int | None = 2000,
        box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        box_loss: BoxLoss = "smooth_l1",
        box_loss_weight: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        check_positive(
            roi_size=roi_size, hidden=hidden, min_size=min_size, max_size=max_size,
            rois_per_image=rois_per_image, train_proposals=train_proposals,
            test_proposals=test_proposals, detections_per_img=detections_per_img,
        )  # fmt: skip
        check_unit(
            dropout=dropout, fg_fraction=fg_fraction, fg_iou=fg_iou, bg_iou_low=bg_iou_low,
            score_thresh=score_thresh, nms_thresh=nms_thresh,
        )  # fmt: skip
        if bg_iou_low > fg_iou:
            raise ConfigError(f"bg_iou_low ({bg_iou_low}) must be <= fg_iou ({fg_iou})")
        if roi_op not in ("pool", "align"):
            raise ConfigError(f"roi_op must be 'pool' or 'align', got {roi_op!r}")
        weights = tuple(float(w) for w in box_weights)
        if len(weights) != 4 or min(weights) <= 0:
            raise ConfigError(f"box_weights must be 4 positive numbers, got {box_weights}")
        self.loss = FastRCNNLoss(box_loss, box_loss_weight)
        encoder = detection_encoder(backbone, in_chans, pretrained_path, frozen_bn)
        info = encoder.feature_info
        try:
            (self.level,) = take_indices(len(info), [level])
        except ConfigError:
            raise ConfigError(
                f"level {level} is out of range for the backbone's {len(info)} levels"
            ) from None
        self.encoder = encoder
        self.stride = int(info[self.level]["reduction"])
        channels = int(info[self.level]["num_chs"])
        self.head = FastRCNNHead(channels * roi_size * roi_size, hidden, num_classes, dropout)
        self.roi_op, self.roi_size = roi_op, roi_size
        self.min_size, self.max_size = min_size, max_size
        self.rois_per_image, self.fg_fraction = rois_per_image, fg_fraction
        self.fg_iou, self.bg_iou_low = fg_iou, bg_iou_low
        self.add_gt_proposals = add_gt_proposals
        self.train_proposals, self.test_proposals = train_proposals, test_proposals
        self.box_weights = weights
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img

    # -- shared features and RoI pooling --------------------------------------------------------
    def features(self, images: list[Tensor]) -> Tensor:
        """The chosen level's map of the images on one padded canvas, ``(B, C, H', W')``."""
        x = batch_images(images, self.stride)
        return self.encoder.forward_intermediates(x, indices=[self.level], intermediates_only=True)[
            0
        ]

    def pool(self, feats: Tensor, rois: list[Tensor]) -> Tensor:
        """RoI features ``(sum R_i, C, S, S)`` of per-image boxes in input pixels."""
        scale = 1.0 / self.stride
        if self.roi_op == "align":
            return roi_align(feats, rois, self.roi_size, scale, sampling_ratio=2, aligned=True)
        # roi_pool rounds corners as Caffe did, with inclusive pixel indices (x2 = last pixel)
        inclusive = [r - r.new_tensor([0.0, 0.0, 1.0, 1.0]) for r in rois]
        return roi_pool(feats, inclusive, self.roi_size, scale)

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        images: list[Tensor],
        targets: list[Target] | None = None,
        *,
        proposals: Proposals | None = None,
    ) -> dict[str, Tensor] | list[Detection]:
        """Losses (``targets`` given, each with ``proposals``) or detections (``proposals``)."""
        if targets is not None:
            missing = [i for i, t in enumerate(targets) if "proposals" not in t]
            if missing:
                raise ConfigError(
                    f"fast_rcnn trains on region proposals: target {missing[0]} has no "
                    "'proposals' (set --data.proposals)"
                )
            proposals = [t["proposals"] for t in targets]
        elif proposals is None:
            raise ConfigError(
                "fast_rcnn needs region proposals: forward(images, proposals=[(P, 4), ...]) "
                "(set --data.proposals)"
            )
        check_inputs("fast_rcnn", images, proposals, self.in_chans)
        sized, factors = resize_images(images, self.min_size, self.max_size)
        if targets is not None:
            return self._losses(sized, factors, proposals, targets)
        return self._detect(sized, factors, proposals, [im.shape[-2:] for im in images])

    def _losses(
        self,
        images: list[Tensor],
        factors: list[float],
        proposals: Proposals,
        targets: list[Target],
    ) -> dict[str, Tensor]:
        rois, labels, box_targets = [], [], []
        n_fg = round(self.rois_per_image * self.fg_fraction)
        for im, f, props, t in zip(images, factors, proposals, targets, strict=True):
            size = tuple(im.shape[-2:])
            gt = t["boxes"].to(im) * f
            p = clean_proposals(props.to(im) * f, size, self.train_proposals)
            if self.add_gt_proposals:
                p = torch.cat([p, gt])
            iou, match = match_proposals(p, gt)
            fg, bg = sample_rois(iou, self.fg_iou, self.bg_iou_low, n_fg, self.rois_per_image)
            bg = bg[: self.rois_per_image - len(fg)]
            keep = torch.cat([fg, bg])
            lab = torch.zeros(len(keep), dtype=torch.long, device=im.device)
            lab[: len(fg)] = t["labels"].to(im.device)[match[fg]].long() + 1
            tgt = torch.zeros(len(keep), 4, dtype=im.dtype, device=im.device)
            tgt[: len(fg)] = encode_boxes(gt[match[fg]], p[fg], self.box_weights)
            rois.append(p[keep])
            labels.append(lab)
            box_targets.append(tgt)
        feats = self.features(images)
        logits, deltas = self.head(self.pool(feats, rois))
        return self.loss(logits, deltas, torch.cat(labels), torch.cat(box_targets))

    @torch.no_grad()
    def _detect(
        self,
        images: list[Tensor],
        factors: list[float],
        proposals: Proposals,
        sizes: list[torch.Size],
    ) -> list[Detection]:
        rois = [
            clean_proposals(p.to(im) * f, tuple(im.shape[-2:]), self.test_proposals)
            for im, f, p in zip(images, factors, proposals, strict=True)
        ]
        feats = self.features(images)
        logits, deltas = self.head(self.pool(feats, rois))
        counts = [len(r) for r in rois]
        out = []
        for r, f, size, lg, dl in zip(
            rois, factors, sizes, logits.split(counts), deltas.split(counts), strict=True
        ):
            boxes = decode_boxes(dl, r, self.box_weights)[:, 1:] / f
            det = per_class_detections(
                boxes, F.softmax(lg, -1)[:, 1:], (int(size[0]), int(size[1])),
                self.score_thresh, self.nms_thresh, self.detections_per_img,
            )  # fmt: skip
            out.append(det)
        return out
