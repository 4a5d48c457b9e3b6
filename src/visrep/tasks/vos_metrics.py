"""DAVIS video object segmentation measures: region similarity J, contour accuracy F, statistics.

The measures of Perazzi et al., "A Benchmark Dataset and Evaluation Methodology for Video Object
Segmentation", CVPR 2016 (Sec. 3.1), under the semi-supervised protocol of Pont-Tuset et al.,
"The 2017 DAVIS Challenge on Video Object Segmentation", arXiv:1704.00675, exactly as the
official code computes them (davisvideochallenge/davis2017-evaluation: ``metrics.py``,
``evaluation.py``, ``utils.db_statistics``; the same J and F as ``vos-benchmark``):

- **J** (eq. 1), the Jaccard index ``|M n G| / |M u G|`` of a predicted and a ground-truth
  mask; 1 when both are empty.
- **F** (eq. 2), ``2 P R / (P + R)`` of the boundary precision ``P`` and recall ``R``. A
  boundary is seg2bmap's one-pixel map (D. Martin, 2003): pixel ``(y, x)`` is on it when the
  2x2 block ``{y, y+1} x {x, x+1}`` is not constant (the last row compares only along ``x``, the
  last column only along ``y``, the corner pixel never is). A predicted boundary pixel is a match
  when a ground-truth boundary pixel lies in the disk of radius
  ``r = ceil(bound_th * sqrt(H^2 + W^2))`` around it (``bound_th = 0.008``: ``r = 8`` at 480p;
  a ``bound_th >= 1`` is ``r`` itself), the official's ``cv2.dilate`` with ``skimage``'s
  ``disk(r)`` (``dx^2 + dy^2 <= r^2``); ``P`` = matched / predicted boundary pixels, ``R``
  likewise for the ground truth. An empty predicted boundary gives ``P = 1``, an empty
  ground-truth one ``R = 1``, with ``P = 0`` (resp. ``R = 0``) when the other is not empty; ``F =
  0`` when ``P + R = 0``.
- **Statistics** of one object's per-frame values ``v`` (length ``T``): mean ``M = mean(v)``,
  recall ``O = mean(v > 0.5)``, decay ``D = mean(v[i0 : i1 + 1]) - mean(v[i3 : i4 + 1])`` with
  ``i_k = round(1 + k (T - 1) / 4 + 1e-10) - 1`` (``k = 0..4``, rounding half to even: four
  overlapping quarters, first minus last).
- **Protocol.** Ground-truth pixels of the void label (255) are background (the official reader
  sets them to 0 before anything else). The objects are ``1..N`` with ``N`` the largest id of
  the first ground-truth frame (an id below ``N`` absent from the video is still an object, whose
  empty masks score 1). The first and the last frames are not evaluated (the first is given, and
  the last is left out as in the official evaluation). J&F of the data set is
  ``(mean J + mean F) / 2`` over every object of every sequence (``J&F-Mean``).

The masks of each object are cropped to the box (plus one pixel) around every frame's prediction
and ground truth, which changes no value, and the disk test runs only at boundary pixels: per row
of the disk, a row prefix sum of the other boundary counts its pixels within the row's half-width
(two look-ups), so no dilated image is formed. Counts are integers and ratios float64, in the
official's order of operations, so per-frame J and F equal the official's bit for bit.

Two differences from the official, both on input it rejects: a prediction whose largest id is
below ``N`` (an object lost in every evaluated frame) scores the missing objects as empty masks
(davis2017-evaluation stops: "there is an index higher than the number of objects"), and
``bound_th >= 1`` must be a whole number (a fractional radius makes ``disk`` an even-sized,
off-centre kernel). The decay indices are exact for any
``T`` (the official stores them as ``uint8``, which wraps beyond 256 evaluated frames; DAVIS has
at most 104).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "DAVIS_BOUND_TH",
    "SequenceScores",
    "aggregate_scores",
    "boundary_map",
    "boundary_radius",
    "contour_accuracy",
    "evaluate_sequence",
    "region_similarity",
    "sequence_statistics",
]

DAVIS_BOUND_TH = 0.008
"""The official boundary tolerance, as a fraction of the image diagonal."""


def _check_pair(pred: Tensor, gt: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(pred, Tensor) or not isinstance(gt, Tensor):
        raise ShapeError(f"{what}: pred and gt must be tensors, got {type(pred)}, {type(gt)}")
    if pred.shape != gt.shape or pred.ndim < 2:
        raise ShapeError(
            f"{what}: pred and gt must be masks of one shape (..., H, W), got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    return pred.bool(), gt.bool()  # the official's astype(bool): any non-zero value is inside


def _count(mask: Tensor) -> Tensor:
    """Pixels set in each ``(H, W)`` map of ``(N, H, W)``, int64 (uint8 summed into int32)."""
    return mask.view(torch.uint8).sum(dim=(-2, -1), dtype=torch.int32).long()


def region_similarity(pred: Tensor, gt: Tensor) -> Tensor:
    """Region similarity J, the Jaccard index, per mask (Perazzi et al., CVPR 2016, eq. 1).

    Args:
        pred: predicted masks, bool (or non-zero = inside).
        gt: ground-truth masks of the same shape.

    Returns:
        ``|pred n gt| / |pred u gt|`` in float64, 1 where both masks are empty.

    Shape: ``(..., H, W)`` -> ``(...)``.

    >>> a = torch.zeros(10, 10, dtype=torch.bool); a[:, :4] = True
    >>> region_similarity(a, a.roll(2, dims=1)).item()  # 2 columns of 6
    0.3333333333333333
    """
    pred, gt = _check_pair(pred, gt, "region_similarity")
    lead = pred.shape[:-2]
    p, g = pred.reshape(-1, *pred.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
    return _jaccard(_count(p & g), _count(p | g)).reshape(lead)


def _jaccard(inter: Tensor, union: Tensor) -> Tensor:
    j = inter.double() / union.clamp(min=1).double()
    return torch.where(union == 0, 1.0, j)


def boundary_map(mask: Tensor) -> Tensor:
    """One-pixel-wide boundary of binary masks, the official ``seg2bmap`` at full resolution.

    A pixel is on the boundary when its 2x2 block to the lower right (``{y, y+1} x {x, x+1}``)
    is not constant; in the last row only ``x + 1`` is compared, in the last column only
    ``y + 1``, and the bottom-right pixel is never on it (D. Martin's seg2bmap, as used by the
    DAVIS F measure; boundaries sit half a pixel towards the origin).

    Args:
        mask: binary masks (bool, or non-zero = inside).

    Returns:
        bool boundary maps of the same shape.

    Shape: ``(..., H, W)`` -> ``(..., H, W)``.

    >>> m = torch.zeros(6, 6, dtype=torch.bool); m[2:4, 2:4] = True
    >>> int(boundary_map(m).sum())  # 4k pixels for a k x k square away from the border
    8
    """
    if not isinstance(mask, Tensor) or mask.ndim < 2 or 0 in mask.shape[-2:]:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask)
        raise ShapeError(f"boundary_map: mask must be (..., H, W) with H, W >= 1, got {shape}")
    x = mask.bool()
    b = torch.zeros_like(x)
    c = x[..., :-1, :-1]
    b[..., :-1, :-1] = (c ^ x[..., :-1, 1:]) | (c ^ x[..., 1:, :-1]) | (c ^ x[..., 1:, 1:])
    b[..., -1, :-1] = x[..., -1, :-1] ^ x[..., -1, 1:]
    b[..., :-1, -1] = x[..., :-1, -1] ^ x[..., 1:, -1]
    return b


def boundary_radius(height: int, width: int, bound_th: float = DAVIS_BOUND_TH) -> int:
    """Pixel radius of the F measure's tolerance disk, ``ceil(bound_th * sqrt(H^2 + W^2))``.

    A ``bound_th >= 1`` is the radius in pixels (a whole number), as in the official code.

    >>> boundary_radius(480, 854)
    8
    """
    if not (bound_th >= 0) or math.isinf(bound_th):
        raise ConfigError(f"bound_th: expected a finite value >= 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ConfigError(f"bound_th: a radius in pixels (>= 1) must be whole, got {bound_th}")
        return int(bound_th)
    # np.linalg.norm of the shape: sqrt of the exact integer sum of squares, in float64
    return math.ceil(bound_th * math.sqrt(float(height * height + width * width)))


def _matched(src: Tensor, ref: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """Per map of ``(N, h, w)``: how many ``src`` boundary pixels have a ``ref`` boundary pixel
    within the disk of ``radius`` (the official ``sum(src * dilate(ref, disk))``), and how many
    ``src`` boundary pixels there are."""
    n, h, w = src.shape
    r = radius
    dtype = torch.int16 if w < 2**15 - 1 else torch.int32
    # row prefix sums of ref, padded by r zero rows above and below and r columns either side
    # (left: 0, right: the row total), so every look-up below lands inside without clamping
    pref = torch.zeros(n, h + 2 * r, w + 2 * r + 1, dtype=dtype, device=src.device)
    rows = pref[:, r : r + h]
    torch.cumsum(ref.view(torch.uint8), dim=-1, dtype=dtype, out=rows[..., r + 1 : r + 1 + w])
    rows[..., r + 1 + w :] = rows[..., r + w : r + w + 1]
    t, y, x = src.nonzero(as_tuple=True)
    dy = torch.arange(-r, r + 1, device=src.device)
    half = torch.tensor([math.isqrt(r * r - d * d) for d in range(-r, r + 1)], device=src.device)
    stride = w + 2 * r + 1
    # ref pixels of row y + dy in [x - half, x + half]: pref[.., x + half + r + 1] - pref[.., x - half + r]
    start = (t * (h + 2 * r) + y + r) * stride + x
    hi = start[:, None] + (dy * stride + half + r + 1)[None, :]
    lo = hi - (2 * half + 1)[None, :]
    flat = pref.view(-1)  # index_select: several times faster than advanced indexing on CPU
    above = flat.index_select(0, hi.view(-1)) > flat.index_select(0, lo.view(-1))
    hit = above.view(hi.shape).any(dim=1)
    return torch.bincount(t[hit], minlength=n), torch.bincount(t, minlength=n)


def _crop(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Both ``(N, H, W)`` stacks cut to the box around every set pixel, grown by one pixel
    (clamped to the image): seg2bmap then gives the same boundary pixels, all inside."""
    union = (pred | gt).any(dim=0)
    rows = union.any(dim=1).nonzero()
    cols = union.any(dim=0).nonzero()
    if rows.numel() == 0:
        return pred[:, :1, :1], gt[:, :1, :1]  # all empty: one background pixel, no boundary
    h, w = union.shape
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)
    return pred[:, y0:y1, x0:x1].contiguous(), gt[:, y0:y1, x0:x1].contiguous()


