"""The plain colourisation model: ``x -> L -> segmenter -> ab`` (Zhang et al. 2016; seed 003).

Usable without Lightning; :class:`visrep.tasks.ColorizationTask` wraps it for training.
"""

from __future__ import annotations

from torch import Tensor, nn

from visrep.errors import ShapeError
from visrep.losses.colorization import AB_SCALE, ABQuantizer, merge_lab, normalize_l, split_lab

__all__ = ["Colorizer"]


class Colorizer(nn.Module):
    """A plain colourisation model: RGB (or grey) images -> raw per-pixel outputs.

    The input's lightness ``L`` (kornia's CIE Lab; a 1-channel input is taken as grey sRGB),
    centred and scaled (:func:`~visrep.losses.colorization.normalize_l`), goes through
    ``model``; :meth:`decode` turns its output into ``ab`` and :meth:`colorize` into sRGB.

    Args:
        model: a segmenter with ``in_chans`` 1 and 2 (regression) or Q (bins) outputs.
        quantizer: the ab bins for the classification mode; None: regression.

    Shape: ``(B, 3 or 1, H, W) -> (B, 2 or Q, H, W)``.
    """

    def __init__(self, model: nn.Module, quantizer: ABQuantizer | None = None) -> None:
        super().__init__()
        self.model = model
        self.quantizer = quantizer

    @staticmethod
    def lightness(x: Tensor) -> Tensor:
        """``L`` ``(B, 1, H, W)`` of RGB or grey images ``(B, 3 or 1, H, W)`` in [0, 1]."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ShapeError(f"Colorizer expects (B, 3 or 1, H, W) images, got {tuple(x.shape)}")
        return split_lab(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(normalize_l(self.lightness(x)))

    def decode(self, out: Tensor) -> Tensor:
        """``ab`` ``(B, 2, H, W)`` of raw outputs (annealed mean of scores, or scaled values)."""
        return out * AB_SCALE if self.quantizer is None else self.quantizer(out)

    def colorize(self, x: Tensor) -> Tensor:
        """sRGB ``(B, 3, H, W)`` in [0, 1]: the input's ``L`` with the predicted ``ab``."""
        return merge_lab(self.lightness(x), self.decode(self(x)))
