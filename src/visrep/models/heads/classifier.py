"""Global pooling + dropout + linear classifier, the head shared by visrep's own CNN backbones."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn


class ClassifierHead(nn.Module):
    """Pool ``(B, C, H, W)`` (or take ``(B, C)`` as is), then dropout and a linear layer.

    ``forward(z, pre_logits=True)`` returns the pooled embedding, as in timm.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        pool: Literal["avg", "max"] = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, z: Tensor, pre_logits: bool = False) -> Tensor:
        if z.dim() == 4:
            z = self.pool(z).flatten(1)
        z = self.drop(z)
        return z if pre_logits else self.fc(z)
