"""A configurable LeNet-style CNN: stacks of conv / BN / activation / pool / dropout (seed 002)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from visrep.models.heads import ClassifierHead, HeadInterface
from visrep.models.layers import get_activation
from visrep.models.registry import register_backbone


class SmallCNN(HeadInterface):
    """Stages of ``convs_per_stage`` (conv -> [BN] -> act) followed by 2x2 pooling.

    Pooling uses ``ceil_mode`` so the net also runs on inputs as small as 8x8 (digits): a 1x1 map
    stays 1x1. The head is global average pooling, dropout and a linear classifier.

    Shape: input ``(B, in_chans, H, W)``; features ``(B, channels[-1], H', W')``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 2,
        kernel_size: int = 3,
        batch_norm: bool = True,
        activation: str = "relu",
        pool: Literal["max", "avg"] = "max",
        dropout: float = 0.0,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_chans
        for out in channels:
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
        self.features = nn.Sequential(*blocks)
        self.num_features = c
        self.head = ClassifierHead(c, num_classes, dropout=head_dropout)
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@register_backbone("small_cnn")
def small_cnn(
    in_chans: int,
    num_classes: int,
    img_size: int | tuple[int, int] | None = None,
    channels: Sequence[int] = (32, 64, 128),
    convs_per_stage: int = 2,
    kernel_size: int = 3,
    batch_norm: bool = True,
    activation: str = "relu",
    pool: Literal["max", "avg"] = "max",
    dropout: float = 0.0,
    head_dropout: float = 0.0,
) -> SmallCNN:
    """LeNet-style CNN; see :class:`SmallCNN`."""
    return SmallCNN(
        in_chans,
        num_classes,
        tuple(channels),
        convs_per_stage,
        kernel_size,
        batch_norm,
        activation,
        pool,
        dropout,
        head_dropout,
    )


@register_backbone("lenet")
def lenet(
    in_chans: int,
    num_classes: int,
    img_size: int | tuple[int, int] | None = None,
    activation: str = "relu",
    batch_norm: bool = False,
) -> SmallCNN:
    """LeNet-5-like: two 5x5 conv stages (6 and 16 maps) with pooling."""
    return SmallCNN(in_chans, num_classes, (6, 16), 1, 5, batch_norm, activation, "max")
