"""Samples and batches: the keys of a sample dict and the function that batches them.

A dataset item is a ``dict`` (DESIGN.md, "Samples and batches"): ``image``
(``tv_tensors.Image``, float in [0, 1], ``(C, H, W)``), and by task ``label`` (int), ``mask``,
``boxes`` with ``labels``, ``masks``, ``keypoints``, ``video`` (with ``future`` frames to forecast, or ``frame_labels`` per frame), ``flow``, ``disparity``,
``points`` (``(N, D)``: x, y, z, then per-point features) with ``point_labels`` (``(N,)``),
``events``, ``meta``; ``point`` (one vector sample ``(D,)``, e.g. a point of a 2-d
mixture) and ``image_b`` (the second domain's image of an unpaired sample, CycleGAN). A batch is the same dict with stacked tensors, or lists where
sizes vary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

IMAGE = "image"
LABEL = "label"
MASK = "mask"
BOXES = "boxes"
LABELS = "labels"
DIFFICULT = "difficult"  # per-box flag of detection samples (VOC "difficult")
MASKS = "masks"
PROPOSALS = "proposals"  # per-image region proposals (R-CNN, Fast R-CNN), XYXY boxes
KEYPOINTS = "keypoints"
VIDEO = "video"  # a clip (T, C, H, W) float in [0, 1]; a multi-clip test sample (K, T, C, H, W)
FUTURE = "future"  # the frames to forecast after ``video`` (T_out, C, H, W)
FLOW = "flow"  # optical flow (L, 2, H, W), pixels (dx, dy); a multi-clip sample (K, L, 2, H, W)
FRAME_LABELS = "frame_labels"  # per-frame classes of a sequence sample, int64 (T,)
OBJECT_MASKS = "object_masks"  # per-frame object ids of a VOS clip (T, H, W) int64, 0 background
DISPARITY = "disparity"
POINTS = "points"
POINT_LABELS = "point_labels"  # per-point classes of a point set (segmentation), int64 (N,)
EVENTS = "events"
META = "meta"
POINT = "point"  # one vector sample (D,): GAN toy mixtures
IMAGE_B = "image_b"  # the second domain's image of an unpaired sample (CycleGAN)
# Putative correspondences between two images (Yi et al. 2018): ``matches`` (N, 4) float
# (x1, y1, x2, y2, intrinsics removed), ``inliers`` (N,) bool, the true ``homography`` or
# ``essential`` (3, 3), the two cameras' ``intrinsics`` (2, 3, 3), an essential pair's ``pose``;
# a batch adds ``match_mask`` (B, N) for pairs padded to the batch's largest N.
MATCHES = "matches"
INLIERS = "inliers"
MATCH_MASK = "match_mask"
HOMOGRAPHY = "homography"
ESSENTIAL = "essential"
INTRINSICS = "intrinsics"
POSE = "pose"  # the true relative pose [R | t] (3, 4) of an essential pair, NaN when unknown

# Keys whose values keep one entry per sample in a batch, whatever their sizes.
PER_SAMPLE_KEYS = frozenset(
    {BOXES, LABELS, MASKS, PROPOSALS, KEYPOINTS, POINTS, POINT_LABELS, META}
)

Collater = Callable[[list[Any]], Any]


def image_sample(image: Tensor, label: int | None = None, **extra: Any) -> dict[str, Any]:
    """A classification sample: ``{"image": Image, "label": int}`` (``label`` left out if None)."""
    out: dict[str, Any] = {IMAGE: tv_tensors.Image(image)}
    if label is not None:
        out[LABEL] = label
    out.update(extra)
    return out


def _stack(key: str, values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, Tensor):
        if key not in PER_SAMPLE_KEYS and all(v.shape == first.shape for v in values):
            # as_subclass: a batch holds plain tensors (tv_tensors wrap single samples)
            return torch.stack([v.as_subclass(Tensor) for v in values])
        return list(values)
    if isinstance(first, bool | int) and key not in PER_SAMPLE_KEYS:
        return torch.tensor(values, dtype=torch.int64)
    if isinstance(first, float) and key not in PER_SAMPLE_KEYS:
        return torch.tensor(values, dtype=torch.float32)
    return list(values)


def collate(
    samples: Sequence[dict[str, Any]], collaters: dict[str, Collater] | None = None
) -> dict[str, Any]:
    """Batch sample dicts: tensors of one shape are stacked, ints and floats become tensors,
    everything else (boxes, point sets, ``meta``, tensors of varying size) a list.

    Args:
        samples: dicts with the same keys.
        collaters: per-key functions for types this module does not know (e.g. event streams,
            batched by the events package).

    >>> b = collate([{"image": torch.zeros(1, 2, 2), "label": 3}, {"image": torch.ones(1, 2, 2), "label": 1}])
    >>> b["image"].shape, b["label"].tolist()
    (torch.Size([2, 1, 2, 2]), [3, 1])
    """
    if not samples:
        return {}
    keys = samples[0].keys()
    collaters = collaters or {}
    out = {}
    for k in keys:
        values = [s[k] for s in samples]
        out[k] = collaters[k](values) if k in collaters else _stack(k, values)
    return out


def batch_size(batch: dict[str, Any]) -> int:
    """The number of samples in a batch dict."""
    for v in batch.values():
        return len(v)
    return 0
