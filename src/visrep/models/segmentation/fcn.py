"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell 2015) on any backbone.

The classifier is a 1x1 "score" convolution on the backbone's last feature level (stride
``R``, 32 for VGG-16); FCN-32s upsamples its scores ``R`` times to the image. FCN-16s adds a
skip: the scores are upsampled 2x by a learned transposed convolution initialised to bilinear,
summed with 1x1 scores of the stride-``R/2`` level (pool4), and the sum upsampled ``R/2``
times; FCN-8s adds the stride-``R/4`` level (pool3) the same way (Sec. 4.2, Fig. 3). As in the
reference nets the final upsampling is fixed bilinear (``lr_mult: 0``) and the skip score layers
start at zero, so a finer net starts with the predictions of the coarser one (Sec. 4.2).

Levels are chosen among the backbone's ``feature_info`` by their reduction: the last level and
the levels of half and a quarter of its reduction (for VGG-16 and ResNets: strides 32, 16, 8).
Maps are aligned at their top-left corner and cropped to the input size (FCN's ``Crop``
layers), so any input size works.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import BackboneFactory
from visrep.models.layers.upsample import BilinearUpsample2d, crop_like
from visrep.models.segmentation.base import SEGMENTERS, Segmenter, build_encoder
from visrep.models.segmentation.encoder import DEFAULT_ENCODER_CHANNELS, DilatedCNN

__all__ = ["FCN", "fcn8s", "fcn16s", "fcn32s"]


class FCN(Segmenter):
    """FCN with ``skips`` skip levels, a class attribute set by the registered variants
    (0: FCN-32s, 1: FCN-16s, 2: FCN-8s).

    Args:
        in_chans: input channels.
        num_classes: output classes.
        encoder: the backbone (any with ``forward_intermediates`` and ``feature_info``), built
            without a classifier; ``None``: an undilated
            :class:`~visrep.models.segmentation.encoder.DilatedCNN` (reductions 2 to 32).
        encoder_channels: stage channels of that default encoder.
        pretrained_path: the encoder's weights: a state dict or a visrep run / ``.ckpt``.
        learn_final_upsample: learn the final upsampling too (the reference keeps it fixed).

    Shape: ``(B, in_chans, H, W) -> (B, num_classes, H, W)``.
    """

    skips: ClassVar[int] = 2

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        encoder: BackboneFactory | None = None,
        encoder_channels: tuple[int, ...] = DEFAULT_ENCODER_CHANNELS,
        pretrained_path: str | None = None,
        learn_final_upsample: bool = False,
    ) -> None:
        super().__init__()
        skips = self.skips
        self.in_chans, self.num_classes = in_chans, num_classes
        if encoder is None:
            encoder = partial(DilatedCNN, channels=tuple(encoder_channels))
        self.encoder = build_encoder(encoder, in_chans, pretrained_path)
        info = self.encoder.feature_info
        last = info[-1]["reduction"]
        wanted = [last // 2**i for i in range(skips + 1)]  # coarse to fine
        by_reduction = {d["reduction"]: i for i, d in enumerate(info)}  # the last level wins
        by_reduction[last] = len(info) - 1
        if last % 2**skips or any(r not in by_reduction for r in wanted):
            have = [d["reduction"] for d in info]
            raise ConfigError(
                f"FCN with {skips} skip(s) needs encoder levels of reduction {wanted}; "
                f"{type(self.encoder).__name__} has {have}"
            )
        self.levels = [by_reduction[r] for r in wanted]
        self.score = nn.ModuleList(
            nn.Conv2d(info[i]["num_chs"], num_classes, 1) for i in self.levels
        )
        for s in self.score[1:]:  # skips start at zero: the net starts as the coarser one
            nn.init.zeros_(s.weight)
            nn.init.zeros_(s.bias)
        self.up2 = nn.ModuleList(BilinearUpsample2d(num_classes, 2) for _ in range(skips))
        self.final_factor = wanted[-1]
        self.upsample = BilinearUpsample2d(num_classes, wanted[-1], learn_final_upsample)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder.forward_intermediates(x, indices=sorted(set(self.levels)))
        by_level = dict(zip(sorted(set(self.levels)), feats, strict=True))
        y = self.score[0](by_level[self.levels[0]])
        for up, score, level in zip(self.up2, self.score[1:], self.levels[1:], strict=True):
            skip = score(by_level[level])
            y = crop_like(up(y), skip) + skip
        return crop_like(self.upsample(y), x)


@SEGMENTERS.register
class fcn32s(FCN):  # noqa: N801 (the registered, user-facing name)
    """FCN-32s: scores of the last level, upsampled to the image in one step; see :class:`FCN`."""

    skips = 0


@SEGMENTERS.register
class fcn16s(FCN):  # noqa: N801 (the registered, user-facing name)
    """FCN-16s: FCN-32s fused with the scores of the half-reduction level; see :class:`FCN`."""

    skips = 1


@SEGMENTERS.register
class fcn8s(FCN):  # noqa: N801 (the registered, user-facing name)
    """FCN-8s: FCN-16s fused with the scores of the quarter-reduction level; see :class:`FCN`.

    >>> import torch
    >>> m = fcn8s(3, 5, encoder_channels=(4, 4, 8, 8, 8))
    >>> m(torch.zeros(1, 3, 31, 45)).shape
    torch.Size([1, 5, 31, 45])
    """

    skips = 2
