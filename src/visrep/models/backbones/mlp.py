"""Multi-layer perceptron on flattened images (seed 002: MLPs and their activations)."""

from __future__ import annotations

from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.backbones._size import to_hw
from visrep.models.interface import Backbone
from visrep.models.layers import get_activation
from visrep.models.registry import BACKBONES

__all__ = ["MLP", "mlp"]


class MLP(Backbone):
    """``depth`` hidden layers of ``width`` units: Linear -> [BatchNorm] -> activation -> [Dropout].

    The input ``in_chans x H x W`` is flattened, so ``img_size`` is required. ``feature_info``
    has a single level, the last hidden features, which :meth:`forward_intermediates` returns
    as a ``(B, width, 1, 1)`` map (reduction ``max(H, W)``: no spatial layout).

    Shape: input ``(B, C, H, W)`` or ``(B, D)``; features ``(B, width)``; logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if depth < 0 or width < 1:
            raise ConfigError(f"mlp: depth must be >= 0 and width >= 1, got {depth} and {width}")
        h, w = to_hw(img_size, type(self).__name__)
        layers: list[nn.Module] = []
        d = in_chans * h * w
        for _ in range(depth):
            layers.append(nn.Linear(d, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(get_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = width
        self.body = nn.Sequential(*layers)
        self.feature_info = [{"num_chs": d, "reduction": max(h, w), "module": "body"}]
        self.set_classifier(d, num_classes, pretrained_path=pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1))


@BACKBONES.register
class mlp(MLP):
    """MLP over the flattened ``in_chans x H x W`` input; see :class:`MLP`."""
