"""Heat-map keypoints: Gaussian targets, decoding (argmax with sub-pixel refinement, soft-argmax),
PCK and pixel error, and part affinity fields.

Coordinates are pixel-index coordinates throughout, as OpenCV and COCO give them: the centre of
the pixel in row ``i`` and column ``j`` is ``(x, y) = (j, i)``. A heat map at stride ``s`` of an
image maps to image pixels by ``x_img = (x_map + 0.5) * s - 0.5`` (:func:`map_to_image`).

* :func:`gaussian_heatmaps`: the belief-map targets of Convolutional Pose Machines (Wei et al.,
  CVPR 2016, Sec. 3.1: a Gaussian peak at each part).
* :func:`soft_argmax`: seed 001 ("LIFT", cost function (2)):
  ``softargmax(S) = sum_x exp(beta S(x)) x / sum_x exp(beta S(x))``.
* :func:`heatmap_argmax`: the hard argmax with sub-pixel refinement.
* :func:`pck`, :func:`mean_pixel_error`: the usual keypoint metrics.
* :func:`paf_targets`, :func:`paf_scores`: part affinity fields and the line-integral
  association score of Cao et al. (CVPR 2017, Eq. 8-11).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ShapeError

Refine = Literal["quadratic", "quarter", "none"]


def _check_keypoints(keypoints: Tensor, name: str, dims: int) -> None:
    if keypoints.dim() != dims or keypoints.shape[-1] != 3:
        want = "(B, K, 3)" if dims == 3 else "(B, N, K, 3)"
        raise ShapeError(f"{name}: keypoints have shape {tuple(keypoints.shape)}, expected {want}")


def gaussian_heatmaps(
    keypoints: Tensor, size: tuple[int, int], sigma: float
) -> tuple[Tensor, Tensor]:
    """Gaussian target maps ``exp(-|p - x_k|^2 / (2 sigma^2))``, one per keypoint (CPM, Sec. 3.1).

    A keypoint counts when its visibility is > 0 (COCO: 1 labelled but occluded, 2 visible) and its
    coordinates are finite; the others get a zero map and a 0 in the mask, so a masked loss
    ignores them. A labelled point outside the map keeps the part of its Gaussian that falls
    inside.

    Args:
        keypoints: ``(B, K, 3)`` x, y (map pixels) and visibility.
        size: ``(H, W)`` of the maps.
        sigma: standard deviation in map pixels.

    Returns:
        heat maps ``(B, K, H, W)`` (peak 1 at a pixel centre) and mask ``(B, K)`` float.

    >>> h, m = gaussian_heatmaps(torch.tensor([[[2.0, 1.0, 2.0], [0.0, 0.0, 0.0]]]), (3, 4), 1.0)
    >>> h[0, 0].argmax().item(), h[0, 0, 1, 2].item(), h[0, 1].abs().sum().item(), m.tolist()
    (6, 1.0, 0.0, [[1.0, 0.0]])
    """
    _check_keypoints(keypoints, "gaussian_heatmaps", 3)
    if sigma <= 0:
        raise ShapeError(f"gaussian_heatmaps: sigma must be > 0, got {sigma}")
    h, w = size
    xy = keypoints[..., :2]
    valid = (keypoints[..., 2] > 0) & torch.isfinite(xy).all(-1)
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device)
    # separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) exp(-dy^2 / 2s^2)
    gx = torch.exp(-((xs - xy[..., 0, None]) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((ys - xy[..., 1, None]) ** 2) / (2 * sigma**2))  # (B, K, H)
    mask = valid.to(keypoints.dtype)
    return gy[..., :, None] * gx[..., None, :] * mask[..., None, None], mask


def soft_argmax(heatmaps: Tensor, beta: float = 1.0) -> Tensor:
    """Seed 001's soft-argmax: the expected pixel coordinates under ``softmax(beta * S)`` over
    the pixels of each map.

    ``softargmax(S) = sum_x exp(beta S(x)) x / sum_x exp(beta S(x))`` (seed 001, LIFT's cost
    function (2)), differentiable in ``S``. As ``beta`` grows it tends to the argmax; with
    several equal maxima it tends to their MEAN (two equal peaks give their midpoint, where
    the map may be low), and any mass away from the peak pulls the estimate towards the
    map's centre, more so for small ``beta``.

    visrep computes it itself rather than through kornia's ``spatial_soft_argmax2d`` (which
    gives the same numbers with ``temperature = 1 / beta`` and ``normalized_coordinates=False``,
    tested): the seed's ``beta`` is a multiplier (``beta = 0`` is the map's centre, no
    temperature gives it), coordinates are pixel indices with no flag to forget, and any
    leading dimensions are accepted.

    Args:
        heatmaps: ``(..., H, W)`` scores.
        beta: inverse temperature (>= 0).

    Returns:
        ``(..., 2)`` x, y in pixel-index coordinates.

    >>> soft_argmax(torch.tensor([[0.0, 0.0], [0.0, 50.0]]), beta=1.0).round(decimals=3).tolist()
    [1.0, 1.0]
    """
    if heatmaps.dim() < 2:
        raise ShapeError(
            f"soft_argmax: heat maps have shape {tuple(heatmaps.shape)}, expected (..., H, W)"
        )
    h, w = heatmaps.shape[-2:]
    p = (beta * heatmaps).flatten(-2).softmax(-1).unflatten(-1, (h, w))
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    return torch.stack(((p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)), -1)


def heatmap_argmax(heatmaps: Tensor, refine: Refine = "quadratic") -> tuple[Tensor, Tensor]:
    """The maximum of each map with sub-pixel refinement, and its value.

    Refinements, per axis from the maximum ``h0`` and its two neighbours ``h-``, ``h+``:

    * ``quadratic``: the vertex of the parabola through the LOGS of the three values,
      ``0.5 (l- - l+) / (l- - 2 l0 + l+)`` (values clamped to >= 1e-10 first): exact for a
      Gaussian map, whose log is a parabola; the per-axis form of the Taylor expansion of
      Zhang et al. (DARK, CVPR 2020) without the cross derivative. Clamped to half a pixel.
    * ``quarter``: a quarter pixel towards the higher neighbour (Newell et al. 2016, the
      hourglass / SimpleBaseline decoding).
    * ``none``: the integer argmax.

    A maximum on the border of a map is not refined along that axis.

    Args:
        heatmaps: ``(..., H, W)``.
        refine: see above.

    Returns:
        coordinates ``(..., 2)`` (x, y pixel indices) and the maximum values ``(...)``.

    >>> xy, v = heatmap_argmax(torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]), "quarter")
    >>> xy.tolist(), v.item()
    ([1.25, 0.0], 1.0)
    """
    if heatmaps.dim() < 2:
        raise ShapeError(
            f"heatmap_argmax: heat maps have shape {tuple(heatmaps.shape)}, expected (..., H, W)"
        )
    if refine not in ("quadratic", "quarter", "none"):
        raise ShapeError(
            f"heatmap_argmax: refine must be quadratic, quarter or none, got {refine!r}"
        )
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    value, idx = flat.max(-1)
    y, x = idx // w, idx % w
    xy = torch.stack((x, y), -1).to(
        heatmaps.dtype if heatmaps.is_floating_point() else torch.float32
    )
    if refine == "none":
        return xy, value

    def at(dx: int, dy: int) -> Tensor:
        xi, yi = (x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1)
        return flat.gather(-1, (yi * w + xi)[..., None])[..., 0]

    offsets = []
    for (lo, hi), pos, size in (((at(-1, 0), at(1, 0)), x, w), ((at(0, -1), at(0, 1)), y, h)):
        inside = (pos > 0) & (pos < size - 1)
        if refine == "quarter":
            off = 0.25 * torch.sign(hi - lo)
        else:
            l0, lm, lp = (v.clamp_min(1e-10).log() for v in (value, lo, hi))
            curv = lm - 2 * l0 + lp
            off = torch.where(curv < 0, 0.5 * (lm - lp) / curv.clamp_max(-1e-12), 0.0)
            off = off.clamp(-0.5, 0.5)
        offsets.append(torch.where(inside, off, 0.0))
    return xy + torch.stack(offsets, -1).to(xy.dtype), value


def with_background(heatmaps: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Append CPM's background belief map ``1 - max_k h_k`` (always supervised) to target maps.

    Shape: ``(B, K, H, W)``, mask ``(B, K)`` -> ``(B, K + 1, H, W)``, ``(B, K + 1)``.
    """
    bg = (
        1 - heatmaps.amax(1, keepdim=True)
        if heatmaps.shape[1]
        else torch.ones_like(heatmaps[:, :1])
    )
    return torch.cat((heatmaps, bg), 1), torch.cat((mask, mask.new_ones(mask.shape[0], 1)), 1)


