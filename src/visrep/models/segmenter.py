"""The plain segmentation model: ``x -> normalise -> segmenter -> per-pixel logits`` (seed 001, 003),
optionally followed by a trainable dense CRF (CRF-as-RNN, Zheng et al. ICCV 2015).

Usable without Lightning; :class:`visrep.tasks.SegmentationTask` wraps it for training. Inputs are
pixels in ``[0, 1]``: the normalisation statistics of the training split live inside, so a
checkpoint predicts on raw images, and the CRF's appearance kernel sees the raw colours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.models.layers import Normalize
from visrep.models.layers.crf import DenseCRF


def crf_log_marginals(crf: DenseCRF, logits: Tensor, image: Tensor) -> Tensor:
    """``log Q`` of the mean-field marginals of ``crf`` with unaries ``U = -logits`` (Zheng et
    al. 2015, Sec. 4: the CNN's scores are the unary potentials of the unrolled CRF).

    ``log Q`` is a valid set of logits: ``softmax(log Q) = Q`` and ``log_softmax(log Q) = log Q``,
    so the cross-entropy of these outputs is the NLL of the CRF's marginals that CRF-as-RNN
    trains on, and their argmax is the CRF's labelling. Computed in float32 at least (a
    half-precision softmax of the mean-field update loses the small marginals); ``Q`` is clamped
    to the smallest normal float before the log, so a marginal that underflows to 0 gives a
    finite loss.

    Shape: logits ``(B, L, H, W)``, image ``(B, C, H, W)`` in ``[0, 1]``; returns ``(B, L, H, W)``.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    q = crf(-logits.to(dtype), image.to(dtype))
    return q.clamp_min(torch.finfo(dtype).tiny).log()


class ImageSegmenter(nn.Module):
    """A segmentation model with its input normalisation inside, and optionally a CRF-as-RNN layer.

    Args:
        model: the segmentation network, on normalised images.
        mean, std: per-channel statistics of the training images.
        crf: a dense CRF applied to the network's scores and the raw image (CRF-as-RNN when its
            parameters are learnable); the output is then the CRF's ``log Q``
            (:func:`crf_log_marginals`). None: the network's logits.

    Shape: ``(B, C, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        crf: DenseCRF | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model
        self.crf = crf

    def scores(self, x: Tensor) -> Tensor:
        """The network's logits (the CRF's unaries), without the CRF."""
        return self.model(self.normalize(x))

    def refine(self, scores: Tensor, x: Tensor) -> Tensor:
        """The CRF's ``log Q`` for the network's ``scores`` on images ``x``; ``scores`` unchanged
        without a CRF."""
        return scores if self.crf is None else crf_log_marginals(self.crf, scores, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.refine(self.scores(x), x)
