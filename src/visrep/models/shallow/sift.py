"""Dense SIFT at several scales: OpenCV's SIFT descriptor on a regular grid of keypoints.

Seed 002 ("Bag of Visual Words"): "precomputed dense SIFT descriptors at 3 scales" are the local
features of the BoVW / Fisher-vector pipelines that dominated image classification until 2012.
The descriptor is Lowe's (IJCV 2004, Sec. 6.1): a 4 x 4 grid of 8-bin gradient-orientation
histograms (128 values), Gaussian-weighted, trilinearly interpolated, normalised, clipped at 0.2
and renormalised. It is computed by OpenCV (``cv2.SIFT.compute``) on keypoints we place on a
grid, upright (angle 0: dense SIFT has no orientation assignment), batched over the images of a
batch in one OpenCV call.

Scale. A keypoint of OpenCV size ``s`` has spatial bins ``1.5 * s`` pixels wide (Lowe's
``3 sigma`` with ``sigma = s / 2``), so a descriptor with ``bin_size``-pixel bins covers a
``4 * bin_size`` square patch and has ``s = bin_size / 1.5``. As in Lowe Sec. 6.1 ("the scale of
the keypoint is used to select the level of Gaussian blur"), each keypoint carries the octave
and layer of the scale-space pyramid that SIFT's detector would give a keypoint of that size
(:func:`sift_octave`), so coarser scales are also computed on a smoother image.

RootSIFT (Arandjelovic and Zisserman, "Three things everyone should know", CVPR 2012): L1-normalise, then square-root,
so that the Euclidean distance of RootSIFT is the Hellinger kernel on SIFT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError

DESCRIPTOR_DIM = 128
#: OpenCV's SIFT constants (sift.simd.hpp): spatial bin width = SIFT_DESCR_SCL_FCTR * size / 2,
#: detector scale sigma = 1.6 and 3 layers per octave.
_SCL_FCTR = 3.0
_SIGMA = 1.6
_LAYERS = 3


def sift_octave(size: float) -> int:
    """OpenCV's packed ``KeyPoint.octave`` (octave and layer) for a keypoint of ``size`` pixels.

    SIFT's detector gives a keypoint found at octave ``o`` and layer ``l`` (``1 <= l <= 3``) the
    size ``2 * 1.6 * 2 ** (o + l / 3)`` (Lowe 2004, Sec. 3-4; OpenCV ``adjustLocalExtrema``), so
    ``3 * log2(size / 3.2)`` rounded is ``3 o + l``. Sizes below the finest level (the image
    doubled, octave -1) use that level.

    Args:
        size: keypoint diameter in pixels, > 0.

    Returns:
        ``(o & 255) | (l << 8)`` as OpenCV packs it.

    >>> sift_octave(3.2 * 2 ** (1 / 3)), sift_octave(6.4) == (0 | 3 << 8)
    (256, True)
    """
    n = max(round(_LAYERS * math.log2(size / (2 * _SIGMA))), 1 - _LAYERS)
    octave = (n - 1) // _LAYERS
    layer = n - _LAYERS * octave
    return (octave & 255) | (layer << 8)


def dense_keypoints(
    height: int, width: int, step: int = 4, bin_sizes: Sequence[int] = (4, 6, 8)
) -> tuple[Tensor, Tensor]:
    """The grid of keypoints of dense SIFT: every ``step`` pixels, once per scale.

    The grid is centred in the image (equal margins left and right, top and bottom); keypoints
    are ordered scale by scale, then row by row.

    Args:
        height, width: image size in pixels.
        step: grid spacing in pixels, >= 1.
        bin_sizes: spatial bin width in pixels of each scale (the patch is ``4 * bin_size``).

    Returns:
        ``positions`` (K, 2) float32 ``(x, y)`` in pixels (pixel centres at integers) and
        ``sizes`` (K,) float32 OpenCV keypoint sizes ``bin_size / 1.5``;
        ``K = len(bin_sizes) * ny * nx``.

    >>> pos, size = dense_keypoints(8, 12, step=4, bin_sizes=(3,))
    >>> pos.tolist()
    [[1.5, 1.5], [5.5, 1.5], [9.5, 1.5], [1.5, 5.5], [5.5, 5.5], [9.5, 5.5]]
    """
    if step < 1:
        raise ConfigError(f"dense SIFT: step must be >= 1 pixel, got {step}")
    if len(bin_sizes) == 0 or any(b <= 0 for b in bin_sizes):
        raise ConfigError(f"dense SIFT: bin_sizes must be positive pixel widths, got {bin_sizes}")
    if height < 1 or width < 1:
        raise ShapeError(f"dense SIFT: image size must be >= 1 x 1, got {height} x {width}")

    def axis(n: int) -> Tensor:
        count = (n - 1) // step + 1
        start = ((n - 1) - step * (count - 1)) / 2
        return start + step * torch.arange(count, dtype=torch.float32)

    ys, xs = torch.meshgrid(axis(height), axis(width), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    positions = grid.repeat(len(bin_sizes), 1)
    sizes = torch.tensor([b / _SCL_FCTR * 2 for b in bin_sizes], dtype=torch.float32)
    return positions, sizes.repeat_interleave(len(grid))


def cv_keypoints(positions: Tensor, sizes: Tensor) -> list[cv2.KeyPoint]:
    """OpenCV keypoints (upright, with the octave of their size) at ``positions`` (K, 2)."""
    octaves = {s: sift_octave(s) for s in sizes.unique().tolist()}
    return [
        cv2.KeyPoint(x, y, s, 0.0, 0.0, octaves[s])
        for (x, y), s in zip(positions.tolist(), sizes.tolist(), strict=True)
    ]


def to_gray_uint8(images: Tensor) -> np.ndarray:
    """Images in [0, 1] as 8-bit grey levels, as OpenCV's SIFT reads them.

    RGB is converted by OpenCV's ``cvtColor(RGB2GRAY)`` (ITU-R BT.601 weights) on the 8-bit
    image, in one call for the whole batch.

    Args:
        images: (N, C, H, W) float in [0, 1], C = 1 or 3.

    Returns:
        (N, H, W) uint8.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(
            f"dense SIFT: images must be (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ShapeError(f"dense SIFT: images must be float in [0, 1], got {images.dtype}")
    if images.numel() and not (images.min() >= 0 and images.max() <= 1):
        raise DataError(
            "dense SIFT: images must be in [0, 1] (un-normalised), got values in "
            f"[{images.min().item():.3g}, {images.max().item():.3g}]"
        )
    n, c, h, w = images.shape
    u8 = (images.detach().cpu() * 255).round().to(torch.uint8)
    if c == 1 or n == 0:
        return u8[:, 0].numpy()
    rgb = u8.permute(0, 2, 3, 1).reshape(n * h, w, 3).numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).reshape(n, h, w)