def heatmap_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked squared error of belief maps: ``sum_k m_bk mean_p (pred - target)^2``, averaged
    over the batch (CPM's per-stage L2 loss, Eq. 4, with unlabelled parts left out).

    Shape: pred and target ``(B, K, H, W)``, mask ``(B, K)``; returns ``()``.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ShapeError(
            f"heatmap_mse: pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} do not fit (expected (B, K, H, W) twice and (B, K))"
        )
    per_map = (pred - target).pow(2).mean((-2, -1))
    return (per_map * mask).sum() / pred.shape[0]


def map_to_image(xy: Tensor, stride: tuple[float, float]) -> Tensor:
    """Pixel-index coordinates on a map at ``stride = (sx, sy)`` to image pixels:
    ``x_img = (x_map + 0.5) sx - 0.5`` (pixel centres map to pixel centres)."""
    s = xy.new_tensor(stride)
    return (xy + 0.5) * s - 0.5


def image_to_map(keypoints: Tensor, stride: tuple[float, float]) -> Tensor:
    """The inverse of :func:`map_to_image` on the x, y of ``(..., 3)`` keypoints (visibility kept)."""
    s = keypoints.new_tensor(stride)
    return torch.cat(((keypoints[..., :2] + 0.5) / s - 0.5, keypoints[..., 2:]), -1)


def keypoint_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Euclidean distances ``(...,)`` between predicted ``(..., 2)`` and true ``(..., >= 2)`` x, y."""
    return (pred[..., :2] - target[..., :2]).norm(dim=-1)


def pck(
    pred: Tensor,
    target: Tensor,
    visible: Tensor,
    threshold: float,
    normaliser: Tensor | float,
) -> Tensor:
    """Percentage of correct keypoints: the share of visible points whose error is at most
    ``threshold * normaliser`` (PCK of Yang and Ramanan 2013; PCKh uses the head size).

    Args:
        pred: ``(B, K, 2)`` predicted x, y.
        target: ``(B, K, >= 2)`` true x, y.
        visible: ``(B, K)`` bool or 0/1: the points that count.
        threshold: fraction of the normaliser (e.g. 0.05).
        normaliser: per-sample length ``(B,)`` (image diagonal, box size, head size) or one number.

    Returns:
        ``()`` the share in [0, 1]; NaN when no point is visible.

    >>> pred = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    >>> pck(pred, torch.zeros(1, 2, 2), torch.ones(1, 2), 0.5, 8.0).item()
    0.5
    """
    err = keypoint_errors(pred, target)
    norm = torch.as_tensor(normaliser, dtype=err.dtype, device=err.device)
    norm = norm[..., None] if norm.dim() == 1 else norm
    vis = visible.bool()
    correct = (err <= threshold * norm) & vis
    return correct.sum().to(err.dtype) / vis.sum().to(err.dtype)


def mean_pixel_error(pred: Tensor, target: Tensor, visible: Tensor) -> Tensor:
    """Mean Euclidean distance over the visible points (``(B, K, 2)`` vs ``(B, K, >= 2)``, mask
    ``(B, K)``); NaN when none is visible."""
    err = keypoint_errors(pred, target)
    vis = visible.bool()
    return err[vis].mean() if bool(vis.any()) else err.new_tensor(float("nan"))


class SoftArgmax(nn.Module):
    """Module form of :func:`soft_argmax` (holds ``beta``)."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, heatmaps: Tensor) -> Tensor:
        return soft_argmax(heatmaps, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class HeatmapArgmax(nn.Module):
    """Module form of :func:`heatmap_argmax` (holds ``refine``); returns coordinates and values."""

    def __init__(self, refine: Refine = "quadratic") -> None:
        super().__init__()
        self.refine = refine

    def forward(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        return heatmap_argmax(heatmaps, self.refine)

    def extra_repr(self) -> str:
        return f"refine={self.refine!r}"


# -- part affinity fields (Cao et al., CVPR 2017) ---------------------------------------------------


def _check_limbs(limbs: Tensor, k: int) -> Tensor:
    limbs = torch.as_tensor(limbs, dtype=torch.long)
    if (
        limbs.dim() != 2
        or limbs.shape[1] != 2
        or (limbs.numel() and not (limbs.min() >= 0 and limbs.max() < k))
    ):
        raise ShapeError(
            f"part affinity fields: limbs must be (L, 2) keypoint indices in [0, {k}), got "
            f"{limbs.tolist()}"
        )
    return limbs


def paf_targets(keypoints: Tensor, limbs: Tensor, size: tuple[int, int], width: float) -> Tensor:
    """Part affinity field targets of several instances (Cao et al. 2017, Eq. 8-9).

    For instance ``n`` and limb ``c`` from joint ``j1`` to ``j2`` (both labelled), a pixel ``p``
    gets the unit vector ``v = (x_j2 - x_j1) / |x_j2 - x_j1|`` when
    ``0 <= v . (p - x_j1) <= l`` and ``|v_perp . (p - x_j1)| <= width`` (Eq. 8), else 0; the
    field is the average over the instances whose limb covers the pixel (Eq. 9: divided by the
    number of non-zero vectors there).

    Args:
        keypoints: ``(B, N, K, 3)`` x, y (map pixels), visibility of ``N`` instances (pad with
            visibility 0).
        limbs: ``(L, 2)`` keypoint indices ``(j1, j2)``.
        size: ``(H, W)`` of the fields.
        width: the limb's half width ``sigma_l`` in map pixels.

    Returns:
        ``(B, 2 L, H, W)``: x and y components of limb ``c`` at channels ``2c`` and ``2c + 1``.
    """
    _check_keypoints(keypoints, "paf_targets", 4)
    limbs = _check_limbs(limbs, keypoints.shape[2]).to(keypoints.device)
    h, w = size
    a, b = keypoints[:, :, limbs[:, 0]], keypoints[:, :, limbs[:, 1]]  # (B, N, L, 3)
    d = b[..., :2] - a[..., :2]
    length = d.norm(dim=-1)
    ok = (a[..., 2] > 0) & (b[..., 2] > 0) & (length > 0) & torch.isfinite(length)
    v = torch.where(ok[..., None], d / length.clamp_min(1e-12)[..., None], 0.0)
    a_xy = torch.where(ok[..., None], a[..., :2], 0.0)
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device)
    px = xs.view(1, 1, 1, 1, w) - a_xy[..., 0, None, None]  # (B, N, L, 1, W)
    py = ys.view(1, 1, 1, h, 1) - a_xy[..., 1, None, None]  # (B, N, L, H, 1)
    vx, vy = v[..., 0, None, None], v[..., 1, None, None]
    along = vx * px + vy * py
    across = (vx * py - vy * px).abs()
    on = (along >= 0) & (along <= length[..., None, None]) & (across <= width) & ok[..., None, None]
    on = on.to(keypoints.dtype)  # (B, N, L, H, W)
    count = on.sum(1).clamp_min(1)  # (B, L, H, W)
    fx, fy = (on * vx).sum(1) / count, (on * vy).sum(1) / count
    return torch.stack((fx, fy), 2).flatten(1, 2)


def paf_scores(field: Tensor, starts: Tensor, ends: Tensor, samples: int = 10) -> Tensor:
    """Association scores of candidate limbs: the line integral of a part affinity field along
    each (start, end) segment (Cao et al. 2017, Eq. 10-11).

    ``E = integral_0^1 L_c(p(u)) . (d_j2 - d_j1) / |d_j2 - d_j1| du`` with
    ``p(u) = (1 - u) d_j1 + u d_j2``, approximated by the mean over ``samples`` equally spaced
    ``u`` in [0, 1], the field read bilinearly at each point.

    Args:
        field: ``(2, H, W)`` the x, y components of one limb's field.
        starts: ``(A, 2)`` candidate positions of joint ``j1`` (map pixels).
        ends: ``(C, 2)`` candidate positions of joint ``j2``.
        samples: points along each segment (>= 2).

    Returns:
        ``(A, C)`` scores; a zero-length segment scores 0.
    """
    if field.dim() != 3 or field.shape[0] != 2:
        raise ShapeError(f"paf_scores: field has shape {tuple(field.shape)}, expected (2, H, W)")
    if samples < 2:
        raise ShapeError(f"paf_scores: samples must be >= 2, got {samples}")
    h, w = field.shape[1:]
    starts, ends = starts.to(field.dtype), ends.to(field.dtype)
    d = ends[None, :, :] - starts[:, None, :]  # (A, C, 2)
    length = d.norm(dim=-1)
    u = torch.linspace(0, 1, samples, dtype=field.dtype, device=field.device)
    points = starts[:, None, None, :] + u[None, None, :, None] * d[:, :, None, :]  # (A, C, S, 2)
    scale = field.new_tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)])
    grid = (points * scale - 1).reshape(1, -1, 1, 2)  # align_corners: pixel centres at -1 .. 1
    values = F.grid_sample(field[None], grid, align_corners=True, padding_mode="zeros")
    values = values[0, :, :, 0].T.reshape(*points.shape)  # (A, C, S, 2)
    unit = d / length.clamp_min(1e-12)[..., None]
    score = (values * unit[:, :, None, :]).sum(-1).mean(-1)
    return torch.where(length > 0, score, 0.0)
