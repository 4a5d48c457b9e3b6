"""Bilinear upsampling as a transposed convolution (FCN), and size alignment of dense outputs.

FCN (Long et al. 2015, Sec. 3.3) upsamples by a factor ``f`` with a transposed convolution of
kernel ``2f - f % 2``, stride ``f`` and padding ``ceil((f - 1) / 2)``, initialised to bilinear
interpolation (Caffe's ``bilinear`` filler, FCN's ``upsample_filt``) and optionally learned.
For an ``H x W`` input the output is exactly ``fH x fW``. It equals
``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)`` on every output pixel
whose sampling position ``(o + 0.5) / f - 0.5`` lies inside the input, i.e. on
``out[..., p:fH - p, p:fW - p]`` with ``p = ceil((f - 1) / 2)``; on the ``p``-pixel border the
transposed convolution treats the pixels outside the input as zeros where ``F.interpolate``
repeats the edge.

Dense heads whose encoders round sizes up (``ceil(H / r)``, see
:mod:`visrep.models.interface`) produce maps a little larger than the input; :func:`crop_like`
and :func:`pad_like` align them so that every segmenter returns exactly the input size, odd
sizes included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "BilinearUpsample2d",
    "bilinear_kernel",
    "bilinear_upsample",
    "crop_like",
    "pad_like",
    "upsample_geometry",
]


def upsample_geometry(factor: int) -> tuple[int, int]:
    """FCN's ``(kernel_size, padding)`` for upsampling by ``factor``: ``2f - f % 2``, ``ceil((f-1)/2)``.

    >>> upsample_geometry(2), upsample_geometry(3), upsample_geometry(32)
    ((4, 1), (5, 1), (64, 16))
    """
    if not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"factor must be an integer >= 1, got {factor!r}")
    return 2 * factor - factor % 2, math.ceil((factor - 1) / 2)


def _filter_1d(k: int) -> Tensor:
    # FCN's upsample_filt: a triangle of half-width ceil(k / 2) centred on the kernel.
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    return 1 - (torch.arange(k, dtype=torch.float64) - center).abs() / factor


def bilinear_kernel(in_ch: int, out_ch: int, k: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``(in_ch, out_ch, k, k)`` weight of a transposed convolution that upsamples bilinearly.

    Each channel is upsampled on its own (the bilinear filter on the diagonal ``[c, c]``, zeros
    elsewhere), as FCN initialises its ``Deconvolution`` layers.

    Raises:
        ConfigError: ``in_ch != out_ch`` (bilinear upsampling keeps the channels) or ``k < 1``.

    >>> bilinear_kernel(1, 1, 4)[0, 0, 0]
    tensor([0.0625, 0.1875, 0.1875, 0.0625])
    """
    if in_ch != out_ch or in_ch < 1 or k < 1:
        raise ConfigError(
            f"bilinear_kernel needs in_ch == out_ch >= 1 and k >= 1, got {in_ch}, {out_ch}, {k}"
        )
    f = _filter_1d(k)
    w = torch.zeros(in_ch, out_ch, k, k, dtype=torch.float64)
    w[range(in_ch), range(in_ch)] = torch.outer(f, f)
    return w.to(dtype)


def bilinear_upsample(x: Tensor, factor: int, weight: Tensor | None = None) -> Tensor:
    """Upsample ``x`` by ``factor`` with FCN's transposed convolution.

    Args:
        x: ``(B, C, H, W)``.
        factor: integer upsampling factor ``f``.
        weight: the ``(C, C, k, k)`` kernel (a learned one); ``None`` for the bilinear kernel.

    Returns:
        ``(B, C, f H, f W)``.
    """
    if x.dim() != 4:
        raise ShapeError(f"bilinear_upsample expects (B, C, H, W), got {tuple(x.shape)}")
    k, p = upsample_geometry(factor)
    if weight is None:
        # Per-channel bilinear filter as a grouped convolution: the same result as the diagonal
        # (C, C, k, k) kernel without the C^2 zeros.
        w = bilinear_kernel(1, 1, k, x.dtype).to(x.device).expand(x.shape[1], 1, k, k)
        return F.conv_transpose2d(x, w, stride=factor, padding=p, groups=x.shape[1])
    if weight.shape != (x.shape[1], x.shape[1], k, k):
        raise ShapeError(
            f"weight must be {(x.shape[1], x.shape[1], k, k)} for factor {factor}, got "
            f"{tuple(weight.shape)}"
        )
    return F.conv_transpose2d(x, weight, stride=factor, padding=p)


