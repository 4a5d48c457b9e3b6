"""DETR's set prediction loss (Carion et al. 2020, "End-to-End Object Detection with Transformers").

A detector that predicts a fixed-size set of ``Q`` (class, box) pairs is trained against the
``M <= Q`` true objects of an image through a one-to-one matching ``sigma`` of predictions to
objects (:mod:`visrep.models.detection.matcher`, eq. 1 of the paper). Given the matching, the
*Hungarian loss* (eq. 2) is

    L = sum_i [ -log p_sigma(i)(c_i) + 1{c_i != no-object} L_box(b_i, b_sigma(i)) ]

over all ``Q`` predictions, the unmatched ones having the target "no object" (class index
``num_classes``), whose log-probability term is down-weighted by ``eos_coef`` (paper: 10x,
``0.1``) against the class imbalance. The box loss (Sec. 3.1) is
``lambda_iou L_iou + lambda_L1 ||b - b_hat||_1`` on boxes ``(cx, cy, w, h)`` normalised by the
image size, with ``L_iou = 1 - GIoU`` (Rezatofighi et al. 2019), both summed over the matched
pairs and divided by the number of true boxes in the batch. With auxiliary decoding losses
(Sec. 3.2) the same loss, with its own matching, is added for the output of every decoder layer.

As in the authors' code, the class term is the weighted mean cross-entropy over the ``B x Q``
predictions (weights 1 and ``eos_coef``), and the weights ``lambda`` are those of the paper
(``1`` for the class term, ``lambda_L1 = 5``, ``lambda_iou = 2``).

Targets here are in the loss's own frame: ``{"labels": (M,) int64 in 0..num_classes - 1,
"boxes": (M, 4) (cx, cy, w, h) in [0, 1]}`` (the detector normalises its pixel boxes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "Matcher",
    "SetCriterion",
    "box_iou_union",
    "generalized_box_iou",
    "hungarian_loss",
    "set_criterion",
]

# (logits (B, Q, K + 1), boxes (B, Q, 4) cxcywh, targets) -> per image (pred idx, target idx).
Matcher = Callable[[Tensor, Tensor, Sequence[dict[str, Tensor]]], list[tuple[Tensor, Tensor]]]


def box_iou_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU and union area of XYXY boxes, batched over leading dimensions.

    Shape: ``(..., N, 4)``, ``(..., M, 4)`` -> two ``(..., N, M)``.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU of XYXY boxes (Rezatofighi et al. 2019, Alg. 1), batched.

    ``GIoU = IoU - (|C| - |A u B|) / |C|`` with ``C`` the smallest box enclosing ``A`` and ``B``;
    in ``[-1, 1]``. :func:`torchvision.ops.generalized_box_iou` computes it for one pair of
    box sets; this version broadcasts over leading (batch) dimensions, which the matcher needs.

    Args:
        boxes1: ``(..., N, 4)`` boxes ``(x1, y1, x2, y2)`` with ``x2 > x1``, ``y2 > y1``.
        boxes2: ``(..., M, 4)`` likewise.

    Returns:
        ``(..., N, M)``.

    >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    >>> generalized_box_iou(a, torch.tensor([[0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 2.0]]))
    tensor([[ 1.0000, -0.2500]])
    """
    if boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ShapeError(
            f"generalized_box_iou: boxes (..., N, 4) and (..., M, 4), got "
            f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    iou, union = box_iou_union(boxes1, boxes2)
    lt = torch.minimum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.maximum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def check_set_inputs(
    logits: Tensor, boxes: Tensor, targets: Sequence[dict[str, Tensor]], who: str = "DETR loss"
) -> None:
    """Refuse predictions and targets of a set prediction whose shapes disagree: logits
    ``(B, Q, K + 1)``, boxes ``(B, Q, 4)``, one target per image with labels ``(M,)`` and boxes
    ``(M, 4)`` (a ``ShapeError`` starting with ``who``)."""
    if logits.dim() != 3 or boxes.shape != (*logits.shape[:2], 4):
        raise ShapeError(
            f"{who}: logits (B, Q, K + 1) and boxes (B, Q, 4), got {tuple(logits.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    if len(targets) != logits.shape[0]:
        raise ShapeError(f"{who}: {logits.shape[0]} images but {len(targets)} targets")
    for i, t in enumerate(targets):
        m = t["labels"].shape
        if len(m) != 1 or t["boxes"].shape != (m[0], 4):
            raise ShapeError(
                f"{who}: target {i} needs labels (M,) and boxes (M, 4), got "
                f"{tuple(m)} and {tuple(t['boxes'].shape)}"
            )


def hungarian_loss(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    indices: Sequence[tuple[Tensor, Tensor]],
    num_boxes: float,
    eos_coef: float = 0.1,
) -> dict[str, Tensor]:
    """The three unweighted terms of the Hungarian loss (eq. 2) for one set of predictions.

    Args:
        logits: ``(B, Q, K + 1)`` class scores; index ``K`` is "no object".
        boxes: ``(B, Q, 4)`` predicted ``(cx, cy, w, h)`` in ``[0, 1]``.
        targets: per image ``labels`` ``(M_b,)`` in ``0..K - 1`` and ``boxes`` ``(M_b, 4)``
            normalised ``(cx, cy, w, h)``.
        indices: per image the matching ``(prediction indices, target indices)``, both ``(n_b,)``.
        num_boxes: the normaliser of the box terms (the batch's number of true boxes, >= 1).
        eos_coef: weight of the no-object class in the cross-entropy.

    Returns:
        ``{"loss_ce", "loss_bbox", "loss_giou"}``: the weighted-mean cross-entropy over all
        ``B x Q`` predictions, and the summed L1 and ``1 - GIoU`` of the matched boxes over
        ``num_boxes``.

    >>> logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])
    >>> boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]])
    >>> t = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    >>> out = hungarian_loss(logits, boxes, t, [(torch.tensor([0]), torch.tensor([0]))], 1.0)
    >>> [round(float(out[k]), 4) for k in ("loss_ce", "loss_bbox", "loss_giou")]
    [0.0134, 0.0, 0.0]
    """
    check_set_inputs(logits, boxes, targets)
    num_classes = logits.shape[-1] - 1
    batch_idx = torch.cat(
        [torch.full((len(src),), i, dtype=torch.long) for i, (src, _) in enumerate(indices)]
    ).to(logits.device)
    src_idx = torch.cat([src for src, _ in indices]).to(logits.device, torch.long)
    target_classes = torch.full(
        logits.shape[:2], num_classes, dtype=torch.long, device=logits.device
    )
    matched_labels = torch.cat(
        [
            t["labels"][tgt.to(t["labels"].device)]
            for t, (_, tgt) in zip(targets, indices, strict=True)
        ]
    ).to(logits.device, torch.long)
    target_classes[batch_idx, src_idx] = matched_labels
    weight = logits.new_ones(num_classes + 1)
    weight[-1] = eos_coef
    loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, weight)

    src_boxes = boxes[batch_idx, src_idx]
    target_boxes = torch.cat(
        [
            t["boxes"][tgt.to(t["boxes"].device)]
            for t, (_, tgt) in zip(targets, indices, strict=True)
        ]
    ).to(boxes)
    loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="sum") / num_boxes
    # Each matched pair as a batch of 1 x 1 pairs: no eps (torchvision's loss adds 1e-7 to
    # the denominators, which leaves a perfect small box a non-zero loss).
    giou = generalized_box_iou(
        box_convert(src_boxes, "cxcywh", "xyxy")[:, None],
        box_convert(target_boxes, "cxcywh", "xyxy")[:, None],
    )
    loss_giou = (1 - giou).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}


