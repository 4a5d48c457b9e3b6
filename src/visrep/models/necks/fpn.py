"""Feature Pyramid Network neck (Lin et al. 2017, "Feature Pyramid Networks for Object Detection").

A backbone's levels ``C_i`` (fine to coarse, each ``f_i`` times coarser than the one before,
``f_i = 2`` for ResNets' C2..C5) become pyramid maps ``P_i`` of one width ``d`` (paper: 256) by
a top-down pathway with lateral connections (Sec. 3, Fig. 3):

    L_i = conv1x1_i(C_i)                                  (lateral connection)
    M_top = L_top,   M_i = L_i + up_{f_i}(M_{i+1})        (top-down pathway; nearest upsampling)
    P_i = conv3x3_i(M_i)                                  ("to reduce the aliasing effect")

with no non-linearities in these layers. ``extra_levels`` adds ``P6, P7, ...``, each a stride-2
subsampling (max-pooling with kernel 1) of the previous level, as the paper's RPN adds P6.

Any input size: the levels of an encoder that rounds sizes up (``ceil(H / r)``, see
:mod:`visrep.models.interface`) make the upsampled ``M_{i+1}`` up to ``f_i - 1`` pixels larger
than ``L_i``; it is cut at the bottom and right (:func:`~visrep.models.layers.upsample.crop_like`),
where the two maps align.

:func:`fpn_top_down` is the top-down pathway alone, :func:`fpn` the whole neck as a function
of its weights, :class:`FPN` the module that holds them. The neck is shared by the FPN
segmenter (:mod:`visrep.models.segmentation.fpn`) and detectors.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import torch  # noqa: F401  (doctest)
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.upsample import crop_like

__all__ = ["FPN", "fpn", "fpn_top_down", "pyramid_levels"]

UpsampleMode = Literal["nearest", "bilinear"]


def _upsample(x: Tensor, factor: int, mode: str) -> Tensor:
    if factor == 1:
        return x
    if mode == "nearest":
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _check_factors(factors: Sequence[int], n: int) -> list[int]:
    factors = [int(f) for f in factors]
    if len(factors) != n - 1 or any(f < 1 for f in factors):
        raise ConfigError(
            f"factors must be {n - 1} integers >= 1 (one per pair of levels), got {factors}"
        )
    return factors


def fpn_top_down(
    laterals: Sequence[Tensor],
    factors: Sequence[int] | None = None,
    mode: UpsampleMode = "nearest",
) -> list[Tensor]:
    """The top-down pathway: ``M_top = L_top``, ``M_i = L_i + up_{f_i}(M_{i+1})`` (Sec. 3).

    Args:
        laterals: the lateral maps ``L_i``, fine to coarse, all with the same channels.
        factors: ``f_i``, how much coarser level ``i + 1`` is than level ``i``; default 2.
        mode: ``"nearest"`` (paper) or ``"bilinear"`` (``align_corners=False``) upsampling.

    Returns:
        ``[M_0, ..., M_top]``, each the size of its lateral.

    Shape: ``[(B, d, H_i, W_i)] -> [(B, d, H_i, W_i)]``.

    >>> m = fpn_top_down([torch.zeros(1, 1, 3, 3), torch.ones(1, 1, 2, 2)])
    >>> m[0][0, 0]
    tensor([[1., 1., 1.],
            [1., 1., 1.],
            [1., 1., 1.]])
    """
    if not laterals:
        raise ShapeError("fpn_top_down needs at least one lateral map")
    if mode not in ("nearest", "bilinear"):
        raise ConfigError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    fs = _check_factors([2] * (len(laterals) - 1) if factors is None else factors, len(laterals))
    for i, lat in enumerate(laterals):
        if lat.dim() != 4 or lat.shape[:2] != laterals[0].shape[:2]:
            raise ShapeError(
                f"fpn_top_down: lateral {i} has shape {tuple(lat.shape)}, expected "
                f"(B, C) = {tuple(laterals[0].shape[:2])} as lateral 0"
            )
    merged = [laterals[-1]]
    for lat, f in zip(reversed(laterals[:-1]), reversed(fs), strict=True):
        up = _upsample(merged[0], f, mode)
        if up.shape[-2] < lat.shape[-2] or up.shape[-1] < lat.shape[-1]:
            raise ShapeError(
                f"fpn_top_down: a {tuple(merged[0].shape[-2:])} level upsampled {f}x is smaller "
                f"than the finer lateral {tuple(lat.shape[-2:])}: wrong factors"
            )
        merged.insert(0, lat + crop_like(up, lat))
    return merged


def fpn(
    features: Sequence[Tensor],
    lateral_weights: Sequence[Tensor],
    lateral_biases: Sequence[Tensor | None],
    output_weights: Sequence[Tensor],
    output_biases: Sequence[Tensor | None],
    factors: Sequence[int] | None = None,
    mode: UpsampleMode = "nearest",
    extra_levels: int = 0,
) -> list[Tensor]:
    """The FPN neck as a function of its weights: ``P_i = conv3x3_i(M_i)`` (module docstring).

    Args:
        features: ``C_i``, fine to coarse.
        lateral_weights: ``(d, C_i, 1, 1)`` 1x1 lateral kernels; ``lateral_biases`` their biases.
        output_weights: ``(d, d, 3, 3)`` output kernels (zero padding 1); ``output_biases``.
        factors: the scale between consecutive levels (default 2).
        mode: top-down upsampling, ``"nearest"`` (paper) or ``"bilinear"``.
        extra_levels: extra coarser levels, each ``max_pool2d(P, kernel 1, stride 2)``.

    Returns:
        ``[P_0, ..., P_top, extra...]``: ``len(features) + extra_levels`` maps with ``d`` channels.
    """
    n = len(features)
    if not n or not all(len(w) == n for w in (lateral_weights, lateral_biases, output_weights)):
        raise ShapeError(
            f"fpn: got {n} feature maps for {len(lateral_weights)} lateral and "
            f"{len(output_weights)} output weights (expected one of each per map)"
        )
    if len(output_biases) != n:
        raise ShapeError(f"fpn: {n} feature maps need {n} output biases, got {len(output_biases)}")
    if extra_levels < 0:
        raise ConfigError(f"extra_levels must be >= 0, got {extra_levels}")
    for i, (c, w) in enumerate(zip(features, lateral_weights, strict=True)):
        if c.dim() != 4 or c.shape[1] != w.shape[1]:
            raise ShapeError(
                f"fpn: feature {i} has shape {tuple(c.shape)}, expected (B, {w.shape[1]}, H, W)"
            )
    laterals = [
        F.conv2d(c, w, b) for c, w, b in zip(features, lateral_weights, lateral_biases, strict=True)
    ]
    merged = fpn_top_down(laterals, factors, mode)
    out = [
        F.conv2d(m, w, b, padding=w.shape[-1] // 2)
        for m, w, b in zip(merged, output_weights, output_biases, strict=True)
    ]
    for _ in range(extra_levels):
        out.append(F.max_pool2d(out[-1], kernel_size=1, stride=2))
    return out


def pyramid_levels(info: list[dict[str, Any]], num_levels: int) -> list[int]:
    """The indices of the coarsest ``num_levels`` reductions in ``info``, fine to coarse; for a
    reduction shared by several levels, the last of them. Fewer if ``info`` has fewer.

    >>> pyramid_levels([{"reduction": r} for r in (2, 4, 4, 8, 16, 32)], 4)
    [2, 3, 4, 5]
    """
    if num_levels < 1:
        raise ConfigError(f"num_levels must be >= 1, got {num_levels}")
    by_reduction = {d["reduction"]: i for i, d in enumerate(info)}  # the last level wins
    return [by_reduction[r] for r in sorted(by_reduction)][-num_levels:]


class FPN(nn.Module):
    """The FPN neck: lateral 1x1 convolutions, the top-down pathway, 3x3 output convolutions.

    Args:
        in_channels: channels of the input levels ``C_i``, fine to coarse.
        out_channels: ``d``, the channels of every ``P_i`` (paper: 256).
        reductions: the stride of each input level (e.g. a backbone's ``feature_info``
            reductions); consecutive ones must divide. Default: ``1, 2, 4, ...`` (factors 2).
        upsample: ``"nearest"`` (paper) or ``"bilinear"``.
        extra_levels: ``P6, ...`` by stride-2 subsampling of the top level (paper's RPN: 1).

    ``feature_info`` lists the output levels (``num_chs``, ``reduction``), as a backbone's.

    Shape: ``[(B, in_channels[i], H_i, W_i)] -> [(B, out_channels, H_i, W_i)] + extra levels``.

    >>> neck = FPN([8, 16], out_channels=4, reductions=[4, 8], extra_levels=1)
    >>> [tuple(p.shape) for p in neck([torch.zeros(1, 8, 9, 9), torch.zeros(1, 16, 5, 5)])]
    [(1, 4, 9, 9), (1, 4, 5, 5), (1, 4, 3, 3)]
    >>> [d["reduction"] for d in neck.feature_info]
    [4, 8, 16]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        reductions: Sequence[int] | None = None,
        upsample: UpsampleMode = "nearest",
        extra_levels: int = 0,
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not in_channels or min(in_channels) < 1 or out_channels < 1:
            raise ConfigError(
                f"FPN needs positive in_channels and out_channels, got {in_channels}, "
                f"{out_channels}"
            )
        if upsample not in ("nearest", "bilinear"):
            raise ConfigError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if extra_levels < 0:
            raise ConfigError(f"extra_levels must be >= 0, got {extra_levels}")
        red = [2**i for i in range(len(in_channels))] if reductions is None else list(reductions)
        if len(red) != len(in_channels) or any(b % a or b <= a for a, b in itertools.pairwise(red)):
            raise ConfigError(
                f"reductions must be {len(in_channels)} increasing strides, each dividing the "
                f"next, got {red}"
            )
        self.factors = [b // a for a, b in itertools.pairwise(red)]
        self.upsample, self.extra_levels = upsample, extra_levels
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        for conv in (*self.lateral, *self.output):  # Detectron's FPN init (c2_xavier_fill)
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        # ``module``: the output conv of the level (extra levels have none).
        self.feature_info: list[dict[str, Any]] = [
            {"num_chs": out_channels, "reduction": r, "module": f"output.{i}"}
            for i, r in enumerate(red)
        ] + [
            {"num_chs": out_channels, "reduction": red[-1] * 2**k, "module": ""}
            for k in range(1, extra_levels + 1)
        ]

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        return fpn(
            features,
            [c.weight for c in self.lateral],
            [c.bias for c in self.lateral],
            [c.weight for c in self.output],
            [c.bias for c in self.output],
            self.factors,
            self.upsample,
            self.extra_levels,
        )
