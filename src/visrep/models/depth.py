"""Self-supervised monocular depth: disparity warping, Godard's disparity network, classical stereo.

Godard, Mac Aodha and Brostow, "Unsupervised Monocular Depth Estimation with Left-Right
Consistency", CVPR 2017 (seed 001, "To go further"). A network sees the LEFT image of a
rectified pair and predicts two disparity maps, ``d^l`` (left view) and ``d^r`` (right view),
at four scales; each view is synthesised from the other by bilinear sampling along the rows
(:func:`warp_with_disparity`), which is what the losses of :mod:`visrep.losses.depth` compare.

Disparity convention (Godard's): a disparity is a **fraction of the image width**, positive,
with ``x_right = x_left - d^l * W`` for a left pixel and ``x_left = x_right + d^r * W`` for a
right pixel. ``units="pixels"`` reads the same maps in pixels.

:func:`classical_disparity` runs OpenCV's block matcher (StereoBM, Konolige 1997) or
semi-global matcher (StereoSGBM, Hirschmüller 2008) on the same pairs: the classical baselines
the task scores beside the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.layers.spatial_transformer import bilinear_sample
from visrep.models.registry import build_encoder
from visrep.models.segmentation.encoder import DilatedCNN

__all__ = [
    "DisparityNet",
    "DisparityWarp",
    "MatcherConfig",
    "classical_disparity",
    "warp_with_disparity",
]

Direction = Literal["right_to_left", "left_to_right"]


def warp_with_disparity(
    image: Tensor,
    disparity: Tensor,
    direction: Direction,
    units: Literal["width", "pixels"] = "width",
    padding_mode: Literal["zeros", "border", "reflection"] = "border",
) -> Tensor:
    """Synthesise one view of a rectified pair from the other by sampling along the rows.

    ``right_to_left``: the left view from the right ``image`` and the LEFT disparity,
    ``I~l(x, y) = I_r(x - d^l(x, y), y)`` (Godard et al. 2017, Sec. 3.1, ``generate_image_left``);
    ``left_to_right``: the right view from the left ``image`` and the RIGHT disparity,
    ``I~r(x, y) = I_l(x + d^r(x, y), y)``. The sampling is bilinear (Jaderberg et al. 2015,
    Eq. 5, :func:`~visrep.models.layers.spatial_transformer.bilinear_sample`), so the result is
    differentiable with respect to the image and to the disparity. Points outside the image
    take the border pixel (``border``, Godard's sampler) by default.

    Args:
        image: ``(B, C, H, W)`` the view to sample from.
        disparity: ``(B, 1, H, W)`` (or ``(B, H, W)``) of the view to synthesise.
        direction: ``right_to_left`` or ``left_to_right``.
        units: ``width`` (fraction of ``W``, Godard's) or ``pixels``.
        padding_mode: value outside the image (torch ``grid_sample``'s modes).

    Returns:
        ``(B, C, H, W)``.

    >>> img = torch.arange(5.0).view(1, 1, 1, 5)
    >>> out = warp_with_disparity(img, torch.ones(1, 1, 1, 5), "right_to_left", "pixels")
    >>> [round(v, 4) for v in out[0, 0, 0].tolist()]  # I~l(x) = I_r(x - 1), border repeated
    [0.0, 0.0, 1.0, 2.0, 3.0]
    """
    if image.dim() != 4:
        raise ShapeError(
            f"warp_with_disparity: image has shape {tuple(image.shape)}, expected (B, C, H, W)"
        )
    if disparity.dim() == 3:
        disparity = disparity[:, None]
    b, _, h, w = image.shape
    if disparity.shape != (b, 1, h, w):
        raise ShapeError(
            f"warp_with_disparity: disparity has shape {tuple(disparity.shape)}, expected "
            f"({b}, 1, {h}, {w}) for an image of shape {tuple(image.shape)}"
        )
    if direction not in ("right_to_left", "left_to_right"):
        raise ConfigError(
            f"warp_with_disparity: direction must be right_to_left or left_to_right, got "
            f"{direction!r}"
        )
    if units not in ("width", "pixels"):
        raise ConfigError(f"warp_with_disparity: units must be width or pixels, got {units!r}")
    dtype = torch.promote_types(image.dtype, disparity.dtype)
    # normalised x of pixel m under align_corners=False: (2 m + 1) / W - 1; a shift of one
    # width is 2 in these units, of one pixel 2 / W
    xs = (2 * torch.arange(w, device=image.device, dtype=dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, device=image.device, dtype=dtype) + 1) / h - 1
    scale = 2.0 if units == "width" else 2.0 / w
    sign = -1.0 if direction == "right_to_left" else 1.0
    x = xs.view(1, 1, w) + sign * scale * disparity[:, 0].to(dtype)
    grid = torch.stack([x, ys.view(1, h, 1).expand_as(x)], dim=-1)
    return bilinear_sample(image.to(dtype), grid, align_corners=False, padding_mode=padding_mode)


class DisparityWarp(nn.Module):
    """:func:`warp_with_disparity` with its direction, units and padding held as options."""

    def __init__(
        self,
        direction: Direction,
        units: Literal["width", "pixels"] = "width",
        padding_mode: Literal["zeros", "border", "reflection"] = "border",
    ) -> None:
        super().__init__()
        self.direction, self.units, self.padding_mode = direction, units, padding_mode

    def forward(self, image: Tensor, disparity: Tensor) -> Tensor:
        return warp_with_disparity(image, disparity, self.direction, self.units, self.padding_mode)


def _conv_elu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ELU(inplace=True))


class _DecoderBlock(nn.Module):
    """Godard's decoder stage: nearest upsampling + 3x3 conv (``upconv``), concatenation of
    the encoder skip and the upsampled coarser disparity, 3x3 conv (``iconv``), all ELU."""

    def __init__(self, c_in: int, c_skip: int, c_disp: int, c_out: int) -> None:
        super().__init__()
        self.upconv = _conv_elu(c_in, c_out)
        self.iconv = _conv_elu(c_out + c_skip + c_disp, c_out)

    def forward(self, x: Tensor, size: tuple[int, int], extra: list[Tensor]) -> Tensor:
        x = self.upconv(F.interpolate(x, size=size, mode="nearest"))
        return self.iconv(torch.cat([x, *extra], dim=1))


class DisparityNet(nn.Module):
    """Godard's encoder-decoder: left image -> left and right disparities at ``scales`` scales.

    The encoder is any backbone with ``forward_intermediates`` and ``feature_info`` (default:
    :class:`~visrep.models.segmentation.encoder.DilatedCNN` with ``encoder_channels``, stride-2
    stages as Godard's VGG-like encoder). The decoder starts from the coarsest level; each
    block upsamples to the next finer level (then, past the finest level, by 2 up to the input
    size), concatenates that level's features and, for the last ``scales - 1`` blocks, the
    upsampled disparity of the block before; the last ``scales`` blocks predict
    ``max_disparity * sigmoid(conv3x3(x))``, two channels (left, right; Godard et al. 2017,
    Sec. 4, ``get_disp``: ``0.3 * sigmoid``).

    Args:
        in_chans: input channels.
        encoder: backbone factory ``(in_chans, 0, None) -> Backbone``; None: the default CNN.
        encoder_channels: the default encoder's stage channels (ignored with ``encoder``).
        decoder_channels: channels of the decoder blocks, coarse to fine, one per block
            (``len(levels) - 1 + log2(finest reduction)`` blocks); None: halving from 256 to 16.
        scales: disparity scales (Godard: 4), at most the number of decoder blocks.
        max_disparity: the largest disparity, fraction of the width (Godard: 0.3).
        init_disparity: where the disparities start (the heads' bias is ``logit(init / max)``);
            None: zero bias, ``max / 2`` on average (Godard's). A start far beyond the true
            disparities leaves the photometric loss without a slope on fine textures; a small
            start (e.g. 0.02) helps short trainings.
        pretrained_path: encoder weights (a state dict or a visrep run / ``.ckpt``).

    Shape: ``(B, in_chans, H, W) -> [(B, 2, ceil(H / 2^s), ceil(W / 2^s)) for s in 0..scales-1]``,
    finest first; channel 0 is ``d^l``, channel 1 ``d^r``, fractions of the input width.

    >>> net = DisparityNet(3, encoder_channels=(4, 8, 8, 8), decoder_channels=(8, 8, 4, 4))
    >>> [tuple(d.shape) for d in net(torch.zeros(1, 3, 16, 24))]
    [(1, 2, 16, 24), (1, 2, 8, 12), (1, 2, 4, 6), (1, 2, 2, 3)]
    """

    def __init__(
        self,
        in_chans: int,
        encoder: BackboneFactory | None = None,
        encoder_channels: Sequence[int] = (32, 64, 128, 256, 256),
        decoder_channels: Sequence[int] | None = None,
        scales: int = 4,
        max_disparity: float = 0.3,
        init_disparity: float | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 < max_disparity <= 1:
            raise ConfigError(f"max_disparity must be in (0, 1], got {max_disparity}")
        if init_disparity is not None and not 0 < init_disparity < max_disparity:
            raise ConfigError(
                f"init_disparity must be in (0, max_disparity={max_disparity}) or null, got "
                f"{init_disparity}"
            )
        if encoder is None:
            if pretrained_path:
                raise ConfigError("pretrained_path needs an encoder")
            self.encoder: Backbone = DilatedCNN(in_chans, 0, channels=tuple(encoder_channels))
        else:
            self.encoder = build_encoder(encoder, in_chans, pretrained_path)
        info = self.encoder.feature_info
        by_reduction = {d["reduction"]: i for i, d in enumerate(info)}  # the last one wins
        reductions = sorted(by_reduction)
        if any(r < 1 or r & (r - 1) for r in reductions):
            raise ConfigError(f"encoder levels need power-of-two reductions, got {reductions}")
        self.levels = [by_reduction[r] for r in reductions]
        skips = [info[i]["num_chs"] for i in self.levels]
        # one block per finer level, then one per halving down to the input size
        self.block_reductions = [*reductions[-2::-1]]
        r = reductions[0]
        while r > 1:
            r //= 2
            self.block_reductions.append(r)
        n = len(self.block_reductions)
        if decoder_channels is None:
            decoder_channels = tuple(max(16, 256 // 2**i) for i in range(n))
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != n or min(decoder_channels, default=1) < 1:
            raise ConfigError(
                f"decoder_channels must be {n} positive channels (one per decoder block for "
                f"encoder reductions {reductions}), got {decoder_channels}"
            )
        if not 1 <= scales <= n:
            raise ConfigError(f"scales must be in 1..{n} (decoder blocks), got {scales}")
        self.in_chans, self.scales, self.max_disparity = in_chans, scales, float(max_disparity)
        skip_chs = [*skips[-2::-1], *[0] * (n - len(skips) + 1)]
        ins = [skips[-1], *decoder_channels[:-1]]
        first_out = n - scales
        self.blocks = nn.ModuleList(
            _DecoderBlock(c_in, c_skip, 2 if i > first_out else 0, c_out)
            for i, (c_in, c_skip, c_out) in enumerate(
                zip(ins, skip_chs, decoder_channels, strict=True)
            )
        )
        self.disp_heads = nn.ModuleList(
            nn.Conv2d(decoder_channels[i], 2, 3, padding=1) for i in range(first_out, n)
        )
        if init_disparity is not None:  # start near init_disparity instead of max / 2
            p = init_disparity / max_disparity
            for head in self.disp_heads:
                nn.init.constant_(head.bias, math.log(p / (1 - p)))

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ShapeError(
                f"DisparityNet expects (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        feats = self.encoder.forward_intermediates(x, indices=self.levels)
        y, skips = feats[-1], feats[-2::-1]
        first_out = len(self.blocks) - self.scales
        disps: list[Tensor] = []
        for i, (block, r) in enumerate(zip(self.blocks, self.block_reductions, strict=True)):
            size = (-(-h // r), -(-w // r))
            extra = [skips[i]] if i < len(skips) else []
            if i > first_out:  # Godard's udisp: the coarser disparity, nearest-upsampled
                extra.append(F.interpolate(disps[-1], size=size, mode="nearest"))
            y = block(y, size, extra)
            if i >= first_out:
                head = self.disp_heads[i - first_out]
                disps.append(self.max_disparity * torch.sigmoid(head(y)))
        return disps[::-1]


@dataclass(frozen=True)
class MatcherConfig:
    """OpenCV's classical stereo matchers, the baselines of the depth task.

    Attributes:
        num_disparities: the disparity search range in pixels (rounded up to a multiple of
            16, OpenCV's requirement); None: ``max_disparity`` of the input width.
        max_disparity: the range as a fraction of the width when ``num_disparities`` is None.
        bm_block: StereoBM's block size (odd, 5..255).
        sgbm_block: StereoSGBM's block size (odd); ``P1 = 8 C b^2``, ``P2 = 32 C b^2`` as in
            OpenCV's ``stereo_match`` sample.
        uniqueness: both matchers' uniqueness ratio (percent).
    """

    num_disparities: int | None = None
    max_disparity: float = 0.3
    bm_block: int = 15
    sgbm_block: int = 5
    uniqueness: int = 10

    def __post_init__(self) -> None:
        if self.num_disparities is not None and self.num_disparities < 1:
            raise ConfigError(f"num_disparities must be >= 1 or null, got {self.num_disparities}")
        for name in ("bm_block", "sgbm_block"):
            b = getattr(self, name)
            if b < 1 or b % 2 == 0 or (name == "bm_block" and b < 5):
                raise ConfigError(f"{name} must be odd (and >= 5 for StereoBM), got {b}")


def _fill_from_left(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each invalid pixel takes the nearest valid disparity to its left on its row (the usual
    hole filling of local stereo: the background is behind occluders); invalid pixels with no
    valid one to their left (the left border the search range cannot reach) take the nearest
    to their right; rows with none are 0."""
    w = disp.shape[-1]
    cols = np.arange(w)
    left = np.maximum.accumulate(np.where(valid, cols, -1), axis=-1)
    right = np.minimum.accumulate(np.where(valid, cols, w)[..., ::-1], axis=-1)[..., ::-1]
    idx = np.where(left >= 0, left, right)
    filled = np.take_along_axis(disp, np.clip(idx, 0, w - 1), axis=-1)
    return np.where(idx < w, filled, 0.0).astype(np.float32)


def classical_disparity(
    left: Tensor,
    right: Tensor,
    method: Literal["stereo_bm", "stereo_sgbm"],
    config: MatcherConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Left-view disparities in pixels by OpenCV's StereoBM or StereoSGBM, holes filled.

    Args:
        left, right: ``(B, C, H, W)`` rectified views in [0, 1] (grey for StereoBM).
        method: ``stereo_bm`` or ``stereo_sgbm``.
        config: the matchers' options.

    Returns:
        ``(disparity, valid)``: ``(B, 1, H, W)`` float32 pixels (invalid matches filled from
        the left, :func:`_fill_from_left`) and the bool mask of the matcher's own valid pixels.
    """
    import cv2

    cfg = config or MatcherConfig()
    if left.shape != right.shape or left.dim() != 4:
        raise ShapeError(
            f"classical_disparity: left {tuple(left.shape)} and right {tuple(right.shape)} "
            "must both be (B, C, H, W)"
        )
    w = left.shape[-1]
    n = cfg.num_disparities or max(1, round(cfg.max_disparity * w))
    n = 16 * -(-n // 16)

    def to_u8(x: Tensor) -> np.ndarray:
        a = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu()
        return a.numpy()

    lefts, rights = to_u8(left), to_u8(right)
    c = lefts.shape[-1]
    if method == "stereo_bm":
        matcher = cv2.StereoBM_create(numDisparities=n, blockSize=cfg.bm_block)
        matcher.setUniquenessRatio(cfg.uniqueness)
    elif method == "stereo_sgbm":
        b = cfg.sgbm_block
        matcher = cv2.StereoSGBM_create(
            minDisparity=0, numDisparities=n, blockSize=b, P1=8 * c * b * b, P2=32 * c * b * b,
            uniquenessRatio=cfg.uniqueness, disp12MaxDiff=1, speckleWindowSize=100,
            speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM,
        )  # fmt: skip
    else:
        raise ConfigError(f"method must be stereo_bm or stereo_sgbm, got {method!r}")
    out = []
    for a, b_ in zip(lefts, rights, strict=True):  # one OpenCV call per pair
        if method == "stereo_bm" and c != 1:
            a, b_ = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b_, cv2.COLOR_RGB2GRAY)
        out.append(matcher.compute(np.ascontiguousarray(a), np.ascontiguousarray(b_)))
    raw = np.stack(out).astype(np.float32) / 16  # fixed point, 4 fractional bits
    valid = raw >= 0
    disp = _fill_from_left(raw, valid)
    return torch.from_numpy(disp)[:, None], torch.from_numpy(valid)[:, None]
