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

:func:`unet_weight_map` is the paper's Eq. 2, the weights of the pixel-wise cross-entropy that
separate touching objects.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.upsample import pad_like
from visrep.models.segmentation.base import SEGMENTERS, Segmenter

__all__ = ["UNet", "unet", "unet_weight_map"]


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


class UNet(Segmenter):
    """U-Net with ``depth`` poolings and ``width`` channels at the top level.

    Args:
        in_chans: input channels.
        num_classes: output classes.
        depth: number of 2x2 poolings (paper: 4).
        width: channels of the first level, doubled after each pooling (paper: 64).
        batch_norm: BN after each convolution (not in the paper).

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
    ) -> None:
        super().__init__()
        if depth < 0 or width < 1:
            raise ConfigError(f"depth must be >= 0 and width >= 1, got {depth} and {width}")
        self.in_chans, self.num_classes, self.depth = in_chans, num_classes, depth
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
    """U-Net (Ronneberger et al. 2015); see :class:`UNet`."""
