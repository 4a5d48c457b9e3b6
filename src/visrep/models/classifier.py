"""The plain image classifier: ``x -> normalise -> g_phi(x) = z -> f_theta(z) -> logits`` (seed 000).

Usable without Lightning; :class:`visrep.tasks.ClassificationTask` wraps it for training.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from visrep.models.layers import Normalize


class ImageClassifier(nn.Module):
    """A backbone with the input normalisation inside, so inputs are pixels in ``[0, 1]``.

    Shape: ``(B, C, H, W) -> (B, num_classes)``.
    """

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone

    def forward_features(self, x: Tensor) -> Tensor:
        """Unpooled backbone features of pixel-space input ``x``."""
        return self.backbone.forward_features(self.normalize(x))

    def embed(self, x: Tensor) -> Tensor:
        """The pooled representation z that the classifier reads, ``(B, num_features)``."""
        return self.backbone.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.forward_head(self.forward_features(x))