def root_sift(descriptors: Tensor, eps: float = 1e-12) -> Tensor:
    """RootSIFT (Arandjelovic and Zisserman 2012): ``sqrt(d / ||d||_1)``.

    Args:
        descriptors: (..., 128) non-negative SIFT descriptors.

    Returns:
        (..., 128) with unit L2 norm (all-zero descriptors stay zero).
    """
    return (descriptors / descriptors.sum(-1, keepdim=True).clamp_min(eps)).sqrt()


def dense_sift(
    images: Tensor,
    step: int = 4,
    bin_sizes: Sequence[int] = (4, 6, 8),
    root: bool = False,
) -> tuple[Tensor, Tensor]:
    """Dense SIFT descriptors of a batch of images (Lowe 2004 Sec. 6.1 on a grid; seed 002).

    Args:
        images: (N, C, H, W) float in [0, 1], C = 1 (grey) or 3 (RGB).
        step: grid spacing in pixels.
        bin_sizes: spatial bin width in pixels of each scale (patch = ``4 * bin_size``);
            default three scales (16, 24 and 32 pixel patches).
        root: RootSIFT instead of SIFT.

    Returns:
        ``descriptors`` (N, K, 128) float32 (OpenCV's scale: values in [0, 255]; RootSIFT: unit
        L2 norm) on the images' device, and ``positions`` (K, 2) ``(x, y)`` of the keypoints,
        the same for every image (see :func:`dense_keypoints` for their order and sizes).

    >>> d, p = dense_sift(torch.rand(2, 3, 32, 32))
    >>> tuple(d.shape), tuple(p.shape)
    ((2, 192, 128), (192, 2))
    """
    gray = to_gray_uint8(images)
    n, h, w = gray.shape
    positions, sizes = dense_keypoints(h, w, step, bin_sizes)
    keypoints = cv_keypoints(positions, sizes)
    sift = cv2.SIFT_create()
    if n == 0:
        out = np.zeros((0, len(keypoints), DESCRIPTOR_DIM), np.float32)
    else:
        kept, desc = sift.compute(list(gray), [keypoints] * n)
        if any(len(k) != len(keypoints) for k in kept):
            raise DataError(  # OpenCV filters nothing in compute(); guard the contract anyway
                f"dense SIFT: OpenCV dropped keypoints of a {h} x {w} image; "
                "use a larger image or smaller bin_sizes"
            )
        out = np.stack(desc)
    result = torch.from_numpy(out).to(images.device)
    return (root_sift(result) if root else result), positions.to(images.device)


class DenseSift(nn.Module):
    """Dense multi-scale SIFT as a module (holds the options of :func:`dense_sift`).

    ``describe(images)`` (= ``forward``) returns ``(descriptors (N, K, 128), positions (K, 2))``;
    ``descriptors[i]`` is image ``i``'s ``(K, 128)`` set, ready for
    :meth:`visrep.models.shallow.Codebook.encode` or
    :meth:`visrep.models.shallow.FisherEncoder.encode`. Not differentiable.

    Args:
        step: grid spacing in pixels.
        bin_sizes: spatial bin width of each scale in pixels.
        root: RootSIFT.
    """

    def __init__(self, step: int = 4, bin_sizes: Sequence[int] = (4, 6, 8), root: bool = False):
        super().__init__()
        dense_keypoints(1, 1, step, bin_sizes)  # validate the options now
        self.step, self.bin_sizes, self.root = step, tuple(bin_sizes), root

    @property
    def num_features(self) -> int:
        """Descriptor dimension (128)."""
        return DESCRIPTOR_DIM

    def keypoints(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Keypoint ``positions`` (K, 2) and ``sizes`` (K,) on a ``height x width`` image."""
        return dense_keypoints(height, width, self.step, self.bin_sizes)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return dense_sift(images, self.step, self.bin_sizes, self.root)

    describe = forward

    def extra_repr(self) -> str:
        return f"step={self.step}, bin_sizes={self.bin_sizes}, root={self.root}"
