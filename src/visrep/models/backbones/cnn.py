"""A configurable LeNet-style CNN: stacks of conv / BN / activation / pool / dropout (seed 002)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from visrep.models.interface import Backbone
from visrep.models.layers import get_activation
from visrep.models.registry import BACKBONES

__all__ = ["SmallCNN", "lenet", "small_cnn"]


class SmallCNN(Backbone):
    """Stages of ``convs_per_stage`` (conv -> [BN] -> act) followed by 2x2 pooling.

    Pooling uses ``ceil_mode`` so the net also runs on inputs as small as 8x8 (digits): a 1x1 map
    stays 1x1. The head is global average pooling, dropout and a linear classifier. One feature
    level per stage (its output after pooling and dropout), with reduction ``2^(i+1)``.

    Shape: input ``(B, in_chans, H, W)``; features ``(B, channels[-1], H', W')``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        channels: tuple[int, ...] = (32, 64, 128),
        convs_per_stage: int = 2,
        kernel_size: int = 3,
        batch_norm: bool = True,
        activation: str = "relu",
        pool: Literal["max", "avg"] = "max",
        dropout: float = 0.0,
        head_dropout: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        self.feature_info = []
        c = in_chans
        for i, out in enumerate(channels):
            for _ in range(convs_per_stage):
                blocks.append(
                    nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
                )
                if batch_norm:
                    blocks.append(nn.BatchNorm2d(out))
                blocks.append(get_activation(activation))
                c = out
            pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
            blocks.append(pool_cls(2, ceil_mode=True))
            if dropout > 0:
                blocks.append(nn.Dropout2d(dropout))
            self.feature_info.append(
                {"num_chs": c, "reduction": 2 ** (i + 1), "module": f"features.{len(blocks) - 1}"}
            )
        self.features = nn.Sequential(*blocks)
        self.set_classifier(c, num_classes, dropout=head_dropout, pretrained_path=pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@BACKBONES.register
class small_cnn(SmallCNN):
    """LeNet-style CNN (stages of conv / BN / activation, then pooling); see :class:`SmallCNN`."""


@BACKBONES.register
class lenet(SmallCNN):
    """LeNet-5-like: two 5x5 conv stages (6 and 16 maps) with max pooling."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        activation: str = "relu",
        batch_norm: bool = False,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__(
            in_chans,
            num_classes,
            img_size,
            channels=(6, 16),
            convs_per_stage=1,
            kernel_size=5,
            batch_norm=batch_norm,
            activation=activation,
            pool="max",
            pretrained_path=pretrained_path,
        )
