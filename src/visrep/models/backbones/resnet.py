"""ResNet-18/34/50 and ResNeXt-50 32x4d (He et al. 2016; Xie et al. 2017; seed 004) from timm,
with a small-image stem.

The ImageNet stem (7x7 stride-2 conv + max-pool) shrinks a 32x32 image to 8x8 before the first
residual stage; for 8x8 to 64x64 inputs the usual CIFAR variant replaces it by a 3x3 stride-1
conv and no pooling (He et al. 2016, Sec. 4.2), which ``small_stem`` selects.

The classes are timm's ``ResNet`` itself (same modules, state-dict names and methods, such as
``forward_intermediates`` with five levels: the stem and the four stages), built with the
architecture of the timm model they name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from visrep.models.backbones.timm_model import TimmIntermediates
from visrep.models.interface import Backbone
from visrep.models.pretrained import load_pretrained
from visrep.models.registry import BACKBONES

__all__ = ["TimmResNet", "resnet18", "resnet34", "resnet50", "resnext50_32x4d"]


class TimmResNet(TimmIntermediates, ResNet, Backbone):
    """timm's ResNet with the architecture ``arch`` of the timm model ``timm_name``.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: none).
        img_size: input size; decides ``small_stem`` when that is None.
        small_stem: a 3x3 stride-1 stem without max-pooling (default: ``img_size <= 64``);
            the feature levels' reductions are then 1, 1, 2, 4, 8 instead of 2, 4, 8, 16, 32.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth rate.
        pretrained_path: local weights (see :mod:`visrep.models.pretrained`).
    """

    timm_name: ClassVar[str]
    arch: ClassVar[dict[str, Any]]

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        small_stem: bool | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__(
            in_chans=in_chans,
            num_classes=num_classes,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **self.arch,
        )
        if small_stem is None:
            size = img_size if isinstance(img_size, int) or img_size is None else max(img_size)
            small_stem = size is not None and size <= 64
        if small_stem:
            out = self.conv1.out_channels
            self.conv1 = nn.Conv2d(in_chans, out, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
            for d in self.feature_info:  # the stem no longer halves twice
                d["reduction"] = max(1, d["reduction"] // 4)
        if pretrained_path:
            load_pretrained(self, pretrained_path)


@BACKBONES.register
class resnet18(TimmResNet):
    """ResNet-18: basic blocks, stages of (2, 2, 2, 2); timm's ``resnet18``."""

    timm_name = "resnet18"
    arch: ClassVar[dict[str, Any]] = {"block": BasicBlock, "layers": (2, 2, 2, 2)}


@BACKBONES.register
class resnet34(TimmResNet):
    """ResNet-34: basic blocks, stages of (3, 4, 6, 3); timm's ``resnet34``."""

    timm_name = "resnet34"
    arch: ClassVar[dict[str, Any]] = {"block": BasicBlock, "layers": (3, 4, 6, 3)}


@BACKBONES.register
class resnet50(TimmResNet):
    """ResNet-50: bottleneck blocks, stages of (3, 4, 6, 3); timm's ``resnet50``."""

    timm_name = "resnet50"
    arch: ClassVar[dict[str, Any]] = {"block": Bottleneck, "layers": (3, 4, 6, 3)}


@BACKBONES.register
class resnext50_32x4d(TimmResNet):
    """ResNeXt-50 32x4d: grouped bottlenecks (32 groups of width 4); timm's ``resnext50_32x4d``."""

    timm_name = "resnext50_32x4d"
    arch: ClassVar[dict[str, Any]] = {
        "block": Bottleneck,
        "layers": (3, 4, 6, 3),
        "cardinality": 32,
        "base_width": 4,
    }
