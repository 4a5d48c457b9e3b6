"""The default encoder of the encoder-based segmenters: a small CNN that can dilate.

:class:`DilatedCNN` has stages of two 3x3 conv-BN-ReLU, the first of each with stride 2
(feature reductions 2, 4, ..., ``2^S``, as VGG-16's pooling stages for five stages). Its
``output_stride`` option turns the subsampling of the last stages into dilation (DeepLab's
atrous convolution). FCN uses it undilated, DeepLab at output stride 8 or 16. It is not a
registered backbone (``--model.model.encoder_channels`` configures it inside a segmenter);
any registered backbone can be the encoder instead.
"""

from __future__ import annotations

from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.interface import Backbone

__all__ = ["DEFAULT_ENCODER_CHANNELS", "DilatedCNN", "conv_bn_relu"]

DEFAULT_ENCODER_CHANNELS = (16, 32, 64, 128, 128)


def conv_bn_relu(c_in: int, c_out: int, k: int = 1, dilation: int = 1) -> list[nn.Module]:
    """A ``k x k`` convolution (no bias, ``same`` padding at ``dilation``), BN and ReLU."""
    pad = dilation * (k // 2)
    return [
        nn.Conv2d(c_in, c_out, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class DilatedCNN(Backbone):
    """A small encoder of stages (3x3 conv-BN-ReLU twice), the first conv of each with stride 2.

    Once the stride reaches ``output_stride``, later stages keep stride 1 and double the
    dilation instead (DeepLab's atrous convolution; the first conv of such a stage keeps the
    previous dilation, as timm's and torchvision's dilated ResNets), so the net computes the
    undilated net's features at every position: with the same weights, the undilated map is the
    dilated one sampled every ``2^k`` pixels. One feature level per stage, with its true
    reduction.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: none).
        img_size: unused (any size).
        channels: channels of each stage.
        output_stride: the largest reduction (a power of two); ``None``: ``2^len(channels)``.
        pretrained_path: local weights.

    Shape: ``(B, in_chans, H, W) -> (B, channels[-1], ceil(H / os), ceil(W / os))``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        img_size: int | tuple[int, int] | None = None,
        channels: tuple[int, ...] = (16, 32, 64, 128, 128),
        output_stride: int | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if not channels or min(channels) < 1:
            raise ConfigError(f"channels must be non-empty and positive, got {tuple(channels)}")
        if output_stride is not None and (
            output_stride < 2
            or output_stride & (output_stride - 1)
            or output_stride > 2 ** len(channels)
        ):
            raise ConfigError(
                f"output_stride must be a power of two in 2..{2 ** len(channels)}, got "
                f"{output_stride}"
            )
        os_ = output_stride or 2 ** len(channels)
        stages, self.feature_info = [], []
        c_prev, reduction, dilation = in_chans, 1, 1
        for i, c in enumerate(channels):
            first = dilation  # the conv that would subsample keeps the dilation before it
            if reduction < os_:
                stride, reduction = 2, reduction * 2
            else:
                stride, dilation = 1, dilation * 2
            layers = [
                nn.Conv2d(c_prev, c, 3, stride, padding=first, dilation=first, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                *conv_bn_relu(c, c, 3, dilation),
            ]
            stages.append(nn.Sequential(*layers))
            self.feature_info.append(
                {"num_chs": c, "reduction": reduction, "module": f"stages.{i}"}
            )
            c_prev = c
        self.stages = nn.Sequential(*stages)
        self.output_stride = os_
        self.set_classifier(c_prev, num_classes, pretrained_path=pretrained_path)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(x)
