"""What R-CNN and Fast R-CNN share: region proposals matched to the ground truth, the sampling of
training RoIs, the box parametrisation, images on one padded canvas and per-class detections.

Box parametrisation (R-CNN, Girshick et al. 2014, appendix C; Fast R-CNN, Girshick 2015): a
proposal ``P`` (centre ``P_x, P_y``, size ``P_w, P_h``) and its ground-truth box ``G`` give the
targets ``t_x = (G_x - P_x) / P_w``, ``t_y = (G_y - P_y) / P_h``, ``t_w = log(G_w / P_w)``,
``t_h = log(G_h / P_h)``, multiplied by per-coordinate weights (Fast R-CNN's target
normalisation: 10, 10, 5, 5). torchvision's ``BoxCoder`` implements exactly this (with sizes
``x2 - x1``, which suits continuous pixel coordinates, and ``log(1000 / 16)`` as the largest
decoded ``dw, dh``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from visrep.errors import ConfigError, ShapeError
from visrep.models.detection.base import Detection

__all__ = [
    "batch_images",
    "check_inputs",
    "check_positive",
    "check_unit",
    "clean_proposals",
    "decode_boxes",
    "encode_boxes",
    "match_proposals",
    "per_class_detections",
    "sample_rois",
]

_CLIP = math.log(1000.0 / 16)


def encode_boxes(gt: Tensor, proposals: Tensor, weights: Sequence[float]) -> Tensor:
    """Targets ``t`` of ``gt`` relative to ``proposals`` (module docstring): ``(N, 4)`` each.

    >>> p = torch.tensor([[0.0, 0, 10, 20]])
    >>> encode_boxes(torch.tensor([[1.0, 0, 11, 40]]), p, (1, 1, 1, 1)).tolist()
    [[0.10000000149011612, 0.5, 0.0, 0.6931471824645996]]
    """
    if len(gt) == 0:
        return gt.new_zeros((0, 4))
    return BoxCoder(tuple(float(w) for w in weights), _CLIP).encode_single(gt, proposals)


def decode_boxes(deltas: Tensor, proposals: Tensor, weights: Sequence[float]) -> Tensor:
    """Boxes from offsets: ``deltas (N, 4 K)`` relative to ``proposals (N, 4)`` -> ``(N, K, 4)``.

    >>> p = torch.tensor([[0.0, 0, 10, 20]])
    >>> t = encode_boxes(torch.tensor([[1.0, 0, 11, 40]]), p, (10, 10, 5, 5))
    >>> decode_boxes(t, p, (10, 10, 5, 5)).round().tolist()
    [[[1.0, 0.0, 11.0, 40.0]]]
    """
    n = len(proposals)
    if n == 0:
        return deltas.new_zeros((0, deltas.shape[-1] // 4, 4))
    coder = BoxCoder(tuple(float(w) for w in weights), _CLIP)
    return coder.decode_single(deltas, proposals).view(n, -1, 4)


def check_inputs(
    name: str, images: Sequence[Tensor], proposals: Sequence[Tensor], in_chans: int
) -> None:
    """Refuse images that are not ``(in_chans, H, W)`` and proposals that are not ``(P, 4)``
    (one per image)."""
    if not isinstance(images, list | tuple) or not images:
        raise ShapeError(f"{name} takes a non-empty list of (C, H, W) images")
    for i, im in enumerate(images):
        if im.dim() != 3 or im.shape[0] != in_chans:
            raise ShapeError(
                f"{name}: image {i} has shape {tuple(im.shape)}; expected ({in_chans}, H, W)"
            )
    if len(proposals) != len(images):
        raise ShapeError(
            f"{name}: {len(proposals)} proposal sets for {len(images)} images; expected one each"
        )
    for i, p in enumerate(proposals):
        if p.dim() != 2 or p.shape[1] != 4:
            raise ShapeError(
                f"{name}: proposals of image {i} have shape {tuple(p.shape)}; expected (P, 4) XYXY"
            )


def clean_proposals(
    proposals: Tensor, size: tuple[int, int], limit: int | None = None, min_size: float = 1.0
) -> Tensor:
    """The first ``limit`` proposals (they come ranked), clipped to the ``(H, W)`` image, without
    boxes narrower or lower than ``min_size`` pixels.

    >>> clean_proposals(torch.tensor([[-5.0, 0, 8, 8], [3, 3, 3.5, 9], [0, 0, 4, 4]]), (6, 6)).tolist()
    [[0.0, 0.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0]]
    """
    p = proposals[:limit] if limit is not None else proposals
    p = clip_boxes_to_image(p.float(), size)
    return p[remove_small_boxes(p, min_size)]


def match_proposals(proposals: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Each proposal's largest IoU with a ground-truth box and that box's index.

    Shape: ``(P, 4)``, ``(M, 4)`` -> ``(P,)`` float, ``(P,)`` int64 (0 and index 0 when
    ``M = 0``).
    """
    if len(gt_boxes) == 0 or len(proposals) == 0:
        n = len(proposals)
        return proposals.new_zeros(n), torch.zeros(n, dtype=torch.long, device=proposals.device)
    return box_iou(proposals, gt_boxes).max(1)


