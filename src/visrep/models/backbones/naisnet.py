"""NAIS-Net backbones: cascades of stable non-autonomous blocks (seed 000).

Ciccone et al., "NAIS-Net: Stable Deep Networks from Non-Autonomous Differential Equations",
NeurIPS 2018. Each block is unrolled ``steps`` times in training (or a random ``K`` in
``[random_depth, steps]``, or adaptively with ``adaptive_train``) and, at inference, per sample
until ``||x(k+1) - x(k)||_2 < tol`` (``tol_mode="relative"``: ``< tol ||x(k)||_2``) or
``max_steps`` (pattern-dependent processing depth); each
block stores the depths of the last batch in ``block.last_depth`` ``(B,)``. The forward pass is
well behaved by construction, so batch norm appears only where the dimensionality changes
(seed 000: "we need it only when the input dimensionality changes").

Train with :class:`visrep.trainer.naisnet_callback.NaisNetReprojection` (or call
:func:`visrep.models.layers.naisnet.reproject_` after each optimiser step) to keep the
stability constraints.
"""

from __future__ import annotations

from typing import Literal

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.backbones._size import to_hw
from visrep.models.interface import Backbone
from visrep.models.layers.naisnet import NaisNetConvBlock, NaisNetFCBlock, iter_naisnet_blocks
from visrep.models.registry import BACKBONES

__all__ = ["NaisNet", "NaisNetFC", "naisnet", "naisnet_fc"]


class _DepthMixin:
    def last_depths(self) -> dict[str, Tensor]:
        """Per-block processing depth of the last forward pass, ``name -> (B,)``."""
        return {n: b.last_depth for n, b in iter_naisnet_blocks(self) if b.last_depth is not None}


class NaisNet(_DepthMixin, Backbone):
    """Convolutional NAIS-Net: stem, then stages of NAIS-Net conv blocks.

    Every stage starts with a transition (a 3x3 projection conv, stride 2 after the first
    stage, and batch norm), the only places where the number of maps or the resolution changes;
    then ``blocks_per_stage`` convolutional NAIS-Net blocks at constant width. One feature level
    per stage (the output of its last block), with reduction ``2^i``.

    With the default absolute ``tol = 1e-3`` every KMNIST / MNIST test sample runs all ``K_max``
    stages (issue 20); ``tol_mode="relative", tol=0.02`` ran 27.7% fewer stages at equal test
    accuracy in a short KMNIST exploration (see ``naisnet_kmnist.yaml``).

    Shape: input ``(B, in_chans, H, W)``; features ``(B, channels[-1], H / 2^(S-1), W / 2^(S-1))``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        channels: tuple[int, ...] = (16, 32, 64),
        blocks_per_stage: int = 1,
        steps: int = 5,
        max_steps: int | None = None,
        tol: float | None = 1e-3,
        h: float = 1.0,
        activation: Literal["tanh", "relu"] = "relu",
        kernel_size: int = 3,
        eps: float = 0.01,
        eta: float = 0.05,
        unconstrained: bool = False,
        adaptive_train: bool = False,
        tol_mode: Literal["absolute", "relative"] = "absolute",
        init: Literal["zero", "input"] = "zero",
        random_depth: int | None = None,
        head_dropout: float = 0.0,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if not channels or min(channels) < 1 or blocks_per_stage < 1:
            raise ConfigError(
                f"channels must be non-empty positive and blocks_per_stage >= 1, got "
                f"channels={tuple(channels)}, blocks_per_stage={blocks_per_stage}"
            )
        layers: list[nn.Module] = []
        self.feature_info = []
        c_in = in_chans
        for i, c in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)]
            for _ in range(blocks_per_stage):
                layers.append(
                    NaisNetConvBlock(
                        c,
                        c,
                        kernel_size,
                        steps=steps,
                        max_steps=max_steps,
                        tol=tol,
                        h=h,
                        activation=activation,
                        eps=eps,
                        eta=eta,
                        unconstrained=unconstrained,
                        adaptive_train=adaptive_train,
                        tol_mode=tol_mode,
                        init=init,
                        random_depth=random_depth,
                    )
                )
            self.feature_info.append(
                {"num_chs": c, "reduction": 2**i, "module": f"features.{len(layers) - 1}"}
            )
            c_in = c
        self.features = nn.Sequential(*layers)
        self.set_classifier(
            c_in, num_classes, dropout=head_dropout, pretrained_path=pretrained_path
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


class NaisNetFC(_DepthMixin, Backbone):
    """Fully connected NAIS-Net on flattened inputs: a cascade of FC blocks and a linear head.

    The first block reads the flat input ``in_chans x H x W`` through its input matrix ``B``,
    so no transition layer is needed, and ``img_size`` is required. One feature level per
    block, returned by :meth:`forward_intermediates` as ``(B, width, 1, 1)`` maps (reduction
    ``max(H, W)``: no spatial layout).

    Shape: input ``(B, C, H, W)`` or ``(B, D)``; features ``(B, width)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        width: int = 128,
        num_blocks: int = 2,
        steps: int = 10,
        max_steps: int | None = None,
        tol: float | None = 1e-3,
        h: float = 1.0,
        activation: Literal["tanh", "relu"] = "tanh",
        eps: float = 0.01,
        unconstrained: bool = False,
        adaptive_train: bool = False,
        tol_mode: Literal["absolute", "relative"] = "absolute",
        init: Literal["zero", "input"] = "zero",
        random_depth: int | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if num_blocks < 1 or width < 1:
            raise ConfigError(f"num_blocks and width must be >= 1, got {num_blocks} and {width}")
        hh, ww = to_hw(img_size, type(self).__name__)
        in_features = in_chans * hh * ww
        self.in_features = in_features
        self.blocks = nn.Sequential(
            *(
                NaisNetFCBlock(
                    in_features if i == 0 else width,
                    width,
                    steps=steps,
                    max_steps=max_steps,
                    tol=tol,
                    h=h,
                    activation=activation,
                    eps=eps,
                    unconstrained=unconstrained,
                    adaptive_train=adaptive_train,
                    tol_mode=tol_mode,
                    init=init,
                    random_depth=random_depth,
                )
                for i in range(num_blocks)
            )
        )
        self.feature_info = [
            {"num_chs": width, "reduction": max(hh, ww), "module": f"blocks.{i}"}
            for i in range(num_blocks)
        ]
        self.set_classifier(width, num_classes, pretrained_path=pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(x.flatten(1))


@BACKBONES.register
class naisnet(NaisNet):
    """Convolutional NAIS-Net, sized for 8x8 to 32x32 inputs; see :class:`NaisNet`."""


@BACKBONES.register
class naisnet_fc(NaisNetFC):
    """Fully connected NAIS-Net on the flattened ``in_chans x H x W`` input; see :class:`NaisNetFC`.

    >>> m = naisnet_fc(in_chans=1, num_classes=10, img_size=8, width=16, steps=3)
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
