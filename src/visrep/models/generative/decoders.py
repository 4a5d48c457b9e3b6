"""Decoders ``g(code; Theta_2)`` of autoencoders and VAEs, sized from their encoder (seed 001, eq. 2).

:class:`ConvDecoder` mirrors a convolutional encoder: a linear layer maps the code to a
``(C, h, w)`` map (the encoder's last feature map, measured by running the encoder once:
:func:`feature_shape`), then stages of x2 upsampling with batch norm and ReLU halve the channels
(never below 8) until the map covers the image, and a 3x3 convolution gives ``out_chans``
channels. Two kinds of upsampling:

- ``transposed``: a transposed convolution, kernel 4, stride 2, padding 1 (exactly 2x; the
  DCGAN generator's layer, Radford et al. 2016);
- ``upsample``: nearest-neighbour 2x then a 3x3 convolution (Odena et al. 2016,
  "Deconvolution and checkerboard artifacts": no uneven kernel overlap).

The number of stages is the least ``n`` with ``h 2^n >= H`` and ``w 2^n >= W``; where that
overshoots (``H, W`` not ``h 2^n``, e.g. 28 from 4 gives 32, or ORL's 92 from 12 gives 96) the
output is cropped to the top-left ``H x W`` (:func:`~visrep.models.layers.upsample.crop_like`):
encoders round sizes up (``ceil(H / r)``), adding rows and columns at the bottom and right, so
the top-left corner is where decoder and image align.

:class:`MLPDecoder` serves non-spatial encoders (the ``mlp`` backbone): linear layers back to
``C x H x W`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.upsample import crop_like

__all__ = [
    "ConvDecoder",
    "DecoderKind",
    "MLPDecoder",
    "as_hw",
    "feature_shape",
    "linear_widths",
    "num_stages",
]

DecoderKind = Literal["transposed", "upsample", "mlp"]
_MIN_CHANS = 8


def as_hw(size: int | Sequence[int], name: str) -> tuple[int, int]:
    """``size`` as ``(H, W)`` (an int is square); ``ConfigError`` naming ``name`` otherwise."""
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"{name} must be an (H, W) size with H, W >= 1, got {size}")
    return hw


def num_stages(start: tuple[int, int], out: tuple[int, int]) -> int:
    """The least ``n`` with ``start * 2^n >= out`` in both dimensions.

    >>> num_stages((4, 4), (28, 28)), num_stages((14, 12), (112, 92)), num_stages((8, 8), (8, 8))
    (3, 3, 0)
    """
    return max(max(0, math.ceil(math.log2(o / s))) for s, o in zip(start, out, strict=True))


class ConvDecoder(nn.Module):
    """Code -> Linear -> ``(start_chans, h, w)`` -> x2 upsampling stages -> ``(out_chans, H, W)``.

    Args:
        code_size: length of the code (or latent) vector.
        out_chans: channels of the output image.
        out_size: the image's ``(H, W)``.
        start_chans: channels of the first map (the encoder's feature channels).
        start_size: ``(h, w)`` of the first map (the encoder's feature map size).
        kind: ``transposed`` (transposed conv k4 s2 p1) or ``upsample`` (nearest 2x + conv 3x3).

    The output is unbounded (logits or means before a link function; the model applies it).

    Shape: ``(B, code_size) -> (B, out_chans, H, W)``.

    >>> ConvDecoder(8, 1, (112, 92), 32, (14, 12))(torch.zeros(2, 8)).shape
    torch.Size([2, 1, 112, 92])
    """

    def __init__(
        self,
        code_size: int,
        out_chans: int,
        out_size: int | Sequence[int],
        start_chans: int,
        start_size: int | Sequence[int],
        kind: Literal["transposed", "upsample"] = "transposed",
    ) -> None:
        super().__init__()
        if kind not in ("transposed", "upsample"):
            raise ConfigError(f"ConvDecoder kind must be transposed or upsample, got {kind!r}")
        if min(code_size, out_chans, start_chans) < 1:
            raise ConfigError(
                f"ConvDecoder: code_size, out_chans and start_chans must be >= 1, got "
                f"{code_size}, {out_chans}, {start_chans}"
            )
        self.out_size = as_hw(out_size, "out_size")
        self.start_size = as_hw(start_size, "start_size")
        self.start_chans, self.kind = start_chans, kind
        h, w = self.start_size
        self.project = nn.Linear(code_size, start_chans * h * w, bias=False)
        self.start = nn.Sequential(nn.BatchNorm2d(start_chans), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c = start_chans
        for _ in range(num_stages(self.start_size, self.out_size)):
            out = max(c // 2, _MIN_CHANS)
            if kind == "transposed":
                up: list[nn.Module] = [
                    nn.ConvTranspose2d(c, out, 4, stride=2, padding=1, bias=False)
                ]
            else:
                up = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, out, 3, padding=1, bias=False)]  # fmt: skip
            stages.append(nn.Sequential(*up, nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
            c = out
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv2d(c, out_chans, 3, padding=1)

    def forward(self, code: Tensor) -> Tensor:
        if code.dim() != 2 or code.shape[1] != self.project.in_features:
            raise ShapeError(
                f"ConvDecoder expects codes (B, {self.project.in_features}), got {tuple(code.shape)}"
            )
        x = self.project(code).view(len(code), self.start_chans, *self.start_size)
        return crop_like(self.out(self.stages(self.start(x))), self.out_size)


class MLPDecoder(nn.Module):
    """Code -> (Linear -> ReLU) per hidden width -> Linear -> ``(out_chans, H, W)``.

    Args:
        code_size: length of the code (or latent) vector.
        out_chans: channels of the output image.
        out_size: the image's ``(H, W)``.
        hidden: widths of the hidden layers, first to last (empty: a linear decoder).

    Shape: ``(B, code_size) -> (B, out_chans, H, W)``; unbounded outputs.

    >>> MLPDecoder(2, 1, (8, 8), (16,))(torch.zeros(3, 2)).shape
    torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        code_size: int,
        out_chans: int,
        out_size: int | Sequence[int],
        hidden: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if min(code_size, out_chans, *hidden) < 1:
            raise ConfigError(
                f"MLPDecoder: code_size, out_chans and hidden widths must be >= 1, got "
                f"{code_size}, {out_chans}, {list(hidden)}"
            )
        self.out_shape = (out_chans, *as_hw(out_size, "out_size"))
        layers: list[nn.Module] = []
        d = code_size
        for width in hidden:
            layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
            d = width
        layers.append(nn.Linear(d, math.prod(self.out_shape)))
        self.body = nn.Sequential(*layers)

    def forward(self, code: Tensor) -> Tensor:
        return self.body(code).view(len(code), *self.out_shape)


@torch.no_grad()
def feature_shape(
    encoder: nn.Module, in_chans: int, image_size: int | Sequence[int]
) -> tuple[int, ...]:
    """The shape (without batch) of ``encoder.forward_features`` on ``in_chans x H x W`` inputs:
    ``(C, h, w)`` for convolutional encoders, ``(D,)`` for flat ones.

    Measured on a zero input in eval mode (the encoder's mode is restored), so it holds for any
    backbone whatever its rounding.

    >>> from visrep.models import create_backbone
    >>> feature_shape(create_backbone("small_cnn", in_chans=1, num_classes=0), 1, (28, 28))
    (128, 4, 4)
    """
    h, w = as_hw(image_size, "image_size")
    training = encoder.training
    encoder.eval()
    try:
        p = next(encoder.parameters(), None)
        x = torch.zeros(1, in_chans, h, w, device=p.device if p is not None else None)
        return tuple(encoder.forward_features(x).shape[1:])
    finally:
        encoder.train(training)


def linear_widths(module: nn.Module) -> list[int]:
    """The output widths of the ``nn.Linear`` layers of ``module``, in order (an MLP encoder's
    hidden widths, which an :class:`MLPDecoder` mirrors).

    >>> linear_widths(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    [8, 3]
    """
    return [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
