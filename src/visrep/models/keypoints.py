"""A multi-stage Convolutional Pose Machine (Wei et al., CVPR 2016; seed 001, "Predicting Heat
Maps"), optionally with part affinity fields (Cao et al., CVPR 2017).

Image -> a small convolutional feature extractor at stride ``2 ** pools`` -> ``stages``
predictors. Stage 1 sees the features; stage ``t > 1`` sees the features concatenated with
stage ``t - 1``'s belief maps (and fields), so later stages use the spatial context of the
other parts' beliefs (CPM, Sec. 3.2). Each stage outputs ``K + 1`` belief maps (the
keypoints and the background) and, when ``num_limbs > 0``, ``2 L`` part affinity field
channels from a second 1x1 output on the same stage trunk (Cao et al. use two full branches).
Every stage's output is supervised (intermediate supervision, CPM Sec. 3.3), which is what
:meth:`PoseMachine.stage_outputs` is for.

CPM reaches a large receptive field with 9x9 and 11x11 kernels; here each stage stacks 3x3
convolutions with growing dilation (1, 2, 4, ...), which covers a like field at a fraction
of the cost on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.layers.normalize import Normalize


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PoseStage(nn.Module):
    """One CPM stage: dilated 3x3 convolutions, then 1x1 outputs for the belief maps and
    (when ``paf_channels > 0``) the part affinity fields."""

    def __init__(self, cin: int, width: int, depth: int, maps: int, paf_channels: int = 0) -> None:
        super().__init__()
        layers = [_conv(cin if i == 0 else width, width, 2 ** (i % 4)) for i in range(depth)]
        layers.append(nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(inplace=True)))
        self.trunk = nn.Sequential(*layers)
        self.beliefs = nn.Conv2d(width, maps, 1)
        self.pafs = nn.Conv2d(width, paf_channels, 1) if paf_channels else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        z = self.trunk(x)
        return self.beliefs(z), self.pafs(z) if self.pafs is not None else None


class PoseMachine(nn.Module):
    """Convolutional Pose Machine: images ``(B, C, H, W)`` in [0, 1] -> belief maps
    ``(B, K + 1, H / s, W / s)`` at stride ``s = 2 ** pools`` (channel ``K`` is the background).

    Args:
        in_chans: image channels.
        num_keypoints: ``K``.
        mean, std: per-channel image statistics (normalisation is the first layer).
        stages: ``T`` prediction stages (>= 1).
        width: channels of the features and of each stage.
        pools: 2x2 max-pools in the feature extractor (stride ``2 ** pools``).
        stage_depth: dilated 3x3 convolutions per stage (dilations 1, 2, 4, 8, 1, ...).
        num_limbs: ``L`` part affinity fields predicted beside the belief maps (0: none).
    """

    def __init__(
        self,
        in_chans: int,
        num_keypoints: int,
        mean: Sequence[float],
        std: Sequence[float],
        stages: int = 3,
        width: int = 32,
        pools: int = 2,
        stage_depth: int = 4,
        num_limbs: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("stages", stages, 1), ("width", width, 1), ("pools", pools, 0),
            ("stage_depth", stage_depth, 1), ("num_limbs", num_limbs, 0),
            ("num_keypoints", num_keypoints, 1),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"PoseMachine: {name} must be an int >= {low}, got {value!r}")
        self.num_keypoints, self.num_limbs, self.stride = num_keypoints, num_limbs, 2**pools
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [_conv(in_chans, width)]
        for _ in range(pools):
            layers += [_conv(width, width), nn.MaxPool2d(2), _conv(width, width)]
        self.features = nn.Sequential(*layers)
        maps, paf = num_keypoints + 1, 2 * num_limbs
        self.stages = nn.ModuleList(
            PoseStage(width if t == 0 else width + maps + paf, width, stage_depth, maps, paf)
            for t in range(stages)
        )

    def stage_outputs(self, x: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """Every stage's ``(beliefs (B, K + 1, h, w), fields (B, 2 L, h, w) or None)``."""
        f = self.features(self.normalize(x))
        outs: list[tuple[Tensor, Tensor | None]] = []
        inp = f
        for stage in self.stages:
            beliefs, fields = stage(inp)
            outs.append((beliefs, fields))
            prev = [beliefs] if fields is None else [beliefs, fields]
            inp = torch.cat([f, *prev], 1)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """The last stage's belief maps ``(B, K + 1, h, w)``."""
        return self.stage_outputs(x)[-1][0]
