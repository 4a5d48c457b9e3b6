"""A small CIFAR-style ResNet: the residual baseline NAIS-Net is compared with (seed 000).

Ciccone et al., "NAIS-Net: Stable Deep Networks from Non-Autonomous Differential Equations",
NeurIPS 2018, compare NAIS-Net with ResNets, which are autonomous systems: every block computes

    x(k+1) = x(k) + F(x(k); theta_k)                                   (Sec. 1, Sec. 3)

with its own weights ``theta_k`` and the input reaching only the first block, as the initial
condition. ``resnet_small`` has exactly the stem and stage transitions of the ``naisnet`` preset
(a 3x3 conv, stride 2 after the first stage, and batch norm), so the two differ only in their
blocks. ``F`` is the pre-activation basic block (BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv; He et al.,
"Identity Mappings in Deep Residual Networks", ECCV 2016), whose ``2 * 9 C^2`` weights match a
NAIS-Net conv block's input and state kernels, so the presets have similar parameter counts.
"""

from __future__ import annotations

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import Backbone
from visrep.models.registry import BACKBONES

__all__ = ["PreActBlock", "ResNetSmall", "resnet_small"]


class PreActBlock(nn.Module):
    """``x + F(x)`` with ``F`` = BN, ReLU, conv, BN, ReLU, conv (He et al. 2016, Fig. 4e).

    Shape: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        p = kernel_size // 2
        self.residual = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=p, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=p, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class ResNetSmall(Backbone):
    """Stem and transitions as in :class:`~visrep.models.backbones.naisnet.NaisNet`, then
    ``blocks_per_stage`` :class:`PreActBlock` per stage and a final BN + ReLU.

    One feature level per stage (reduction ``2^i``): the output of its last block, and for the
    last stage the output of the final BN + ReLU (the features).

    Shape: input ``(B, in_chans, H, W)``; features ``(B, channels[-1], H / 2^(S-1), W / 2^(S-1))``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        channels: tuple[int, ...] = (16, 32, 64),
        blocks_per_stage: int = 1,
        kernel_size: int = 3,
        head_dropout: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if not channels or min(channels) < 1 or blocks_per_stage < 1:
            raise ConfigError(
                f"channels must be non-empty positive and blocks_per_stage >= 1, got "
                f"channels={tuple(channels)}, blocks_per_stage={blocks_per_stage}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {kernel_size}")
        layers: list[nn.Module] = []
        self.feature_info = []
        c_in = in_chans
        for i, c in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)]
            layers += [PreActBlock(c, kernel_size) for _ in range(blocks_per_stage)]
            self.feature_info.append(
                {"num_chs": c, "reduction": 2**i, "module": f"features.{len(layers) - 1}"}
            )
            c_in = c
        layers += [nn.BatchNorm2d(c_in), nn.ReLU()]  # pre-activation nets end with BN + ReLU
        self.feature_info[-1]["module"] = f"features.{len(layers) - 1}"
        self.features = nn.Sequential(*layers)
        self.set_classifier(
            c_in, num_classes, dropout=head_dropout, pretrained_path=pretrained_path
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@BACKBONES.register
class resnet_small(ResNetSmall):
    """The ResNet baseline of the ``naisnet`` preset (same widths); see :class:`ResNetSmall`.

    >>> m = resnet_small(in_chans=1, num_classes=10, channels=(8, 16))
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