def _f_measure(pred_b: Tensor, gt_b: Tensor, radius: int) -> Tensor:
    fg_match, n_fg = _matched(pred_b, gt_b, radius)
    gt_match, n_gt = _matched(gt_b, pred_b, radius)
    precision = torch.where(n_fg == 0, 1.0, fg_match.double() / n_fg.clamp(min=1).double())
    recall = torch.where(n_gt == 0, 1.0, gt_match.double() / n_gt.clamp(min=1).double())
    precision = torch.where((n_fg > 0) & (n_gt == 0), 0.0, precision)
    recall = torch.where((n_fg == 0) & (n_gt > 0), 0.0, recall)
    total = precision + recall
    return torch.where(total == 0, 0.0, 2 * precision * recall / torch.where(total == 0, 1, total))


def _j_and_f(pred: Tensor, gt: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """J and F of ``(N, H, W)`` bool stacks, sharing one crop."""
    p, g = _crop(pred, gt)
    j = _jaccard(_count(p & g), _count(p | g))
    return j, _f_measure(boundary_map(p), boundary_map(g), radius)


def contour_accuracy(pred: Tensor, gt: Tensor, bound_th: float = DAVIS_BOUND_TH) -> Tensor:
    """Contour accuracy F, the boundary F-measure, per mask (Perazzi et al., CVPR 2016, eq. 2).

    Args:
        pred: predicted masks, bool (or non-zero = inside).
        gt: ground-truth masks of the same shape.
        bound_th: tolerance as a fraction of the image diagonal (or, ``>= 1``, in pixels).

    Returns:
        ``2 P R / (P + R)`` in float64 (conventions for empty boundaries in the module notes).

    Shape: ``(..., H, W)`` -> ``(...)``.

    >>> a = torch.zeros(40, 40, dtype=torch.bool); a[10:20, 10:20] = True
    >>> contour_accuracy(a, a.roll(1, dims=1)).item()  # a 1 px shift is within r = 1
    1.0
    """
    pred, gt = _check_pair(pred, gt, "contour_accuracy")
    radius = boundary_radius(pred.shape[-2], pred.shape[-1], bound_th)
    lead = pred.shape[:-2]
    p, g = pred.reshape(-1, *pred.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
    p, g = _crop(p, g)
    return _f_measure(boundary_map(p), boundary_map(g), radius).reshape(lead)


def _decay_bins(n: int) -> list[int]:
    return (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64).tolist()


def sequence_statistics(values: Tensor) -> dict[str, Tensor]:
    """Mean, recall and decay of per-frame values (DAVIS ``db_statistics``; Perazzi et al.,
    CVPR 2016, Sec. 3.2).

    ``mean`` is the NaN-ignoring mean, ``recall`` the share of frames above 0.5, ``decay`` the
    mean of the first of four overlapping quarters minus that of the last.

    Args:
        values: per-frame J or F values, frames last.

    Returns:
        ``{"mean", "recall", "decay"}``, float64 tensors of the leading shape.

    Shape: ``(..., T)`` -> ``(...)`` each.

    >>> s = sequence_statistics(torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))
    >>> [s[k].item() for k in ("mean", "recall", "decay")]  # decay: mean(1, 1) - mean(0, 0)
    [0.5, 0.4, 1.0]
    """
    if not isinstance(values, Tensor) or values.ndim < 1 or values.shape[-1] < 1:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values)
        raise ShapeError(f"sequence_statistics: values must be (..., T) with T >= 1, got {shape}")
    v = values.double()
    i = _decay_bins(v.shape[-1])
    first, last = v[..., i[0] : i[1] + 1], v[..., i[3] : i[4] + 1]
    return {
        "mean": torch.nanmean(v, dim=-1),
        "recall": (v > 0.5).double().mean(dim=-1),
        "decay": torch.nanmean(first, dim=-1) - torch.nanmean(last, dim=-1),
    }


@dataclass(frozen=True)
class SequenceScores:
    """DAVIS scores of one sequence, one row per object.

    Attributes:
        object_ids: the objects ``1..N``, ``(N,)`` int64.
        frames: indices of the evaluated frames in the input, ``(T,)`` int64.
        j: per-frame J, ``(N, T)`` float64.
        f: per-frame F, ``(N, T)`` float64.
        j_stats: ``{"mean", "recall", "decay"}`` of ``j``, each ``(N,)``.
        f_stats: the same of ``f``.
    """

    object_ids: Tensor
    frames: Tensor
    j: Tensor
    f: Tensor
    j_stats: dict[str, Tensor]
    f_stats: dict[str, Tensor]

    @property
    def jf_mean(self) -> Tensor:
        """Per-object J&F, ``(J mean + F mean) / 2``, ``(N,)``."""
        return (self.j_stats["mean"] + self.f_stats["mean"]) / 2


def evaluate_sequence(
    pred: Tensor,
    gt: Tensor,
    bound_th: float = DAVIS_BOUND_TH,
    skip_first_last: bool = True,
    void_label: int | None = 255,
) -> SequenceScores:
    """DAVIS semi-supervised evaluation of one sequence, per object (Pont-Tuset et al. 2017).

    Args:
        pred: predicted object ids per pixel, 0 = background.
        gt: ground-truth object ids per pixel; ``void_label`` pixels count as background.
        bound_th: F tolerance (see :func:`contour_accuracy`).
        skip_first_last: leave out the first and the last frame (the semi-supervised protocol;
            False for the unsupervised one, without its proposal matching).
        void_label: ground-truth id read as background, or None.

    Returns:
        :class:`SequenceScores` of the objects ``1..N``, ``N`` the largest id of ``gt[0]``.

    Shape: ``pred`` and ``gt`` ``(T, H, W)`` integer, ``T >= 3`` with ``skip_first_last``.

    >>> gt = torch.zeros(4, 8, 8, dtype=torch.long); gt[:, 2:5, 2:5] = 1
    >>> evaluate_sequence(gt, gt).jf_mean.tolist()
    [1.0]
    """
    for name, t in (("pred", pred), ("gt", gt)):
        if not isinstance(t, Tensor) or t.ndim != 3 or t.dtype.is_floating_point or t.is_complex():
            shape = (tuple(t.shape), t.dtype) if isinstance(t, Tensor) else type(t)
            raise ShapeError(
                f"evaluate_sequence: {name} must be (T, H, W) integer ids, got {shape}"
            )
    if pred.shape != gt.shape:
        raise ShapeError(
            f"evaluate_sequence: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ"
        )
    first = 1 if skip_first_last else 0
    if pred.shape[0] < 2 * first + 1:
        raise ShapeError(
            f"evaluate_sequence: need at least {2 * first + 1} frames "
            f"(skip_first_last={skip_first_last}), got {pred.shape[0]}"
        )
    if void_label is not None:  # ids keep their dtype: uint8 maps stay 8x lighter than int64
        gt = gt.masked_fill(gt == void_label, 0)
    if int(gt.min()) < 0 or int(pred.min()) < 0:
        raise DataError("evaluate_sequence: object ids must be >= 0 (0 = background)")
    n_obj = int(gt[0].max())
    frames = torch.arange(first, pred.shape[0] - first, device=pred.device)
    p_seq, g_seq = pred[first : pred.shape[0] - first], gt[first : gt.shape[0] - first]
    top = int(p_seq.max())
    if top > n_obj:
        raise DataError(
            f"evaluate_sequence: the prediction holds object id {top}, but the first "
            f"ground-truth frame has {n_obj} objects"
        )
    radius = boundary_radius(pred.shape[1], pred.shape[2], bound_th)
    j, f = [], []
    for k in range(1, n_obj + 1):  # all frames of one object at once
        jk, fk = _j_and_f(p_seq == k, g_seq == k, radius)
        j.append(jk)
        f.append(fk)
    size = (0, len(frames))
    j_all = torch.stack(j) if j else torch.zeros(size, dtype=torch.float64, device=pred.device)
    f_all = torch.stack(f) if f else torch.zeros(size, dtype=torch.float64, device=pred.device)
    return SequenceScores(
        object_ids=torch.arange(1, n_obj + 1, device=pred.device),
        frames=frames,
        j=j_all,
        f=f_all,
        j_stats=sequence_statistics(j_all),
        f_stats=sequence_statistics(f_all),
    )


def aggregate_scores(scores: Iterable[SequenceScores]) -> dict[str, float]:
    """The official global DAVIS scores: each statistic averaged over all objects of all
    sequences, and ``jf_mean = (j_mean + f_mean) / 2`` (``J&F-Mean``).

    Returns:
        ``{"jf_mean", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay"}``.
    """
    cols: dict[str, list[Tensor]] = {}
    for s in scores:
        for m, stats in (("j", s.j_stats), ("f", s.f_stats)):
            for k, v in stats.items():
                cols.setdefault(f"{m}_{k}", []).append(v.detach().double().cpu())
    if not cols or sum(v.numel() for v in cols["j_mean"]) == 0:
        raise DataError("aggregate_scores: no objects to average (no sequence, or no objects)")
    out = {k: float(torch.cat(v).mean()) for k, v in cols.items()}
    res = {"jf_mean": (out["j_mean"] + out["f_mean"]) / 2}
    for m in ("j", "f"):
        for k in ("mean", "recall", "decay"):
            res[f"{m}_{k}"] = out[f"{m}_{k}"]
    return res
