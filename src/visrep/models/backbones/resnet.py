"""ResNet-18/34/50 and ResNeXt-50 32x4d (seed 004) from timm, with a small-image stem.

The ImageNet stem (7x7 stride-2 conv + max-pool) shrinks a 32x32 image to 8x8 before the first
residual stage; for 8x8 to 64x64 inputs the usual CIFAR variant replaces it by a 3x3 stride-1
conv and no pooling (He et al. 2016, Sec. 4.2), which ``small_stem`` selects.
"""

from __future__ import annotations

import timm
from torch import nn

from visrep.models.backbones._pretrained import load_pretrained
from visrep.models.registry import register_backbone


def _resnet(
    timm_name: str,
    in_chans: int,
    num_classes: int,
    img_size: int | tuple[int, int] | None,
    small_stem: bool | None,
    drop_rate: float,
    drop_path_rate: float,
    pretrained_path: str | None,
) -> nn.Module:
    model = timm.create_model(
        timm_name,
        pretrained=False,
        in_chans=in_chans,
        num_classes=num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )
    if small_stem is None:
        size = img_size if isinstance(img_size, int) or img_size is None else max(img_size)
        small_stem = size is not None and size <= 64
    if small_stem:
        out = model.conv1.out_channels
        model.conv1 = nn.Conv2d(in_chans, out, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if pretrained_path:
        load_pretrained(model, pretrained_path)
    return model


def _register(name: str, timm_name: str) -> None:
    def factory(
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        small_stem: bool | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pretrained_path: str | None = None,
    ) -> nn.Module:
        return _resnet(
            timm_name,
            in_chans,
            num_classes,
            img_size,
            small_stem,
            drop_rate,
            drop_path_rate,
            pretrained_path,
        )

    factory.__name__ = name
    factory.__doc__ = (
        f"timm's ``{timm_name}``; ``small_stem`` (default: img_size <= 64) uses a 3x3 stride-1 stem "
        "without max-pooling; ``pretrained_path`` loads a local state dict."
    )
    register_backbone(name)(factory)


for _name, _timm in {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnext50_32x4d": "resnext50_32x4d",
}.items():
    _register(_name, _timm)
