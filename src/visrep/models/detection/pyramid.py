"""Any visrep backbone as the feature extractor of torchvision's detection heads.

torchvision's ``GeneralizedRCNN`` family takes a backbone module that maps a batch to an
``OrderedDict`` of feature maps and has ``out_channels``. :class:`PyramidFeatures` builds that
from a visrep :class:`~visrep.models.interface.Backbone` through ``forward_intermediates``:

- with ``fpn`` (Lin et al. 2017): the coarsest ``num_levels`` levels ``C_i`` go through the FPN
  neck (:class:`~visrep.models.necks.FPN`, ``channels`` wide) and the maps ``P_i`` are named
  ``"0", "1", ...``; the RPN also gets ``P6`` (``"pool"``, a stride-2 subsampling of the top
  level, as the paper's RPN and torchvision's ``LastLevelMaxPool``), the RoI heads only
  ``P2..P5`` (Lin et al., Sec. 4.2);
- without: the single coarsest level (``"0"``), Faster R-CNN's original single-scale setting
  (Ren et al. 2015, conv5 features; seed 001).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from visrep.errors import ConfigError
from visrep.models.backbones.resnet import resnet18
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.necks.fpn import FPN, pyramid_levels
from visrep.models.registry import build_encoder

__all__ = ["PyramidFeatures", "detection_encoder", "freeze_batchnorm"]


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` by a ``FrozenBatchNorm2d`` with its statistics
    and affine parameters (what torchvision does to a pretrained detection backbone: batches of
    two large images give useless batch statistics)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def detection_encoder(
    backbone: BackboneFactory | None, in_chans: int, pretrained_path: str | None, frozen_bn: bool
) -> Backbone:
    """A detector's feature extractor: ``backbone`` (default ``resnet18``, from scratch) without a
    classifier, its weights from ``pretrained_path``, batch norms frozen with ``frozen_bn``."""
    encoder = build_encoder(backbone or resnet18, in_chans, pretrained_path)
    return freeze_batchnorm(encoder) if frozen_bn else encoder


class PyramidFeatures(nn.Module):
    """A backbone's levels (and an FPN) as torchvision's detection backbone (module docstring).

    Args:
        encoder: a backbone with ``feature_info`` and ``forward_intermediates``, no classifier.
        fpn: add the FPN neck; otherwise use the coarsest level alone.
        num_levels: pyramid levels taken from the encoder (paper: 4, C2..C5).
        channels: width of the pyramid (paper: 256).
        extra_level: add ``P6`` (``"pool"``) for the RPN.

    Attributes:
        out_channels: channels of every returned map (what torchvision's heads read).
        reductions: stride of each returned map, in order.
        names: the keys of the returned maps, in order.
    """

    def __init__(
        self,
        encoder: Backbone,
        fpn: bool = True,
        num_levels: int = 4,
        channels: int = 256,
        extra_level: bool = True,
    ) -> None:
        super().__init__()
        info = encoder.feature_info
        self.encoder = encoder
        self.levels = pyramid_levels(info, num_levels if fpn else 1)
        reductions = [int(info[i]["reduction"]) for i in self.levels]
        if any(r < 1 or r & (r - 1) for r in reductions):
            raise ConfigError(
                f"detection needs backbone levels whose strides are powers of two; "
                f"{type(encoder).__name__} has {reductions}"
            )
        if fpn:
            self.neck: FPN | None = FPN(
                [info[i]["num_chs"] for i in self.levels],
                channels,
                reductions,
                extra_levels=int(extra_level),
            )
            self.out_channels = channels
            self.reductions = [d["reduction"] for d in self.neck.feature_info]
            self.names = [str(i) for i in range(len(self.levels))] + ["pool"] * extra_level
        else:
            self.neck = None
            self.out_channels = int(info[self.levels[0]]["num_chs"])
            self.reductions, self.names = reductions, ["0"]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.encoder.forward_intermediates(x, indices=self.levels)
        maps = self.neck(feats) if self.neck is not None else feats
        return OrderedDict(zip(self.names, maps, strict=True))
