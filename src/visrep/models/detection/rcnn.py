"""R-CNN (Girshick, Donahue, Darrell and Malik, "Rich feature hierarchies for accurate object
detection and semantic segmentation", CVPR 2014) as seed 003 draws the pipeline: "1. propose a
bunch of potential boxes, 2. compute features of each box using a CNN, 3. classify each box
based on an SVM, 4. refine each box using linear regression" (seed 001: "many region proposals,
image locations are processed many times"): the baseline the end-to-end models replaced.

1. Proposals: class-independent, from the data (``--data.proposals``, selective search's fast
   mode); in training each target has ``proposals`` ``(P, 4)``, at test time
   ``forward(images, proposals=[...])``.
2. Warped crops (Sec. 2.1, appendix A): each box is dilated so that, warped anisotropically to
   ``warp_size x warp_size``, it has ``context_padding`` pixels of image context on every side
   (paper: 16 at 227); what falls outside the image is the mean (zero in normalised images).
   The crops go through the backbone; its pooled features (``num_features``) are the region's
   descriptor (the paper's fc7).
3. Fine-tuning (Sec. 2.3, the Lightning fit): the backbone plus a ``(K + 1)``-way classifier on
   warped proposals, proposals with IoU >= 0.5 with a ground-truth box are that box's class,
   the rest background; each step samples 32 foreground and 96 background windows over its
   images (the paper's mini-batch of 128).
4. SVMs (Sec. 2.3, :meth:`rcnn.fit_svms`, run by the task through :meth:`fit_after_training`):
   one linear SVM per class (scikit-learn's ``LinearSVC``: liblinear's L2-regularised hinge
   loss, as the authors' code: ``C = 0.001``, positive weight 2, bias feature 10), positives the
   ground-truth boxes, negatives the proposals with IoU < 0.3 with every box of the class,
   trained with standard hard negative mining (all negatives of the first batch, then those
   scoring above -1.0001; retrain after 2000 new ones per class, evict those below -1.2; one
   pass). Features are scaled so their mean norm is 20 (the code's ``feat_norm_mean``).
5. Box regression (appendix C): per class, ridge regression (``lambda = 1000``) from the scaled
   features (plus a bias) to the targets ``t`` of proposals with IoU > 0.6 with a ground-truth
   box of that class (and the ground-truth boxes themselves), the targets centred and whitened
   as the authors' code does.

Inference: before the SVMs are fitted, the fine-tuned softmax scores the proposals (the paper
compares softmax and SVMs, Sec. 2.3 / appendix B); after, the SVM scores (margins, not
probabilities) and the class's regressed box. Then per-class non-maximum suppression at 0.3.
The SVMs and regressors are buffers (``svm_weight``, ``svm_bias``, ``bbox_beta``, ``bbox_mu``,
``bbox_t_inv``, ``feature_scale``, and ``fitted``), so a checkpoint carries them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

from visrep.errors import ConfigError
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
from visrep.models.interface import BackboneFactory

__all__ = ["Batches", "class_ious", "rcnn", "ridge_regressor", "warp_regions"]

# What the task hands fit_after_training: a callable returning (images, targets) batches.
Batches = Callable[[], Iterable[tuple[list[Tensor], list[Target]]]]
_UNIT = (1.0, 1.0, 1.0, 1.0)  # R-CNN's raw targets; the regressor whitens them itself


def warp_regions(images: Tensor, rois: Tensor, size: int, padding: int) -> Tensor:
    """Warped crops of boxes with context (R-CNN, appendix A).

    Each box is dilated about its centre by ``size / (size - 2 padding)`` so that in the
    ``size x size`` crop the original box spans the central ``size - 2 padding`` pixels; the
    crop is bilinear (averaging ``ceil(box / size)`` samples per output pixel, so large boxes
    are not aliased), and samples outside the image are 0.

    Args:
        images: ``(B, C, H, W)``.
        rois: ``(N, 5)`` rows ``(image index, x1, y1, x2, y2)`` in pixels.

    Returns:
        ``(N, C, size, size)``.
    """
    grow = size / (size - 2 * padding)
    centre = (rois[:, 1:3] + rois[:, 3:5]) / 2
    half = (rois[:, 3:5] - rois[:, 1:3]) / 2 * grow
    boxes = torch.cat([rois[:, :1], centre - half, centre + half], dim=1)
    return roi_align(images, boxes, size, 1.0, sampling_ratio=0, aligned=True)


def class_ious(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, k: int) -> Tensor:
    """Each proposal's largest IoU with a ground-truth box of each class (0 if none).

    Shape: ``(P, 4)``, ``(M, 4)``, ``(M,)`` -> ``(P, K)``.
    """
    out = proposals.new_zeros((len(proposals), k))
    if len(gt_boxes) and len(proposals):
        iou = box_iou(proposals, gt_boxes)
        idx = gt_labels.long().view(1, -1).expand_as(iou)
        out.scatter_reduce_(1, idx, iou, reduce="amax")
    return out


def ridge_regressor(
    x: np.ndarray, y: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-CNN's box regressor (appendix C, authors' code): centre and whiten the targets, then
    ridge regression with a bias column.

    Args:
        x: ``(n, D)`` features; y: ``(n, 4)`` targets; lam: the ridge weight (paper: 1000).

    Returns:
        ``beta (D + 1, 4)``, ``mu (4,)``, ``t_inv (4, 4)``: predictions are
        ``[x, 1] @ beta @ t_inv + mu``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu = y.mean(0)
    yc = y - mu
    vals, vecs = np.linalg.eigh(yc.T @ yc / len(y))
    vals = np.maximum(vals, 0.0) + 1e-3
    t = vecs @ np.diag(1 / np.sqrt(vals)) @ vecs.T
    t_inv = vecs @ np.diag(np.sqrt(vals)) @ vecs.T
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    beta = np.linalg.solve(xb.T @ xb + lam * np.eye(xb.shape[1]), xb.T @ (yc @ t))
    return beta, mu, t_inv


@DETECTORS.register
class rcnn(Detector):  # noqa: N801 (the registered, user-facing name)
    """R-CNN: warped proposals, a fine-tuned CNN, per-class SVMs and box regressors (module
    docstring).

    Args:
        in_chans: input channels.
        num_classes: object classes (no background).
        backbone: the CNN applied to every crop (default ``resnet18``, from scratch).
        pretrained_path: the backbone's weights: a visrep run or ``.ckpt``, or a state dict.
        frozen_bn: replace the backbone's batch norms by frozen ones.
        warp_size: side of the warped crops (paper: 227; small for CPUs).
        context_padding: pixels of context around the box in the warped crop (paper: 16).
        dropout: dropout before the fine-tuning classifier.
        fg_iou: fine-tuning positives have IoU >= this with a ground-truth box (paper: 0.5).
        batch_fg, batch_bg: foreground and background windows per training step (paper: 32,
            96).
        add_gt_proposals: add the ground-truth boxes to the fine-tuning windows.
        train_proposals, test_proposals: the first (best-ranked) this many proposals per image
            for training, SVM mining and test (paper: about 2000); None uses all.
        crops_per_forward: crops per backbone call when extracting features without gradients.
        svm_c: the SVMs' ``C`` (paper: 0.001).
        svm_pos_weight: loss weight of positives (authors' code: 2).
        svm_bias: the bias feature's value (liblinear ``-B``, authors' code: 10).
        svm_neg_iou: SVM negatives have IoU < this with every box of the class (paper: 0.3).
        svm_hard_thresh: mined negatives score above this (authors' code: -1.0001).
        svm_evict_thresh: cached negatives scoring below this are dropped (code: -1.2).
        svm_retrain_limit: retrain a class's SVM once this many negatives were added (2000).
        svm_epochs: hard-negative mining passes over the training data (paper: 1).
        svm_max_iter: liblinear iterations per SVM fit.
        feature_norm: features are scaled to this mean L2 norm for the SVMs and regressors
            (authors' code: 20).
        bbox_iou: regressors learn from proposals with IoU > this with a box (paper: 0.6).
        bbox_lambda: the ridge weight (paper: 1000).
        scorer: ``auto`` scores with the SVMs once they are fitted, else with the fine-tuned
            softmax; ``softmax`` always with the softmax (no box regression), ``svm`` always with
            the SVMs (an error before they are fitted): the paper's comparison (appendix B).
        score_thresh: softmax scoring: drop scores at or below this.
        svm_score_thresh: SVM scoring: drop scores (margins) at or below this.
        nms_thresh: per-class non-maximum suppression IoU (paper: 0.3).
        detections_per_img: at most this many detections per image.
    """

    needs_proposals = True

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        backbone: BackboneFactory | None = None,
        pretrained_path: str | None = None,
        frozen_bn: bool = False,
        warp_size: int = 96,
        context_padding: int = 16,
        dropout: float = 0.0,
        fg_iou: float = 0.5,
        batch_fg: int = 32,
        batch_bg: int = 96,
        add_gt_proposals: bool = True,
        train_proposals: int | None = 2000,
        test_proposals: int | None = 2000,
        crops_per_forward: int = 256,
        svm_c: float = 0.001,
        svm_pos_weight: float = 2.0,
        svm_bias: float = 10.0,
        svm_neg_iou: float = 0.3,
        svm_hard_thresh: float = -1.0001,
        svm_evict_thresh: float = -1.2,
        svm_retrain_limit: int = 2000,
        svm_epochs: int = 1,
        svm_max_iter: int = 1000,
        feature_norm: float = 20.0,
        bbox_iou: float = 0.6,
        bbox_lambda: float = 1000.0,
        scorer: Literal["auto", "softmax", "svm"] = "auto",
        score_thresh: float = 0.05,
        svm_score_thresh: float = -1.0,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        check_positive(
            warp_size=warp_size, batch_fg=batch_fg, batch_bg=batch_bg,
            train_proposals=train_proposals, test_proposals=test_proposals,
            crops_per_forward=crops_per_forward, svm_c=svm_c, svm_pos_weight=svm_pos_weight,
            svm_bias=svm_bias, svm_retrain_limit=svm_retrain_limit, svm_epochs=svm_epochs,
            svm_max_iter=svm_max_iter, feature_norm=feature_norm, bbox_lambda=bbox_lambda,
            detections_per_img=detections_per_img,
        )  # fmt: skip
        check_unit(
            dropout=dropout, fg_iou=fg_iou, svm_neg_iou=svm_neg_iou, bbox_iou=bbox_iou,
            score_thresh=score_thresh, nms_thresh=nms_thresh,
        )  # fmt: skip
        if not 0 <= 2 * context_padding < warp_size:
            raise ConfigError(
                f"context_padding must be in [0, warp_size / 2) = [0, {warp_size / 2}), got "
                f"{context_padding}"
            )
        if svm_evict_thresh > svm_hard_thresh:
            raise ConfigError(
                f"svm_evict_thresh ({svm_evict_thresh}) must be <= svm_hard_thresh "
                f"({svm_hard_thresh}): mined negatives would be evicted at once"
            )
        if scorer not in ("auto", "softmax", "svm"):
            raise ConfigError(f"scorer must be 'auto', 'softmax' or 'svm', got {scorer!r}")
        encoder = detection_encoder(backbone, in_chans, pretrained_path, frozen_bn)
        self.encoder = encoder
        d = int(encoder.num_features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, num_classes + 1))
        k = num_classes
        self.register_buffer("svm_weight", torch.zeros(k, d))
        self.register_buffer("svm_bias", torch.zeros(k))
        self.register_buffer("bbox_beta", torch.zeros(k, d + 1, 4))
        self.register_buffer("bbox_mu", torch.zeros(k, 4))
        self.register_buffer("bbox_t_inv", torch.eye(4).repeat(k, 1, 1))
        self.register_buffer("feature_scale", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))
        self.warp_size, self.context_padding = warp_size, context_padding
        self.fg_iou, self.batch_fg, self.batch_bg = fg_iou, batch_fg, batch_bg
        self.add_gt_proposals = add_gt_proposals
        self.train_proposals, self.test_proposals = train_proposals, test_proposals
        self.crops_per_forward = crops_per_forward
        self.svm_c, self.svm_pos_weight, self.svm_bias_mult = svm_c, svm_pos_weight, svm_bias
        self.svm_neg_iou = svm_neg_iou
        self.svm_hard_thresh, self.svm_evict_thresh = svm_hard_thresh, svm_evict_thresh
        self.svm_retrain_limit, self.svm_epochs = svm_retrain_limit, svm_epochs
        self.svm_max_iter = svm_max_iter
        self.feature_norm, self.bbox_iou, self.bbox_lambda = feature_norm, bbox_iou, bbox_lambda
        self.scorer = scorer
        self.score_thresh, self.svm_score_thresh = score_thresh, svm_score_thresh
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img

    # -- features -------------------------------------------------------------------------------
    def embed(self, crops: Tensor) -> Tensor:
        """The backbone's pooled features of warped crops: ``(N, C, S, S) -> (N, D)``."""
        return self.encoder.forward_head(self.encoder.forward_features(crops), pre_logits=True)

    def crops(self, canvas: Tensor, rois: Tensor) -> Tensor:
        """Warped crops (:func:`warp_regions`) of ``(N, 5)`` RoIs of the padded ``canvas``."""
        return warp_regions(canvas, rois, self.warp_size, self.context_padding)

    @torch.no_grad()
    def region_features(self, canvas: Tensor, rois: Tensor) -> Tensor:
        """Features ``(N, D)`` of ``(N, 5)`` RoIs, ``crops_per_forward`` crops at a time."""
        parts = [self.embed(self.crops(canvas, r)) for r in rois.split(self.crops_per_forward)]
        return torch.cat(parts) if parts else canvas.new_zeros((0, self.svm_weight.shape[1]))

    @staticmethod
    def _rois(boxes: list[Tensor]) -> Tensor:
        idx = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
        return torch.cat([torch.cat([i, b], 1) for i, b in zip(idx, boxes, strict=True)])

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        images: list[Tensor],
        targets: list[Target] | None = None,
        *,
        proposals: list[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[Detection]:
        """Fine-tuning loss (``targets`` given, each with ``proposals``) or detections."""
        if targets is not None:
            proposals = _target_proposals(targets)
        elif proposals is None:
            raise ConfigError(
                "rcnn needs region proposals: forward(images, proposals=[(P, 4), ...]) "
                "(set --data.proposals)"
            )
        check_inputs("rcnn", images, proposals, self.in_chans)
        if targets is not None:
            return self._finetune_loss(images, proposals, targets)
        return self._detect(images, proposals)

    def _labelled(
        self, images: list[Tensor], proposals: list[Tensor], targets: list[Target]
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        # Per image: proposals (+ ground truth), then every window's IoU and (K + 1)-way label.
        boxes, ious, labels = [], [], []
        for im, props, t in zip(images, proposals, targets, strict=True):
            gt = t["boxes"].to(im)
            p = clean_proposals(props.to(im), tuple(im.shape[-2:]), self.train_proposals)
            if self.add_gt_proposals:
                p = torch.cat([p, gt])
            iou, match = match_proposals(p, gt)
            lab = torch.zeros(len(p), dtype=torch.long, device=im.device)
            if len(gt):
                fg = iou >= self.fg_iou
                lab[fg] = t["labels"].to(im.device).long()[match[fg]] + 1
            boxes.append(p)
            ious.append(iou)
            labels.append(lab)
        return boxes, torch.cat(ious), torch.cat(labels)

    def _finetune_loss(
        self, images: list[Tensor], proposals: list[Tensor], targets: list[Target]
    ) -> dict[str, Tensor]:
        boxes, iou, labels = self._labelled(images, proposals, targets)
        fg, bg = sample_rois(iou, self.fg_iou, 0.0, self.batch_fg, self.batch_bg)
        keep = torch.cat([fg, bg])
        rois = self._rois(boxes)[keep]
        logits = self.classifier(self.embed(self.crops(batch_images(images), rois)))
        if len(keep) == 0:
            return {"loss_classifier": logits.sum() * 0}
        return {"loss_classifier": F.cross_entropy(logits, labels[keep])}

    @torch.no_grad()
    def _detect(self, images: list[Tensor], proposals: list[Tensor]) -> list[Detection]:
        boxes = [
            clean_proposals(p.to(im), tuple(im.shape[-2:]), self.test_proposals)
            for im, p in zip(images, proposals, strict=True)
        ]
        fitted = bool(self.fitted)
        if self.scorer == "svm" and not fitted:
            raise ConfigError(
                "rcnn scorer 'svm': the SVMs are not fitted yet (fit_svms / fit_after_training)"
            )
        use_svm = fitted and self.scorer != "softmax"
        feats = self.region_features(batch_images(images), self._rois(boxes))
        out = []
        for im, p, f in zip(images, boxes, feats.split([len(b) for b in boxes]), strict=True):
            if use_svm:
                x = f * self.feature_scale
                scores = x @ self.svm_weight.T + self.svm_bias
                per_class, thresh = self.regress(x, p), self.svm_score_thresh
            else:
                scores = F.softmax(self.classifier(f), -1)[:, 1:]
                per_class = p[:, None].expand(-1, self.num_classes, 4)
                thresh = self.score_thresh
            size = (int(im.shape[-2]), int(im.shape[-1]))
            out.append(
                per_class_detections(
                    per_class, scores, size, thresh, self.nms_thresh, self.detections_per_img
                )
            )
        return out

    def regress(self, x: Tensor, proposals: Tensor) -> Tensor:
        """Every class's regressed box of each proposal from scaled features ``x (N, D)``:
        ``(N, K, 4)``."""
        xb = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        t = torch.einsum("nd,kdc->nkc", xb, self.bbox_beta)
        t = torch.einsum("nkc,kce->nke", t, self.bbox_t_inv) + self.bbox_mu
        return decode_boxes(t.reshape(len(x), -1), proposals, _UNIT)

    # -- SVMs and box regressors (after fine-tuning) ---------------------------------------------
    def fit_after_training(self, batches: Batches) -> None:
        """The stage the task runs after training (at the last epoch's validation): the SVMs
        and box regressors, :meth:`fit_svms`."""
        self.fit_svms(batches)

    @torch.no_grad()
    def fit_svms(self, batches: Batches) -> dict[str, object]:
        """Fit the per-class SVMs (hard negative mining) and box regressors on the training
        set, into the buffers (module docstring, steps 4-5).

        Args:
            batches: called once per pass, returns ``(images, targets)`` batches: normalised
                images and targets with ``boxes``, ``labels`` and ``proposals``.

        Returns:
            counts: ``positives`` and ``negatives`` (cached at the end) per class, SVM
            ``retrains``, ``regression_samples`` per class, ``seconds``.
        """
        from visrep.models.detection.rcnn_svm import SVMTrainer  # scikit-learn on use

        start = time.perf_counter()
        was_training = self.training
        self.eval()
        k = self.num_classes
        trainer = SVMTrainer(
            k, self.svm_c, self.svm_pos_weight, self.svm_bias_mult, self.svm_hard_thresh,
            self.svm_evict_thresh, self.svm_retrain_limit, self.svm_max_iter,
        )  # fmt: skip
        reg_x: list[list[np.ndarray]] = [[] for _ in range(k)]
        reg_y: list[list[np.ndarray]] = [[] for _ in range(k)]
        try:
            # pass 1: the positives, the ground-truth boxes (also regression samples, t = 0)
            for images, targets in batches():
                gts = [t["boxes"].to(im) for im, t in zip(images, targets, strict=True)]
                if not sum(len(g) for g in gts):
                    continue
                f = self.region_features(batch_images(images), self._rois(gts)).cpu().numpy()
                labels = torch.cat([t["labels"] for t in targets]).cpu().numpy()
                trainer.add_positives(f, labels)
                for c in np.unique(labels):
                    reg_x[c].append(f[labels == c])
                    reg_y[c].append(np.zeros(((labels == c).sum(), 4), np.float32))
            # pass 2: hard negatives from the proposals; regression samples on the way
            for epoch in range(self.svm_epochs):
                for images, targets in batches():
                    proposals = _target_proposals(targets)
                    x, iou_k, reg = self._proposal_features(images, proposals, targets)
                    if trainer.scale is None:
                        norms = np.linalg.norm(x, axis=1)
                        scale = self.feature_norm / max(float(norms.mean()), 1e-12)
                        trainer.start(scale, x, iou_k < self.svm_neg_iou)
                    else:
                        trainer.mine(x, iou_k < self.svm_neg_iou)
                    if epoch == 0:
                        for c, (rx, ry) in reg.items():
                            reg_x[c].append(rx)
                            reg_y[c].append(ry)
            if trainer.scale is None:
                raise ConfigError("rcnn.fit_svms: the training batches hold no proposals")
            trainer.finish()
            self._store(trainer, reg_x, reg_y)
        finally:
            self.train(was_training)
        return {
            "positives": trainer.num_positives(),
            "negatives": trainer.num_negatives(),
            "retrains": trainer.retrains,
            "regression_samples": [int(sum(len(a) for a in xs)) for xs in reg_x],
            "seconds": time.perf_counter() - start,
        }

    def _proposal_features(
        self, images: list[Tensor], proposals: list[Tensor], targets: list[Target]
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
        # Raw features of every proposal, its IoU with each class's boxes, and the regression
        # samples (proposals with IoU > bbox_iou with a box: that box's class and targets).
        boxes, iou_k, near, reg_p, reg_g, reg_c = [], [], [], [], [], []
        for im, props, t in zip(images, proposals, targets, strict=True):
            gt, gl = t["boxes"].to(im), t["labels"].to(im.device).long()
            p = clean_proposals(props.to(im), tuple(im.shape[-2:]), self.train_proposals)
            boxes.append(p)
            iou_k.append(class_ious(p, gt, gl, self.num_classes))
            iou, match = match_proposals(p, gt)
            close = iou > self.bbox_iou  # never true without ground truth (IoU 0)
            near.append(close)
            reg_p.append(p[close])
            reg_g.append(gt[match[close]])
            reg_c.append(gl[match[close]])
        x = self.region_features(batch_images(images), self._rois(boxes)).cpu().numpy()
        xr = x[torch.cat(near).cpu().numpy()]
        t_all = encode_boxes(torch.cat(reg_g), torch.cat(reg_p), _UNIT).cpu().numpy()
        classes = torch.cat(reg_c).cpu().numpy()
        reg = {int(c): (xr[classes == c], t_all[classes == c]) for c in np.unique(classes)}
        return x, torch.cat(iou_k).cpu().numpy(), reg

    def _store(
        self, trainer: object, reg_x: list[list[np.ndarray]], reg_y: list[list[np.ndarray]]
    ) -> None:
        w, b = trainer.weights()  # type: ignore[attr-defined]
        scale = float(trainer.scale)  # type: ignore[attr-defined]
        dev = self.svm_weight.device
        self.svm_weight.copy_(torch.as_tensor(w, dtype=torch.float32, device=dev))
        self.svm_bias.copy_(torch.as_tensor(b, dtype=torch.float32, device=dev))
        self.feature_scale.fill_(scale)
        d = self.svm_weight.shape[1]
        for c in range(self.num_classes):
            if not reg_x[c]:
                self.bbox_beta[c].zero_()
                self.bbox_mu[c].zero_()
                self.bbox_t_inv[c].copy_(torch.eye(4))
                continue
            beta, mu, t_inv = ridge_regressor(
                np.concatenate(reg_x[c]) * scale, np.concatenate(reg_y[c]), self.bbox_lambda
            )
            self.bbox_beta[c].copy_(torch.as_tensor(beta.reshape(d + 1, 4)))
            self.bbox_mu[c].copy_(torch.as_tensor(mu))
            self.bbox_t_inv[c].copy_(torch.as_tensor(t_inv))
        self.fitted.fill_(True)


def _target_proposals(targets: list[Target]) -> list[Tensor]:
    missing = [i for i, t in enumerate(targets) if "proposals" not in t]
    if missing:
        raise ConfigError(
            f"rcnn trains on region proposals: target {missing[0]} has no 'proposals' (set "
            "--data.proposals)"
        )
    return [t["proposals"] for t in targets]
