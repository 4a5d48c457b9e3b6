"""Multi-layer perceptron on flattened images (seed 002: MLPs and their activations)."""

from __future__ import annotations

from torch import Tensor, nn

from visrep.models.backbones._size import to_hw
from visrep.models.heads import ClassifierHead, HeadInterface
from visrep.models.layers import get_activation
from visrep.models.registry import register_backbone


class MLP(HeadInterface):
    """``depth`` hidden layers of ``width`` units: Linear -> [BatchNorm] -> activation -> [Dropout].

    Shape: input ``(B, C, H, W)`` or ``(B, D)``; features ``(B, width)``; logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers.append(nn.Linear(d, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(get_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = width
        self.body = nn.Sequential(*layers)
        self.num_features = d
        self.head = ClassifierHead(d, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1))


@register_backbone("mlp")
def mlp(
    in_chans: int,
    num_classes: int,
    img_size: int | tuple[int, int] | None,
    depth: int = 2,
    width: int = 256,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> MLP:
    """MLP over the flattened ``in_chans x H x W`` input."""
    h, w = to_hw(img_size, "mlp")
    return MLP(in_chans * h * w, num_classes, depth, width, activation, dropout, batch_norm)
