"""DeepLab v3 (Chen et al. 2017): atrous spatial pyramid pooling on a dilated encoder.

The encoder keeps an output stride of 16 or 8: the stages past that stride do not subsample
but dilate their convolutions instead (atrous convolution, Sec. 3.1-3.2). ASPP (Sec. 3.3)
runs in parallel a 1x1 convolution, three 3x3 atrous convolutions at rates (6, 12, 18) for
output stride 16 (doubled for 8) and image-level pooling (global average, 1x1 convolution,
bilinear upsampling), each with 256 filters and BN; their concatenation goes through a 1x1
convolution (256, BN) and a final 1x1 convolution gives the logits, which are upsampled
bilinearly to the input size.

Encoders and their output stride:

- ``encoder=None`` (default): :class:`~visrep.models.segmentation.encoder.DilatedCNN` with
  ``encoder_channels``, whose ``output_stride`` option dilates its last stages;
- the ``timm`` backbone (any timm model that takes ``output_stride``, e.g. ResNets): timm's
  own dilation, through ``model_args``;
- the registered timm ResNets (``resnet18`` ...): timm's ``output_stride`` of the same class;
  with ``small_stem`` their strides are a quarter of timm's, so they reach at most 8;
- any other backbone: a ``ConfigError``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.backbones.resnet import TimmResNet
from visrep.models.backbones.timm_model import timm as TimmBackbone
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.segmentation.base import SEGMENTERS, Segmenter, build_encoder, encoder_class
from visrep.models.segmentation.encoder import DEFAULT_ENCODER_CHANNELS, DilatedCNN, conv_bn_relu

__all__ = ["ASPP", "DeepLabV3", "deeplab", "dilated_encoder"]


def dilated_encoder(
    factory: BackboneFactory | None,
    in_chans: int,
    output_stride: int,
    channels: tuple[int, ...] = DEFAULT_ENCODER_CHANNELS,
) -> Backbone:
    """The encoder of ``factory`` built with output stride ``output_stride`` (module docstring)."""
    if factory is None:
        return DilatedCNN(in_chans, 0, None, channels=channels, output_stride=output_stride)
    cls, kw = encoder_class(factory)
    if issubclass(cls, DilatedCNN):
        return cls(in_chans, 0, None, **{**kw, "output_stride": output_stride})
    if issubclass(cls, TimmBackbone):
        model_args = {**(kw.get("model_args") or {}), "output_stride": output_stride}
        return cls(in_chans, 0, None, **{**kw, "model_args": model_args})
    if issubclass(cls, TimmResNet):
        small = bool(kw.get("small_stem"))  # None: decided by img_size, which is None here
        timm_os = output_stride * 4 if small else output_stride
        if timm_os not in (8, 16, 32):
            raise ConfigError(
                f"{cls.__name__} with small_stem={small} cannot have output stride {output_stride}"
            )
        # TimmResNet builds timm's ResNet from ``self.arch``: the same class, with timm's own
        # ``output_stride`` argument added for this instance.
        enc = cls.__new__(cls)
        enc.__dict__["arch"] = {**cls.arch, "output_stride": timm_os}
        cls.__init__(enc, in_chans, 0, **kw)
        del enc.__dict__["arch"]
        return enc
    raise ConfigError(
        f"deeplab cannot dilate encoder {cls.__name__}: use encoder=None (DilatedCNN), a "
        "registered timm ResNet or the timm backbone"
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image-level features (DeepLab v3, Sec. 3.3).

    Args:
        in_chs: input channels.
        out_chs: channels of each branch and of the projection (paper: 256).
        rates: the three atrous rates.

    Shape: ``(B, in_chs, h, w) -> (B, out_chs, h, w)``. The image-pooling branch has BN on a
    ``1x1`` map, so training needs batches of more than one image.
    """

    def __init__(self, in_chs: int, out_chs: int = 256, rates: tuple[int, ...] = (6, 12, 18)):
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            [nn.Sequential(*conv_bn_relu(in_chs, out_chs, 1))]
            + [nn.Sequential(*conv_bn_relu(in_chs, out_chs, 3, r)) for r in self.rates]
        )
        self.image_pool = nn.Sequential(*conv_bn_relu(in_chs, out_chs, 1))
        n = len(self.rates) + 2
        self.project = nn.Sequential(*conv_bn_relu(n * out_chs, out_chs, 1))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        pooled = F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3(Segmenter):
    """DeepLab v3: ASPP on the last level of a dilated encoder, upsampled to the input.

    Args:
        in_chans: input channels.
        num_classes: output classes.
        encoder: the backbone (see the module docstring); ``None`` for :class:`DilatedCNN`.
        encoder_channels: stage channels of the default :class:`DilatedCNN`.
        pretrained_path: the encoder's weights: a state dict or a visrep run / ``.ckpt``.
        output_stride: 16 or 8.
        aspp_channels: channels of the ASPP branches (paper: 256).
        atrous_rates: ASPP rates at output stride 16, scaled by ``16 / output_stride``.

    Shape: ``(B, in_chans, H, W) -> (B, num_classes, H, W)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        encoder: BackboneFactory | None = None,
        encoder_channels: tuple[int, ...] = DEFAULT_ENCODER_CHANNELS,
        pretrained_path: str | None = None,
        output_stride: Literal[8, 16] = 16,
        aspp_channels: int = 256,
        atrous_rates: tuple[int, int, int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ConfigError(f"output_stride must be 8 or 16, got {output_stride}")
        self.in_chans, self.num_classes = in_chans, num_classes

        def factory(i: int, n: int, s: Any) -> Backbone:
            return dilated_encoder(encoder, i, output_stride, tuple(encoder_channels))

        self.encoder = build_encoder(factory, in_chans, pretrained_path)
        last = self.encoder.feature_info[-1]
        if last["reduction"] != output_stride:
            raise ConfigError(
                f"encoder {type(self.encoder).__name__} reaches reduction {last['reduction']}, "
                f"not the output stride {output_stride}"
            )
        self.output_stride = output_stride
        rates = tuple(r * 16 // output_stride for r in atrous_rates)
        self.aspp = ASPP(last["num_chs"], aspp_channels, rates)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder.forward_intermediates(x, indices=[-1])[-1]
        y = self.classifier(self.aspp(z))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@SEGMENTERS.register
class deeplab(DeepLabV3):  # noqa: N801 (the registered, user-facing name)
    """DeepLab v3; see :class:`DeepLabV3`.

    >>> m = deeplab(3, 4, encoder_channels=(4, 8, 8), output_stride=8, aspp_channels=8)
    >>> m(torch.zeros(2, 3, 17, 30)).shape
    torch.Size([2, 4, 17, 30])
    """
