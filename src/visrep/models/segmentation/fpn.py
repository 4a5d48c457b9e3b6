"""Semantic FPN: the semantic-segmentation branch of Panoptic FPN on any backbone.

Kirillov, Girshick, He and Dollár 2019, "Panoptic Feature Pyramid Networks", Sec. 3.2 and
Fig. 3, on the FPN of Lin et al. 2017 (:class:`~visrep.models.necks.FPN`): the pyramid ``P_i``
(paper: P2..P5, strides 4 to 32, 256 channels) feeds one branch per level. Each branch is a
stack of upsampling stages (3x3 convolution, group norm, ReLU, 2x bilinear upsampling) that
brings its level to the finest level's scale (1/4): ``log2(r_i / r_min)`` stages, and one
stage without upsampling for the finest level itself. The branches (128 channels) are summed,
a 1x1 convolution gives the class scores, and bilinear upsampling by ``r_min`` (4) gives the
input size. Initialisation follows Detectron2's ``SemSegFPNHead``.

Levels: among the encoder's ``feature_info``, one per reduction (the last level of that
reduction, the deepest features at that stride), the coarsest ``num_levels`` of them (for a
ResNet: C2..C5 of strides 4..32; the stem's stride-2 level is left out, as in the paper).
Reductions must be powers of two. Maps of an odd-sized input are rounded up by the encoder
(``ceil(H / r)``); the neck and the branches cut them at the bottom and right
(:func:`~visrep.models.layers.upsample.crop_like`), so the logits have the input size exactly.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch  # noqa: F401  (doctest)
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import BackboneFactory
from visrep.models.layers.upsample import crop_like
from visrep.models.necks.fpn import FPN, pyramid_levels
from visrep.models.segmentation.base import SEGMENTERS, Segmenter, build_encoder
from visrep.models.segmentation.encoder import DEFAULT_ENCODER_CHANNELS, DilatedCNN

__all__ = ["SemanticFPN", "fpn"]


def _stage(c_in: int, c_out: int, norm: str, upsample: bool) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # c2_msra_fill
    # GN with Detectron2's 32 groups (4 channels each at 128), fewer for narrower branches so
    # that a group keeps >= 4 channels (one channel per group fails on 1x1 maps of one image).
    groups = math.gcd(32, max(c_out // 4, 1))
    nrm = nn.GroupNorm(groups, c_out) if norm == "gn" else nn.BatchNorm2d(c_out)
    layers: list[nn.Module] = [conv, nrm, nn.ReLU(inplace=True)]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return layers


class SemanticFPN(Segmenter):
    """FPN on an encoder, then Panoptic FPN's semantic branch (module docstring).

    Args:
        in_chans: input channels.
        num_classes: output classes.
        encoder: the backbone (any with ``forward_intermediates`` and ``feature_info``), built
            without a classifier; ``None``: a
            :class:`~visrep.models.segmentation.encoder.DilatedCNN` (reductions 2 to 32).
        encoder_channels: stage channels of that default encoder.
        pretrained_path: the encoder's weights: a state dict or a visrep run / ``.ckpt``.
        num_levels: pyramid levels used, the coarsest ones (paper: 4, P2..P5).
        fpn_channels: channels of the pyramid (paper: 256).
        head_channels: channels of the semantic branch (paper: 128).
        norm: ``"gn"`` (paper: group norm, 32 groups; fewer below 128 channels, so that a
            group has at least 4 channels) or ``"bn"`` in the branch.
        upsample: the FPN's top-down upsampling, ``"nearest"`` (Lin et al.) or ``"bilinear"``.

    Shape: ``(B, in_chans, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        encoder: BackboneFactory | None = None,
        encoder_channels: tuple[int, ...] = DEFAULT_ENCODER_CHANNELS,
        pretrained_path: str | None = None,
        num_levels: int = 4,
        fpn_channels: int = 256,
        head_channels: int = 128,
        norm: Literal["gn", "bn"] = "gn",
        upsample: Literal["nearest", "bilinear"] = "nearest",
    ) -> None:
        super().__init__()
        if norm not in ("gn", "bn"):
            raise ConfigError(f"norm must be 'gn' or 'bn', got {norm!r}")
        if head_channels < 1:
            raise ConfigError(f"head_channels must be >= 1, got {head_channels}")
        self.in_chans, self.num_classes = in_chans, num_classes
        if encoder is None:
            encoder = partial(DilatedCNN, channels=tuple(encoder_channels))
        self.encoder = build_encoder(encoder, in_chans, pretrained_path)
        info = self.encoder.feature_info
        self.levels = pyramid_levels(info, num_levels)
        reductions = [info[i]["reduction"] for i in self.levels]
        if any(r < 1 or r & (r - 1) for r in reductions):
            raise ConfigError(
                f"fpn needs encoder levels whose reductions are powers of two; "
                f"{type(self.encoder).__name__} has {reductions}"
            )
        self.neck = FPN(
            [info[i]["num_chs"] for i in self.levels], fpn_channels, reductions, upsample
        )
        self.min_reduction = reductions[0]
        branches = []
        for r in reductions:
            n_up = int(math.log2(r // reductions[0]))
            layers: list[nn.Module] = []
            for k in range(max(1, n_up)):
                layers += _stage(fpn_channels if k == 0 else head_channels, head_channels,
                                 norm, upsample=k < n_up)  # fmt: skip
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder.forward_intermediates(x, indices=self.levels)
        pyramid = self.neck(feats)
        finest = pyramid[0]
        y = sum(crop_like(b(p), finest) for b, p in zip(self.branches, pyramid, strict=True))
        y = self.classifier(y)
        if self.min_reduction > 1:
            y = F.interpolate(
                y, scale_factor=self.min_reduction, mode="bilinear", align_corners=False
            )
        return crop_like(y, x)


@SEGMENTERS.register
class fpn(SemanticFPN):  # noqa: N801 (the registered, user-facing name)
    """Panoptic FPN's semantic branch (Kirillov et al. 2019); see :class:`SemanticFPN`.

    >>> m = fpn(3, 5, encoder_channels=(4, 4, 8, 8, 8), fpn_channels=8, head_channels=8)
    >>> m(torch.zeros(1, 3, 31, 45)).shape
    torch.Size([1, 5, 31, 45])
    """