class BilinearUpsample2d(nn.Module):
    """:func:`bilinear_upsample` with a ``(C, C, k, k)`` kernel initialised to bilinear.

    Args:
        channels: channels ``C`` of the input (and output).
        factor: integer upsampling factor.
        learnable: learn the kernel (FCN's 2x layers) or keep it fixed as a buffer (FCN's final
            upsampling, ``lr_mult: 0`` in the reference nets).

    Shape: ``(B, C, H, W) -> (B, C, factor H, factor W)``.

    >>> BilinearUpsample2d(3, 2)(torch.zeros(1, 3, 5, 7)).shape
    torch.Size([1, 3, 10, 14])
    """

    def __init__(self, channels: int, factor: int, learnable: bool = True) -> None:
        super().__init__()
        self.channels, self.factor, self.learnable = channels, factor, learnable
        k, _ = upsample_geometry(factor)
        w = bilinear_kernel(channels, channels, k)
        if learnable:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)

    def forward(self, x: Tensor) -> Tensor:
        return bilinear_upsample(x, self.factor, self.weight)

    def extra_repr(self) -> str:
        return f"{self.channels}, factor={self.factor}, learnable={self.learnable}"


def _check_maps(x: Tensor, ref: Tensor | tuple[int, int], name: str) -> tuple[int, int]:
    if x.dim() < 2:
        raise ShapeError(f"{name} expects (..., H, W) maps, got {tuple(x.shape)}")
    size = tuple(ref.shape[-2:]) if isinstance(ref, Tensor) else tuple(ref)
    if len(size) != 2:
        raise ShapeError(f"{name}: ref must be a map or an (H, W) size, got {size}")
    return int(size[0]), int(size[1])


def crop_like(x: Tensor, ref: Tensor | tuple[int, int]) -> Tensor:
    """``x`` cut to the ``(H, W)`` of ``ref`` (a map or a size), keeping the top-left corner.

    The top-left corner is where upsampled maps and their input align: output pixel ``o`` of
    :func:`bilinear_upsample` samples position ``(o + 0.5) / f - 0.5``, so ``x[..., :H, :W]``
    covers the same image as a map of size ``(H, W)`` (an encoder that rounds ``ceil(H / r)``
    only adds rows and columns at the bottom and right). Where ``x`` is smaller (an encoder
    that rounds down), the missing bottom rows and right columns are zeros.

    Shape: ``(..., H', W') -> (..., H, W)``.

    >>> crop_like(torch.arange(16.0).view(1, 4, 4), (3, 2))
    tensor([[[0., 1.],
             [4., 5.],
             [8., 9.]]])
    """
    h, w = _check_maps(x, ref, "crop_like")
    x = x[..., :h, :w]
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    return F.pad(x, (0, dw, 0, dh)) if dh or dw else x


def pad_like(x: Tensor, ref: Tensor | tuple[int, int]) -> Tensor:
    """``x`` zero-padded evenly on both sides (the extra pixel after) to ``ref``'s ``(H, W)``.

    U-Net's alignment of an upsampled map with its skip (Ronneberger et al. 2015 crop the skip;
    with same-padded convolutions the upsampled map is the smaller one). Where ``x`` is larger
    it is cropped evenly instead.

    Shape: ``(..., H', W') -> (..., H, W)``.
    """
    h, w = _check_maps(x, ref, "pad_like")
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    top, left = int(dh / 2), int(dw / 2)  # towards zero: cropping undoes padding
    # F.pad crops for negative amounts.
    return F.pad(x, (left, dw - left, top, dh - top)) if dh or dw else x