def sample_rois(
    max_iou: Tensor, fg_iou: float, bg_low: float, num_fg: int, num_bg: int
) -> tuple[Tensor, Tensor]:
    """Random foreground and background RoIs (without replacement, torch's global generator).

    Foreground: ``IoU >= fg_iou``, at most ``num_fg``; background: ``bg_low <= IoU < fg_iou``, at
    most ``num_bg`` (Fast R-CNN: 25% of 64 RoIs per image foreground at IoU 0.5, background in
    ``[0.1, 0.5)``; R-CNN fine-tuning: 32 foreground and 96 background windows, ``bg_low = 0``).

    Returns:
        int64 indices of the foreground and of the background RoIs.
    """
    fg = torch.nonzero(max_iou >= fg_iou).squeeze(1)
    bg = torch.nonzero((max_iou < fg_iou) & (max_iou >= bg_low)).squeeze(1)
    fg = fg[torch.randperm(len(fg), device=fg.device)[:num_fg]]
    bg = bg[torch.randperm(len(bg), device=bg.device)[:num_bg]]
    return fg, bg


def batch_images(images: Sequence[Tensor], divisible: int = 1) -> Tensor:
    """Images of different sizes on one zero-padded canvas (bottom and right; zero is the
    mean of normalised images), its sides multiples of ``divisible``.

    Shape: ``[(C, H_i, W_i)]`` -> ``(B, C, H, W)``.
    """
    h = max(int(im.shape[-2]) for im in images)
    w = max(int(im.shape[-1]) for im in images)
    h, w = -(-h // divisible) * divisible, -(-w // divisible) * divisible
    out = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    for i, im in enumerate(images):  # B copies, one per image
        out[i, :, : im.shape[-2], : im.shape[-1]] = im
    return out


def per_class_detections(
    boxes: Tensor,
    scores: Tensor,
    size: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
) -> Detection:
    """Detections of one image from per-class boxes and scores: clip to the image, drop scores
    at or below ``score_thresh`` and empty boxes, per-class non-maximum suppression at IoU
    ``nms_thresh``, the best ``max_detections``.

    Args:
        boxes: ``(N, K, 4)`` one box per RoI and class.
        scores: ``(N, K)``.
        size: the image's ``(H, W)``.

    Returns:
        ``{"boxes": (D, 4), "scores": (D,), "labels": (D,) in 0..K-1}``, best score first.
    """
    if boxes.dim() != 3 or scores.shape != boxes.shape[:2]:
        raise ShapeError(
            f"per-class boxes must be (N, K, 4) and scores (N, K), got {tuple(boxes.shape)} and "
            f"{tuple(scores.shape)}"
        )
    n, k = scores.shape
    labels = torch.arange(k, device=scores.device).expand(n, k).reshape(-1)
    b = clip_boxes_to_image(boxes.reshape(-1, 4), size)
    s = scores.reshape(-1)
    keep = torch.nonzero(s > score_thresh).squeeze(1)
    b, s, labels = b[keep], s[keep], labels[keep]
    keep = remove_small_boxes(b, 1e-2)
    b, s, labels = b[keep], s[keep], labels[keep]
    keep = batched_nms(b, s, labels, nms_thresh)[:max_detections]
    return {"boxes": b[keep], "scores": s[keep], "labels": labels[keep]}


def check_unit(**values: float) -> None:
    """Refuse options outside ``[0, 1]`` (IoU thresholds, fractions)."""
    for name, value in values.items():
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} must be in [0, 1], got {value}")


def check_positive(**values: float | None) -> None:
    """Refuse options that are not ``> 0`` (None is allowed: "no limit")."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{name} must be > 0, got {value!r}")
