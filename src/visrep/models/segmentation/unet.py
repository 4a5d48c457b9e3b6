"""U-Net (Ronneberger, Fischer and Brox 2015) and its border-weight map for the loss.

The contracting path repeats two 3x3 convolutions with ReLU and a 2x2 max-pooling that halves
the size and is followed by twice the channels; the expanding path repeats a 2x2 up-convolution
that halves the channels, the concatenation with the skip of the same level, and two 3x3
convolutions; a 1x1 convolution gives the scores (Sec. 2, Fig. 1). The paper's convolutions are
unpadded and its skips cropped, so its output is smaller than its input (overlap-tile
inference); here the 3x3 convolutions are zero-padded and the upsampled map is padded to its
skip (:func:`~visrep.models.layers.upsample.pad_like`), so the output has the input's size for
any input (odd sizes included). ``batch_norm`` adds BN after each convolution (not in the
paper, common since).

With ``encoder`` (any backbone with ``forward_intermediates`` and ``feature_info``, e.g.
``resnet18``) the contracting path is that backbone and the expanding path is the decoder of
segmentation_models_pytorch's ``Unet`` (Iakubovskii; the same modules, so the same parameter
count, and the same initialisation): from the coarsest level, each block upsamples (nearest,
to the size of the next finer level), concatenates that level's features, and applies two 3x3
conv-BN-ReLU; blocks without a skip continue to full resolution (the last one to the input
size), and a 3x3 convolution gives the scores. One skip per reduction (the last level of that
reduction); reductions must be powers of two.

:func:`unet_weight_map` is the paper's Eq. 2, the weights of the pixel-wise cross-entropy that
separate touching objects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.interface import BackboneFactory
from visrep.models.layers.upsample import pad_like
from visrep.models.segmentation.base import SEGMENTERS, Segmenter, build_encoder

__all__ = ["UNet", "UNetDecoder", "UNetDecoderBlock", "unet", "unet_weight_map"]


def unet_weight_map(
    mask: Tensor | np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    instances: bool = False,
    balance: bool = True,
) -> Tensor:
    """U-Net's weight map ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` (Eq. 2).

    ``d1`` and ``d2`` are the Euclidean distances to the nearest and second nearest object,
    computed on the CPU with one exact distance transform per object
    (``scipy.ndimage.distance_transform_edt``). As in the paper's Fig. 3d the border term
    weights the background between objects (it is zero on object pixels), and it needs at least
    two objects. ``w_c`` balances the class frequencies: background and foreground pixels each
    weigh ``N / (2 n_class)`` (1 everywhere with ``balance=False``, or when one class is absent).

    Args:
        mask: ``(H, W)`` ground truth; 0 is background. Objects are its connected components of
            non-zero pixels (8-connected), or with ``instances=True`` its non-zero ids.
        w0: weight of the border term (paper: 10).
        sigma: its width in pixels (paper: about 5).
        instances: read ``mask`` as an instance map, so touching objects stay apart.
        balance: include the class-balancing ``w_c``.

    Returns:
        ``(H, W)`` float32 weights.

    >>> m = torch.zeros(3, 7, dtype=torch.long); m[:, :2] = 1; m[:, 5:] = 1
    >>> unet_weight_map(m, balance=False)[0]
    tensor([1.0000, 1.0000, 8.2615, 8.2615, 8.2615, 1.0000, 1.0000])
    """
    from scipy import ndimage

    m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise ShapeError(f"unet_weight_map expects an (H, W) mask, got shape {m.shape}")
    if sigma <= 0:
        raise ConfigError(f"sigma must be > 0, got {sigma}")
    fg = m != 0
    if instances:
        ids = [i for i in np.unique(m) if i != 0]
        objects = [m == i for i in ids]
    else:
        labels, n = ndimage.label(fg, structure=np.ones((3, 3)))
        objects = [labels == i for i in range(1, n + 1)]
    w = np.ones(m.shape, dtype=np.float64)
    n_fg, n_all = int(fg.sum()), fg.size
    if balance and 0 < n_fg < n_all:
        w[fg] = n_all / (2 * n_fg)
        w[~fg] = n_all / (2 * (n_all - n_fg))
    if len(objects) >= 2:
        # distance_transform_edt measures the distance to the nearest zero: to the object.
        d = np.stack([ndimage.distance_transform_edt(~o) for o in objects])
        d.sort(axis=0)
        border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
        w[~fg] += border[~fg]
    return torch.from_numpy(w.astype(np.float32))


def _double_conv(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNetDecoderBlock(nn.Module):
    """Upsample (nearest) to the skip's size, concatenate the skip, two 3x3 conv-BN-ReLU.

    segmentation_models_pytorch's ``UnetDecoderBlock`` (same module names: ``conv1``, ``conv2``,
    each ``Conv2d`` without bias, ``BatchNorm2d``, ``ReLU``). ``skip_chs=0``: no skip.

    Shape: ``(B, in_chs, h, w), (B, skip_chs, H, W) -> (B, out_chs, H, W)``.
    """

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_chs + skip_chs, out_chs, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor, size: tuple[int, int], skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """U-Net's expanding path over encoder levels (segmentation_models_pytorch's ``UnetDecoder``).

    Args:
        skip_channels: channels of the encoder levels, fine to coarse (the coarsest is the input
            of the first block, the others its skips).
        reductions: their reductions, powers of two, increasing.
        decoder_channels: output channels of each block, ``len(skip_channels) - 1 +
            log2(reductions[0])`` of them; ``None``: ``(..., 64, 32, 16)`` halving to 16 (for
            five blocks smp's default ``(256, 128, 64, 32, 16)``).

    Shape: levels ``[(B, skip_channels[i], ceil(H / r_i), ceil(W / r_i))]`` and the input size
    ``(H, W)`` -> ``(B, decoder_channels[-1], H, W)``.
    """

    def __init__(
        self,
        skip_channels: list[int],
        reductions: list[int],
        decoder_channels: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if any(r < 1 or r & (r - 1) for r in reductions) or reductions != sorted(set(reductions)):
            raise ConfigError(
                f"U-Net encoder levels need increasing power-of-two reductions, got {reductions}"
            )
        self.reductions = list(reductions)
        n = len(reductions) - 1 + int(math.log2(reductions[0]))
        if decoder_channels is None:
            decoder_channels = tuple(16 * 2 ** (n - 1 - i) for i in range(n))
        if len(decoder_channels) != n or min(decoder_channels, default=1) < 1:
            raise ConfigError(
                f"decoder_channels must be {n} positive channels (one per decoder block for "
                f"encoder reductions {reductions}), got {tuple(decoder_channels)}"
            )
        ins = [skip_channels[-1], *decoder_channels[:-1]]
        skips = [*skip_channels[-2::-1], *[0] * (n - len(reductions) + 1)]
        self.blocks = nn.ModuleList(
            UNetDecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels, strict=True)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        x, skips = features[-1], features[-2::-1]
        r = self.reductions[0]
        for i, block in enumerate(self.blocks):
            if i < len(skips):
                x = block(x, tuple(skips[i].shape[-2:]), skips[i])
            else:  # past the finest level: halve the reduction, the last block to the input
                r //= 2
                x = block(x, (-(-size[0] // r), -(-size[1] // r)))
        return x


class UNet(Segmenter):
    """U-Net with ``depth`` poolings and ``width`` channels at the top level, or over an encoder.

    Args:
        in_chans: input channels.
        num_classes: output classes.
        depth: number of 2x2 poolings (paper: 4); without ``encoder`` only.
        width: channels of the first level, doubled after each pooling (paper: 64); without
            ``encoder`` only.
        batch_norm: BN after each convolution (not in the paper); without ``encoder`` only (the
            encoder's decoder always has BN, as smp's).
        encoder: a backbone as the contracting path, built without a classifier (module
            docstring); ``None``: the paper's contracting path.
        pretrained_path: the encoder's weights: a state dict or a visrep run / ``.ckpt``.
        decoder_channels: with ``encoder``, the channels of the decoder blocks (see
            :class:`UNetDecoder`; ``resnet18``: ``(256, 128, 64, 32, 16)``).

    Shape: ``(B, in_chans, H, W) -> (B, num_classes, H, W)``.

    >>> UNet(1, 2, depth=2, width=4)(torch.zeros(1, 1, 13, 10)).shape
    torch.Size([1, 2, 13, 10])
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        depth: int = 4,
        width: int = 64,
        batch_norm: bool = False,
        encoder: BackboneFactory | None = None,
        pretrained_path: str | None = None,
        decoder_channels: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes, self.depth = in_chans, num_classes, depth
        if encoder is not None:
            self.encoder = build_encoder(encoder, in_chans, pretrained_path)
            info = self.encoder.feature_info
            by_reduction = {d["reduction"]: i for i, d in enumerate(info)}  # the last one wins
            self.levels = [by_reduction[r] for r in sorted(by_reduction)]
            self.decoder = UNetDecoder(
                [info[i]["num_chs"] for i in self.levels],
                sorted(by_reduction),
                None if decoder_channels is None else tuple(decoder_channels),
            )
            # smp's SegmentationHead: a 3x3 convolution (the paper's is 1x1).
            self.classifier = nn.Conv2d(self.decoder.out_channels, num_classes, 3, padding=1)
            # smp's initialisation of the decoder (He uniform; BN at 1, 0) and head (Glorot).
            for conv in self.decoder.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
            nn.init.xavier_uniform_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)
            return
        if pretrained_path or decoder_channels is not None:
            raise ConfigError("pretrained_path and decoder_channels need an encoder")
        if depth < 0 or width < 1:
            raise ConfigError(f"depth must be >= 0 and width >= 1, got {depth} and {width}")
        chs = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            _double_conv(c_in, c, batch_norm)
            for c_in, c in zip([in_chans, *chs[:-1]], chs, strict=True)
        )
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, 2) for c in chs[:0:-1])
        self.up_convs = nn.ModuleList(_double_conv(c, c // 2, batch_norm) for c in chs[:0:-1])
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ShapeError(f"UNet expects (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if hasattr(self, "encoder"):
            feats = self.encoder.forward_intermediates(x, indices=self.levels)
            return self.classifier(self.decoder(feats, tuple(x.shape[-2:])))
        if min(x.shape[-2:]) < 2**self.depth:
            raise ShapeError(
                f"UNet of depth {self.depth} needs H, W >= {2**self.depth}, got {tuple(x.shape)}"
            )
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)  # floor: the upsampled map is then padded to the skip
            x = block(x)
            skips.append(x)
        for up, conv, skip in zip(self.up, self.up_convs, reversed(skips[:-1]), strict=True):
            x = conv(torch.cat([skip, pad_like(up(x), skip)], dim=1))
        return self.classifier(x)


@SEGMENTERS.register
class unet(UNet):  # noqa: N801 (the registered, user-facing name)
    """U-Net (Ronneberger et al. 2015), plain or over an encoder; see :class:`UNet`.

    >>> from functools import partial
    >>> from visrep.models.backbones.resnet_small import resnet_small
    >>> m = unet(3, 4, encoder=partial(resnet_small, channels=(4, 8)))
    >>> m(torch.zeros(1, 3, 15, 9)).shape
    torch.Size([1, 4, 15, 9])
    """
