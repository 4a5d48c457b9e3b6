"""The plain segmentation model: ``x -> normalise -> segmenter -> per-pixel logits`` (seed 001, 003).

Usable without Lightning; :class:`visrep.tasks.SegmentationTask` wraps it for training. Inputs are
pixels in ``[0, 1]``: the normalisation statistics of the training split live inside, so a
checkpoint predicts on raw images.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from visrep.models.layers import Normalize


class ImageSegmenter(nn.Module):
    """A segmentation model with its input normalisation inside.

    Shape: ``(B, C, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.normalize(x))
