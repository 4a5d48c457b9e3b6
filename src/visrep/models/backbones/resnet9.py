"""ResNet-9: the fast CIFAR-10 residual network of Page's DAWNBench entry.

David C. Page, "How to train your ResNet" (Myrtle.ai, 2018; DAWNBench CIFAR-10, 94% test accuracy
in 24 epochs): a conv-BN-ReLU stem, three stages that double the width and max-pool, residual
blocks of two conv-BN-ReLU after the first and third stages, global max pooling and a linear
classifier whose logits are scaled by 0.125. ``width`` scales every stage (64 is the original:
6.57 M parameters, 0.39 G multiply-adds per 32x32 image; 32 is a quarter of that compute), which
is what makes it a residual network that reaches CIFAR-10's mid-80s on a CPU in well under an hour.

Shape: input ``(B, in_chans, H, W)``; features ``(B, 8 * width, H / 8, W / 8)``.
"""

from __future__ import annotations

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import Backbone
from visrep.models.registry import BACKBONES

__all__ = ["ResNet9", "resnet9"]


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3x3 conv (no bias), batch norm, ReLU, then an optional 2x2 max-pool."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """``x + F(x)`` with ``F`` two :func:`conv_bn` layers of the same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class ResNet9(Backbone):
    """Page's ResNet-9 with widths ``(w, 2w, 4w, 8w)``; see the module docstring.

    Feature levels: the stem (``w`` maps, reduction 1) and the three stages (reductions 2, 4, 8;
    the first and last end with their residual block).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        width: int = 64,
        logit_scale: float = 0.125,
        head_dropout: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if width < 1 or logit_scale <= 0:
            raise ConfigError(f"width must be >= 1 and logit_scale > 0, got {width}, {logit_scale}")
        w = width
        self.features = nn.Sequential(
            conv_bn(in_chans, w),
            conv_bn(w, 2 * w, pool=True),
            Residual(2 * w),
            conv_bn(2 * w, 4 * w, pool=True),
            conv_bn(4 * w, 8 * w, pool=True),
            Residual(8 * w),
        )
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": f"features.{i}"}
            for c, r, i in ((w, 1, 0), (2 * w, 2, 2), (4 * w, 4, 3), (8 * w, 8, 5))
        ]
        self.logit_scale = logit_scale
        self.set_classifier(8 * w, num_classes, "max", head_dropout, pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        out = self.head(z, pre_logits=pre_logits)
        return out if pre_logits else out * self.logit_scale


@BACKBONES.register
class resnet9(ResNet9):
    """Page's DAWNBench ResNet-9 for 32x32 images (any size divisible by 8); see :class:`ResNet9`.

    >>> m = resnet9(in_chans=3, num_classes=10)
    >>> sum(p.numel() for p in m.parameters())
    6573130
    >>> m(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