def _num_boxes(targets: Sequence[dict[str, Tensor]], device: torch.device) -> float:
    """True boxes in the batch, averaged over processes under DDP (as the authors' code), >= 1."""
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        n = n / torch.distributed.get_world_size()
    return max(float(n), 1.0)


def set_criterion(
    logits: Tensor,
    boxes: Tensor,
    targets: Sequence[dict[str, Tensor]],
    matcher: Matcher,
    eos_coef: float = 0.1,
    ce_weight: float = 1.0,
    bbox_weight: float = 5.0,
    giou_weight: float = 2.0,
    aux_loss: bool = True,
) -> dict[str, Tensor]:
    """DETR's training loss: eq. 2 on the last decoder layer, plus the auxiliary losses.

    Each decoder layer's predictions are matched to the targets on their own (``matcher``),
    then scored with :func:`hungarian_loss`; the terms come back weighted, so their sum is the
    loss to minimise.

    Args:
        logits: ``(L, B, Q, K + 1)`` class scores of the ``L`` decoder layers (or
            ``(B, Q, K + 1)`` for one), last layer last; index ``K`` is "no object".
        boxes: ``(L, B, Q, 4)`` (or ``(B, Q, 4)``) normalised ``(cx, cy, w, h)``.
        targets: per image ``labels`` ``(M_b,)`` and normalised ``boxes`` ``(M_b, 4)``.
        matcher: ``(logits, boxes, targets) -> [(pred idx, target idx), ...]`` of one layer
            (:class:`~visrep.models.detection.matcher.HungarianMatcher`).
        eos_coef: weight of the no-object class in the cross-entropy (paper: 0.1).
        ce_weight, bbox_weight, giou_weight: weights of the three terms (paper: 1, 5, 2).
        aux_loss: add the losses of the layers before the last (Sec. 3.2).

    Returns:
        ``loss_ce``, ``loss_bbox``, ``loss_giou`` for the last layer and, with ``aux_loss``,
        ``loss_ce_<l>``, ``loss_bbox_<l>``, ``loss_giou_<l>`` for layers ``l = 0..L - 2``,
        each scalar already weighted.
    """
    if logits.dim() == 3:
        logits, boxes = logits[None], boxes[None]
    if logits.dim() != 4 or boxes.shape != (*logits.shape[:3], 4):
        raise ShapeError(
            f"set_criterion: logits (L, B, Q, K + 1) and boxes (L, B, Q, 4), got "
            f"{tuple(logits.shape)} and {tuple(boxes.shape)}"
        )
    weights = {"loss_ce": ce_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
    num_boxes = _num_boxes(targets, logits.device)
    layers = range(logits.shape[0]) if aux_loss else [logits.shape[0] - 1]
    out: dict[str, Tensor] = {}
    for layer in layers:
        indices = matcher(logits[layer], boxes[layer], targets)
        terms = hungarian_loss(logits[layer], boxes[layer], targets, indices, num_boxes, eos_coef)
        suffix = "" if layer == logits.shape[0] - 1 else f"_{layer}"
        out.update({f"{k}{suffix}": weights[k] * v for k, v in terms.items()})
    return out


class SetCriterion(nn.Module):
    """Module form of :func:`set_criterion`: holds the matcher and the loss weights.

    Args:
        matcher: the bipartite matcher of one decoder layer's predictions.
        eos_coef: weight of the no-object class (paper: 0.1).
        ce_weight, bbox_weight, giou_weight: term weights (paper: 1, 5, 2).
        aux_loss: add the auxiliary decoding losses.
    """

    def __init__(
        self,
        matcher: Matcher,
        eos_coef: float = 0.1,
        ce_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        aux_loss: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < eos_coef <= 1:
            raise ConfigError(f"eos_coef must be in (0, 1], got {eos_coef}")
        for name, w in (("ce_weight", ce_weight), ("bbox_weight", bbox_weight),
                        ("giou_weight", giou_weight)):  # fmt: skip
            if w < 0:
                raise ConfigError(f"{name} must be >= 0, got {w}")
        self.matcher = matcher
        self.eos_coef, self.aux_loss = eos_coef, aux_loss
        self.ce_weight, self.bbox_weight, self.giou_weight = ce_weight, bbox_weight, giou_weight

    def forward(
        self, logits: Tensor, boxes: Tensor, targets: Sequence[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        return set_criterion(
            logits, boxes, targets, self.matcher, self.eos_coef,
            self.ce_weight, self.bbox_weight, self.giou_weight, self.aux_loss,
        )  # fmt: skip
