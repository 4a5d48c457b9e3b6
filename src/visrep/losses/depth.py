"""The losses of self-supervised monocular depth (Godard, Mac Aodha and Brostow, CVPR 2017).

Per scale ``s`` (Sec. 3.2, Eq. 1): ``C_s = a_ap (C_ap^l + C_ap^r) + a_ds (C_ds^l + C_ds^r) +
a_lr (C_lr^l + C_lr^r)``, summed over the four scales, with ``a_ap = 1``, ``a_lr = 1`` and the
smoothness weight ``0.1 / 2^s`` (Godard's code divides it by ``2^s`` so that it acts alike at
every scale).

* appearance (Eq. 2): ``alpha (1 - SSIM(I, I~)) / 2 + (1 - alpha) |I - I~|``, ``alpha = 0.85``,
  SSIM over 3x3 blocks (:func:`ssim_map`);
* disparity smoothness (Eq. 3): ``|d_x d| e^{-|d_x I|} + |d_y d| e^{-|d_y I|}``, the image
  gradients averaged over the channels;
* left-right consistency (Eq. 4): ``|d^l - d^r(x - d^l)|``, the right disparity warped into the
  left view (and the symmetric term for the right view).

Disparities are fractions of the image width (:func:`~visrep.models.depth.warp_with_disparity`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.depth import warp_with_disparity

__all__ = [
    "MonodepthLoss",
    "appearance_loss",
    "disparity_smoothness",
    "lr_consistency",
    "monodepth_loss",
    "scale_pyramid",
    "ssim_map",
]

C1 = 0.01**2  # SSIM's stabilisers for a dynamic range of 1 (Wang et al. 2004; Godard's values)
C2 = 0.03**2


def ssim_map(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of every 3x3 block of ``x`` and ``y``, Godard's (``SSIM`` in monodepth_model.py).

    ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
    box means and population (co)variances over valid 3x3 windows, ``C1 = 0.01^2``,
    ``C2 = 0.03^2``. Hand-written: kornia's ``metrics.ssim`` weighs the window with a Gaussian;
    Godard's window is a uniform 3x3 box without padding (scikit-image's ``structural_similarity``
    with ``win_size=3, gaussian_weights=False, use_sample_covariance=False`` on the interior).

    Shape: ``(B, C, H, W), (B, C, H, W) -> (B, C, H - 2, W - 2)``.
    """
    if x.shape != y.shape or x.dim() != 4 or min(x.shape[-2:]) < 3:
        raise ShapeError(
            f"ssim_map: shapes {tuple(x.shape)} and {tuple(y.shape)} must be one (B, C, H, W) "
            "with H, W >= 3"
        )
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    s_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    s_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    s_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * s_xy + C2)
    den = (mu_x**2 + mu_y**2 + C1) * (s_x + s_y + C2)
    return num / den


def appearance_loss(pred: Tensor, target: Tensor, alpha: float = 0.85) -> Tensor:
    """Godard's photometric reconstruction loss (Eq. 2), a scalar.

    ``alpha mean(clip((1 - SSIM) / 2, 0, 1)) + (1 - alpha) mean|pred - target|``; the SSIM term
    is averaged over the valid 3x3 windows, the L1 term over every pixel (as Godard's code).
    Maps under 3 pixels high or wide (the coarsest scale of a tiny input) have no window: they
    are replicate-padded to 3 for the SSIM term.

    Shape: ``(B, C, H, W), (B, C, H, W) -> ()``.
    """
    if not 0 <= alpha <= 1:
        raise ConfigError(f"appearance_loss: alpha must be in [0, 1], got {alpha}")
    h, w = pred.shape[-2:]
    pad_h, pad_w = max(0, 3 - h), max(0, 3 - w)
    a, b = pred, target
    if pad_h or pad_w:
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        a, b = F.pad(a, pads, mode="replicate"), F.pad(b, pads, mode="replicate")
    dssim = ((1 - ssim_map(a, b)) / 2).clamp(0, 1)
    return alpha * dssim.mean() + (1 - alpha) * (pred - target).abs().mean()


