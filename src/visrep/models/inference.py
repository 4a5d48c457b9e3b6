"""Dense prediction on images larger than a model's working size: sliding-window inference.

A fully convolutional segmenter (FCN, Long et al. 2015; DeepLab, Chen et al.; seed 003) can run
on a whole image of any size, but its memory grows with the image and its context was learnt on
crops. Sliding-window inference runs it on overlapping ``window``-sized tiles instead and
averages the overlapping per-pixel scores with a weight per tile position:

    s(p) = sum_t w_t(p - o_t) f(x_t)(p - o_t) / sum_t w_t(p - o_t)

for tiles ``x_t`` at offsets ``o_t`` that cover pixel ``p``: ``w`` is 1 (``uniform``), or a
Gaussian centred on the tile (``gaussian``, sigma = 1/8 of the window side, as nnU-Net's
Isensee et al. 2021 weight their tiles) so that scores from a tile's centre, where the network saw
the most context, count most. Tiles step by ``stride``; the last tile of each row and column is
shifted back to end at the image border (as mmsegmentation's slide inference does), so every
tile holds real pixels only and no padding is ever fed to the network; a side shorter than the
window gives tiles of that side's length (the whole side). Tiles of all images are batched
through the model ``batch_size`` at a time and accumulated with one vectorised ``index_add_``
per batch (deterministic on the GPU under ``torch.use_deterministic_algorithms``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from visrep.errors import ConfigError, ShapeError

__all__ = ["sliding_window_logits", "tile_starts", "tile_weights"]

Blend = Literal["uniform", "gaussian"]


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    v = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(v, tuple | list)
        or len(v) != 2
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in v)
    ):
        raise ConfigError(f"sliding window: {name} must be an int >= 1 or (H, W), got {value!r}")
    return int(v[0]), int(v[1])


def tile_starts(size: int, tile: int, stride: int) -> Tensor:
    """Offsets of the tiles along one side: ``0, stride, 2 stride, ...``, the last one moved back
    to ``size - tile`` so it ends at the border; ``tile`` is clipped to ``size``.

    >>> tile_starts(10, 4, 3).tolist()
    [0, 3, 6]
    >>> tile_starts(11, 4, 3).tolist()
    [0, 3, 6, 7]
    >>> tile_starts(3, 4, 3).tolist()
    [0]
    """
    tile = min(tile, size)
    count = math.ceil((size - tile) / stride) + 1
    return (torch.arange(count) * stride).clamp_max(size - tile)


def tile_weights(
    size: tuple[int, int], blend: Blend = "uniform", dtype: torch.dtype = torch.float32
) -> Tensor:
    """The ``(h, w)`` weight of each pixel of a tile: ones, or a separable Gaussian with sigma
    ``side / 8`` per axis, 1 at the centre (nnU-Net's importance map)."""
    h, w = size
    if blend == "uniform":
        return torch.ones(h, w, dtype=dtype)
    if blend != "gaussian":
        raise ConfigError(f"sliding window: blend must be 'uniform' or 'gaussian', got {blend!r}")

    def axis(n: int) -> Tensor:
        c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        return torch.exp(-0.5 * (c / (n / 8.0)) ** 2)

    return (axis(h)[:, None] * axis(w)[None, :]).to(dtype)


def sliding_window_logits(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    window: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    overlap: float | None = None,
    blend: Blend = "uniform",
    batch_size: int | None = None,
) -> Tensor:
    """Per-pixel scores of ``model`` on ``x`` from overlapping tiles, blended (module docstring).

    When the window covers the whole image it is exactly ``model(x)``. For a model whose output
    at a pixel depends only on that pixel (a 1x1 convolution), it equals ``model(x)`` up to
    rounding for any window and stride.

    Args:
        model: maps ``(N, C, h, w)`` to ``(N, L, h, w)`` (a segmenter in eval mode).
        x: the images.
        window: tile ``(h, w)`` (an int: square).
        stride: step between tiles ``(sh, sw)``, at most the window; give this or
            ``overlap``, not both.
        overlap: fraction of the window shared by neighbouring tiles, in ``[0, 1)``; the stride
            is ``max(1, round(window * (1 - overlap)))`` per side. Default (neither): 0.5.
        blend: ``uniform`` or ``gaussian`` weights of a tile's pixels.
        batch_size: tiles per model call (default: the number of images in ``x``).

    Returns:
        The blended scores at the input size.

    Shape: x ``(B, C, H, W)``; returns ``(B, L, H, W)``.

    >>> conv = torch.nn.Conv2d(3, 2, 1)
    >>> x = torch.rand(1, 3, 7, 9)
    >>> out = sliding_window_logits(conv, x, window=4, overlap=0.5)
    >>> out.shape, torch.allclose(out, conv(x), atol=1e-6)
    (torch.Size([1, 2, 7, 9]), True)
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or min(x.shape) < 1:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"sliding_window_logits: x must be a tensor (B, C, H, W), got {got}")
    kh, kw = _pair(window, "window")
    if stride is not None and overlap is not None:
        raise ConfigError("sliding window: give stride or overlap, not both")
    if stride is None:
        overlap = 0.5 if overlap is None else overlap
        if not isinstance(overlap, int | float) or not 0 <= overlap < 1:
            raise ConfigError(f"sliding window: overlap must be in [0, 1), got {overlap!r}")
        stride = (max(1, round(kh * (1 - overlap))), max(1, round(kw * (1 - overlap))))
    sh, sw = _pair(stride, "stride")
    if sh > kh or sw > kw:
        raise ConfigError(
            f"sliding window: stride {(sh, sw)} is larger than the window {(kh, kw)}; pixels "
            "between tiles would get no score"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigError(f"sliding window: batch_size must be an int >= 1, got {batch_size!r}")
    b, _, h, w = x.shape
    th, tw = min(kh, h), min(kw, w)
    if (th, tw) == (h, w):
        return model(x)  # one tile per image: the whole-image call itself
    weight = tile_weights((th, tw), blend, dtype=torch.float64)  # checks ``blend``

    ys, xs = tile_starts(h, th, sh), tile_starts(w, tw, sw)
    oy, ox = torch.meshgrid(ys, xs, indexing="ij")
    oy, ox = oy.flatten().to(x.device), ox.flatten().to(x.device)  # (T,) tile offsets
    n_tiles = len(oy)
    rows = oy[:, None] + torch.arange(th, device=x.device)  # (T, th)
    cols = ox[:, None] + torch.arange(tw, device=x.device)  # (T, tw)
    flat = (rows[:, :, None] * w + cols[:, None, :]).flatten(1)  # (T, th*tw) pixel index

    # Every pixel is covered (tiles start at 0 and the last ends at the border), so den > 0.
    den = torch.zeros(h * w, dtype=torch.float64, device=x.device)
    den.index_add_(0, flat.flatten(), weight.to(x.device).flatten().repeat(n_tiles))

    pairs_b = torch.arange(b, device=x.device).repeat_interleave(n_tiles)  # (B*T,) image
    pairs_t = torch.arange(n_tiles, device=x.device).repeat(b)  # (B*T,) tile
    chunk = batch_size or b
    num: Tensor | None = None
    for start in range(0, b * n_tiles, chunk):
        ib, it = pairs_b[start : start + chunk], pairs_t[start : start + chunk]
        # advanced indices around a slice put their dims first: (n, th, tw, C)
        tiles = x[ib[:, None, None], :, rows[it][:, :, None], cols[it][:, None, :]]
        out = model(tiles.permute(0, 3, 1, 2))
        if out.dim() != 4 or out.shape[0] != len(ib) or out.shape[2:] != (th, tw):
            raise ShapeError(
                f"sliding_window_logits: the model maps tiles {(len(ib), x.shape[1], th, tw)} to "
                f"{tuple(out.shape)}; expected ({len(ib)}, L, {th}, {tw})"
            )
        if num is None:
            acc = torch.promote_types(out.dtype, torch.float32)
            num = torch.zeros(out.shape[1], b * h * w, dtype=acc, device=x.device)
        target = (ib[:, None] * (h * w) + flat[it]).flatten()  # (n * th * tw,)
        contrib = out.to(num.dtype) * weight.to(device=x.device, dtype=num.dtype)
        num.index_add_(1, target, contrib.transpose(0, 1).flatten(1))
    assert num is not None  # at least one tile
    blended = num.view(-1, b, h, w).transpose(0, 1) / den.to(num.dtype).view(1, 1, h, w)
    return blended.to(out.dtype)
