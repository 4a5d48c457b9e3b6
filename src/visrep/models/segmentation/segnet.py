"""SegNet and SegNet-Basic (Badrinarayanan, Kendall and Cipolla 2017).

An encoder of conv-BN-ReLU stages, each ending in 2x2 max-pooling that remembers the position
of every maximum, and a symmetric decoder whose stages first *unpool*: each value goes back to
the position its maximum came from, the rest is zero (Sec. 3, Fig. 3); convolutions then
densify the sparse map. Pooling uses ``ceil_mode`` (as Caffe, where SegNet was written), so
every pixel of an odd-sized map belongs to a window, and unpooling restores the size the
encoder saw, so any input size comes back as it went in.

- ``segnet``: the encoder is VGG-16's 13 convolutions (stages of 2, 2, 3, 3, 3 convs with
  64, 128, 256, 512, 512 channels), the decoder mirrors it; the last decoder convolution
  outputs the class scores (the reference ``conv1_1_D``).
- ``segnet_basic``: 4 stages of one 7x7 convolution with 64 channels; the decoder has no ReLU
  (and, as every layer here, no bias before BN), and a 1x1 convolution gives the scores
  (Sec. 4.1).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.segmentation.base import SEGMENTERS, Segmenter

__all__ = [
    "MaxPoolIndices",
    "MaxUnpool",
    "SegNet",
    "max_pool_indices",
    "max_unpool",
    "segnet",
    "segnet_basic",
]


def max_pool_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """2x2 stride-2 max-pooling (ceil mode) and the flat ``H * W`` index of each maximum.

    Shape: ``(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))`` twice (values, int64 indices).
    """
    if x.dim() != 4:
        raise ShapeError(f"max_pool_indices expects (B, C, H, W), got {tuple(x.shape)}")
    return F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)


def max_unpool(y: Tensor, indices: Tensor, size: tuple[int, int]) -> Tensor:
    """SegNet's upsampling: ``y`` placed at the flat positions ``indices`` of an ``size`` map.

    Every other position is zero. ``size`` is the map size before pooling, which odd sizes
    need (``2 * ceil(H/2)`` would be one too many).

    Shape: ``(B, C, h, w)`` values and indices -> ``(B, C, *size)``.
    """
    if y.shape != indices.shape:
        raise ShapeError(f"values {tuple(y.shape)} and indices {tuple(indices.shape)} differ")
    # A scatter into zeros, as F.max_unpool2d computes, but allowed under
    # torch.use_deterministic_algorithms (Lightning's deterministic=True), which refuses
    # max_unpool2d: non-overlapping 2x2 windows give every value its own position.
    b, c = y.shape[:2]
    out = y.new_zeros(b, c, size[0] * size[1])
    return out.scatter(2, indices.flatten(2), y.flatten(2)).view(b, c, *size)


class MaxPoolIndices(nn.Module):
    """:func:`max_pool_indices` as a module."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return max_pool_indices(x)


class MaxUnpool(nn.Module):
    """:func:`max_unpool` as a module."""

    def forward(self, y: Tensor, indices: Tensor, size: tuple[int, int]) -> Tensor:
        return max_unpool(y, indices, size)