def disparity_smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness (Eq. 3): ``mean |d_x d| e^{-|d_x I|} + mean |d_y d| e^{-|d_y I|}``.

    Forward differences; ``|d I|`` is averaged over the image's channels. Zero for a constant
    disparity; a disparity step costs less where the image has an edge.

    Shape: ``(B, 1, H, W), (B, C, H, W) -> ()``.
    """
    if disparity.dim() != 4 or disparity.shape[1] != 1 or image.dim() != 4:
        raise ShapeError(
            f"disparity_smoothness: disparity {tuple(disparity.shape)} must be (B, 1, H, W), "
            f"image {tuple(image.shape)} (B, C, H, W)"
        )
    if disparity.shape[-2:] != image.shape[-2:] or disparity.shape[0] != image.shape[0]:
        raise ShapeError(
            f"disparity_smoothness: disparity {tuple(disparity.shape)} and image "
            f"{tuple(image.shape)} differ in batch or size"
        )
    dx_d = disparity[..., :, 1:] - disparity[..., :, :-1]
    dy_d = disparity[..., 1:, :] - disparity[..., :-1, :]
    wx = torch.exp(-(image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True))
    wy = torch.exp(-(image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True))
    return (dx_d * wx).abs().mean() + (dy_d * wy).abs().mean()


def lr_consistency(disp_left: Tensor, disp_right: Tensor) -> Tensor:
    """Left-right disparity consistency (Eq. 4), both views: a scalar.

    ``mean |d^l - d^r(x - d^l)| + mean |d^r - d^l(x + d^r)|``: each disparity map is compared
    with the other view's map warped into its view
    (:func:`~visrep.models.depth.warp_with_disparity`). Zero when the maps are consistent.

    Shape: ``(B, 1, H, W), (B, 1, H, W) -> ()``.
    """
    if disp_left.shape != disp_right.shape:
        raise ShapeError(
            f"lr_consistency: left {tuple(disp_left.shape)} and right {tuple(disp_right.shape)} "
            "disparities differ in shape"
        )
    r2l = warp_with_disparity(disp_right, disp_left, "right_to_left")
    l2r = warp_with_disparity(disp_left, disp_right, "left_to_right")
    return (disp_left - r2l).abs().mean() + (disp_right - l2r).abs().mean()


def scale_pyramid(image: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """``image`` resized to each ``(H, W)`` by area averaging (Godard's ``resize_area``)."""
    return [image if tuple(image.shape[-2:]) == tuple(s) else F.interpolate(
        image, size=tuple(s), mode="area"
    ) for s in sizes]  # fmt: skip


def monodepth_loss(
    disparities: Sequence[Tensor],
    left: Tensor,
    right: Tensor,
    alpha: float = 0.85,
    smoothness_weight: float = 0.1,
    lr_weight: float = 1.0,
    appearance_weight: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Godard's total loss over the scales (Sec. 3.2, Eq. 1).

    Args:
        disparities: per scale, finest first, ``(B, 2, H_s, W_s)``: ``d^l`` then ``d^r``,
            fractions of the width.
        left, right: ``(B, C, H, W)`` the rectified views (``H_0, W_0 = H, W``).
        alpha: the SSIM share of the appearance loss (0.85).
        smoothness_weight: ``a_ds``; scale ``s`` weighs ``a_ds / 2^s`` (0.1).
        lr_weight: ``a_lr`` (1).
        appearance_weight: ``a_ap`` (1).

    Returns:
        ``(total, parts)``: the scalar loss and its unweighted ``appearance``, ``smoothness``,
        ``lr_consistency`` sums over the scales.
    """
    if not disparities:
        raise ShapeError("monodepth_loss: no disparity scales given")
    if left.shape != right.shape or left.dim() != 4:
        raise ShapeError(
            f"monodepth_loss: left {tuple(left.shape)} and right {tuple(right.shape)} must be one "
            "(B, C, H, W)"
        )
    for d in disparities:
        if d.dim() != 4 or d.shape[:2] != (left.shape[0], 2):
            raise ShapeError(
                f"monodepth_loss: a disparity scale has shape {tuple(d.shape)}, expected "
                f"({left.shape[0]}, 2, H_s, W_s)"
            )
    if tuple(disparities[0].shape[-2:]) != tuple(left.shape[-2:]):
        raise ShapeError(
            f"monodepth_loss: the finest disparity {tuple(disparities[0].shape)} must have the "
            f"images' size {tuple(left.shape[-2:])}"
        )
    sizes = [tuple(d.shape[-2:]) for d in disparities]
    lefts, rights = scale_pyramid(left, sizes), scale_pyramid(right, sizes)
    zero = left.new_zeros(())
    parts = {"appearance": zero, "smoothness": zero, "lr_consistency": zero}
    total = zero
    for s, (d, il, ir) in enumerate(zip(disparities, lefts, rights, strict=True)):
        dl, dr = d[:, :1], d[:, 1:]
        est_left = warp_with_disparity(ir, dl, "right_to_left")
        est_right = warp_with_disparity(il, dr, "left_to_right")
        ap = appearance_loss(est_left, il, alpha) + appearance_loss(est_right, ir, alpha)
        ds = disparity_smoothness(dl, il) + disparity_smoothness(dr, ir)
        lr = lr_consistency(dl, dr)
        total = total + appearance_weight * ap + smoothness_weight / 2**s * ds + lr_weight * lr
        parts = {
            "appearance": parts["appearance"] + ap.detach(),
            "smoothness": parts["smoothness"] + ds.detach(),
            "lr_consistency": parts["lr_consistency"] + lr.detach(),
        }
    return total, parts


class MonodepthLoss(nn.Module):
    """:func:`monodepth_loss` with its weights held as options; returns the total only."""

    def __init__(
        self,
        alpha: float = 0.85,
        smoothness_weight: float = 0.1,
        lr_weight: float = 1.0,
        appearance_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        for name, v in (
            ("smoothness_weight", smoothness_weight),
            ("lr_weight", lr_weight),
            ("appearance_weight", appearance_weight),
        ):
            if v < 0:
                raise ConfigError(f"{name} must be >= 0, got {v}")
        self.alpha, self.smoothness_weight = alpha, smoothness_weight
        self.lr_weight, self.appearance_weight = lr_weight, appearance_weight

    def forward(self, disparities: Sequence[Tensor], left: Tensor, right: Tensor) -> Tensor:
        return monodepth_loss(
            disparities, left, right, self.alpha, self.smoothness_weight, self.lr_weight,
            self.appearance_weight,
        )[0]  # fmt: skip