def _conv_bn(c_in: int, c_out: int, k: int, relu: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class SegNet(Segmenter):
    """SegNet's encoder-decoder with pooling indices.

    Args:
        in_chans: input channels.
        num_classes: output classes.
        channels: channels of each encoder stage (decoder stages mirror them).
        convs_per_stage: convolutions per stage, one number per stage.
        kernel_size: size of every convolution (odd).
        decoder_relu: ReLU after the decoder's BN (SegNet) or not (SegNet-Basic).
        classifier_kernel: kernel of the convolution that gives the scores.
        scores_in_decoder: the classifier replaces the last decoder convolution (SegNet's
            ``conv1_1_D``) instead of following it (SegNet-Basic's ``conv_classifier``).

    Shape: ``(B, in_chans, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        channels: tuple[int, ...] = (64, 128, 256, 512, 512),
        convs_per_stage: tuple[int, ...] = (2, 2, 3, 3, 3),
        kernel_size: int = 3,
        decoder_relu: bool = True,
        classifier_kernel: int = 3,
        scores_in_decoder: bool = True,
    ) -> None:
        super().__init__()
        channels, convs = tuple(channels), tuple(convs_per_stage)
        if not channels or len(channels) != len(convs) or min(channels) < 1 or min(convs) < 1:
            raise ConfigError(
                f"channels and convs_per_stage must be positive and of one length, got "
                f"{channels} and {convs}"
            )
        if kernel_size % 2 == 0 or classifier_kernel % 2 == 0:
            raise ConfigError(
                f"kernel sizes must be odd, got {kernel_size} and {classifier_kernel}"
            )
        if scores_in_decoder and convs[0] < 2:
            raise ConfigError("scores_in_decoder needs at least 2 convs in the first stage")
        self.in_chans, self.num_classes = in_chans, num_classes
        k = kernel_size
        enc, dec = [], []
        c_prev = in_chans
        for i, (c, n) in enumerate(zip(channels, convs, strict=True)):
            layers = _conv_bn(c_prev, c, k, True)
            for _ in range(n - 1):
                layers += _conv_bn(c, c, k, True)
            enc.append(nn.Sequential(*layers))
            # Decoder stage i (run in reverse order): n convs at c, the last one to the channels
            # of the stage below (to c itself for the first stage).
            c_out = channels[i - 1] if i > 0 else c
            n_dec = n - 1 if (i == 0 and scores_in_decoder) else n
            layers = [m for _ in range(n_dec - 1) for m in _conv_bn(c, c, k, decoder_relu)]
            layers += _conv_bn(c, c_out, k, decoder_relu)
            dec.append(nn.Sequential(*layers))
            c_prev = c
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(channels[0], num_classes, classifier_kernel,
                                    padding=classifier_kernel // 2)  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ShapeError(f"SegNet expects (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        memory = []
        for stage in self.encoder:
            x = stage(x)
            size = (x.shape[-2], x.shape[-1])
            x, idx = max_pool_indices(x)
            memory.append((idx, size))
        for stage, (idx, size) in zip(reversed(self.decoder), reversed(memory), strict=True):
            x = stage(max_unpool(x, idx, size))
        return self.classifier(x)


@SEGMENTERS.register
class segnet(SegNet):  # noqa: N801 (the registered, user-facing name)
    """SegNet with VGG-16's encoder (defaults) or other widths; see :class:`SegNet`."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        channels: tuple[int, ...] = (64, 128, 256, 512, 512),
        convs_per_stage: tuple[int, ...] = (2, 2, 3, 3, 3),
        kernel_size: int = 3,
    ) -> None:
        super().__init__(in_chans, num_classes, channels, convs_per_stage, kernel_size)


@SEGMENTERS.register
class segnet_basic(SegNet):  # noqa: N801 (the registered, user-facing name)
    """SegNet-Basic: ``stages`` of one ``kernel_size`` conv with ``width`` channels (Sec. 4.1).

    >>> import torch
    >>> segnet_basic(3, 4, width=4)(torch.zeros(1, 3, 15, 22)).shape
    torch.Size([1, 4, 15, 22])
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        width: int = 64,
        stages: int = 4,
        kernel_size: int = 7,
    ) -> None:
        if stages < 1 or width < 1:
            raise ConfigError(f"stages and width must be >= 1, got {stages} and {width}")
        super().__init__(
            in_chans,
            num_classes,
            channels=(width,) * stages,
            convs_per_stage=(1,) * stages,
            kernel_size=kernel_size,
            decoder_relu=False,
            classifier_kernel=1,
            scores_in_decoder=False,
        )
