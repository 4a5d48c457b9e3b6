"""Event representations as pictures a person can read.

Event maps are sparse and heavy-tailed: most pixels are empty, most active ones fire a few
times, and a few hot pixels fire thousands of times, so scaling colours by the maximum leaves
the picture dark. Every picture here scales by a percentile (99th by default) of the non-zero
magnitudes and clips above it, and shows counts on a ``log1p`` scale.

* **Non-negative maps** (counts, time surfaces, last timestamps, HATS): a sequential colormap
  from 0 to the percentile.
* **Signed maps** (voxel grids, the ON - OFF polarity difference, learned features with
  negative values): a diverging colormap whose white centre is 0
  (:class:`~matplotlib.colors.CenteredNorm`), limits ``+-percentile(|v|)``.
* **Polarity overlay**: white background, ON events red, OFF events blue, the colour's strength
  the robustly scaled count, a pixel with both a mix of the two (purple), as event-camera
  viewers draw a slice of events.

Which map is which: a representation named in :data:`SIGNED_REPRESENTATIONS`, or any map with a
negative value, is signed. :data:`POLARITY_MAJOR` representations hold OFF in the first half of
their channels and ON in the second; an unnamed non-negative map with an even channel count is
read the same way. :data:`COUNT_REPRESENTATIONS`, or an unnamed map of whole numbers, are counts
(``log1p``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import CenteredNorm, FuncNorm, Normalize
from numpy.typing import ArrayLike
from torch import Tensor

from visrep.errors import ConfigError, ShapeError
from visrep.plots._save import save

__all__ = [
    "COUNT_REPRESENTATIONS",
    "POLARITY_MAJOR",
    "SIGNED_REPRESENTATIONS",
    "channel_norm",
    "event_images",
    "is_signed",
    "plot_event_frames",
    "polarity_overlay",
    "robust_limit",
]

SIGNED_REPRESENTATIONS = frozenset({"voxel"})
POLARITY_MAJOR = frozenset({"count", "last_timestamp", "timesurface", "hats", "est"})
COUNT_REPRESENTATIONS = frozenset({"count"})
PERCENTILE = 99.0
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
ON_RGB = np.array([0.84, 0.09, 0.11])
OFF_RGB = np.array([0.13, 0.33, 0.85])


def _numpy(values: Tensor | ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float64)


def _check_percentile(percentile: float) -> float:
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    return float(percentile)


def is_signed(values: Tensor | ArrayLike, name: str | None = None) -> bool:
    """Whether a map is drawn with a diverging colormap centred at 0.

    Args:
        values: the map, any shape.
        name: its representation's name, if known (:data:`SIGNED_REPRESENTATIONS` are signed
            even when one sample happens to hold only ON events).

    >>> is_signed([0.0, 2.0]), is_signed([0.0, -2.0]), is_signed([1.0], name="voxel")
    (False, True, True)
    """
    return name in SIGNED_REPRESENTATIONS or bool((_numpy(values) < 0).any())


def _is_count(values: np.ndarray, name: str | None) -> bool:
    if name is not None:
        return name in COUNT_REPRESENTATIONS
    return bool(values.size) and bool((values == np.round(values)).all())


def robust_limit(
    values: Tensor | ArrayLike, percentile: float = PERCENTILE, axis: tuple[int, ...] | None = None
) -> np.ndarray:
    """The ``percentile`` of ``|values|`` over the non-zero finite entries (1 where there are none).

    Percentiles of the non-zero entries, not of all of them: an event map is mostly empty, so
    the 99th percentile of all pixels is often 0. The percentile is a value of the map
    (``method="lower"``, no interpolation), so one hot pixel among fewer than 100 active ones
    cannot pull the limit up.

    Args:
        values: the map.
        percentile: in (0, 100].
        axis: the axes reduced (None: all, one limit); the others keep one limit each.

    Returns:
        A 0-d array, or one limit per index of the kept axes.

    >>> float(robust_limit([0, 1, 2, 3, 1e6], percentile=50))
    2.0
    """
    q = _check_percentile(percentile)
    a = np.abs(_numpy(values))
    valid = np.isfinite(a) & (a > 0)
    if axis is None:
        nz = a[valid]
        return np.asarray(
            np.percentile(nz, q, method="lower") if nz.size else 1.0, dtype=np.float64
        )
    with warnings.catch_warnings():  # an empty image is an all-NaN slice: limit 1 below
        warnings.simplefilter("ignore", RuntimeWarning)
        lim = np.nanpercentile(np.where(valid, a, np.nan), q, axis=axis, method="lower")
    return np.where(np.isfinite(lim) & (lim > 0), lim, 1.0)


def channel_norm(
    values: Tensor | ArrayLike,
    *,
    name: str | None = None,
    signed: bool | None = None,
    log: bool | None = None,
    percentile: float = PERCENTILE,
) -> Normalize:
    """The colour scale of a map: robust limits, centred at 0 when signed, ``log1p`` for counts.

    Args:
        values: the map (or the maps that share the scale).
        name: its representation's name (decides signedness and counts; see the module doc).
        signed: force (True) or refuse (False) a diverging scale; None: :func:`is_signed`.
        log: ``log1p`` scale of a non-negative map; None: for counts.
        percentile: the percentile of the non-zero ``|values|`` at which colours saturate.

    Returns:
        ``CenteredNorm(vcenter=0, halfrange=m, clip=True)`` for a signed map, else a clipping
        norm from 0 to ``m`` (``FuncNorm`` of ``log1p`` for counts). Clipping matters: values
        beyond the limits would otherwise become infinities that imshow draws black.
    """
    a = _numpy(values)
    signed = is_signed(a, name) if signed is None else signed
    m = float(robust_limit(a, percentile))
    if signed:
        return CenteredNorm(vcenter=0.0, halfrange=m, clip=True)
    if _is_count(a, name) if log is None else log:
        return FuncNorm((np.log1p, np.expm1), vmin=0.0, vmax=m, clip=True)
    return Normalize(vmin=0.0, vmax=m, clip=True)


def _strength(v: np.ndarray, lim: np.ndarray, log: bool) -> np.ndarray:
    """``|v|`` scaled into [0, 1] by ``lim`` (broadcast), on a ``log1p`` scale if ``log``."""
    v = np.abs(v)
    if log:
        v, lim = np.log1p(v), np.log1p(lim)
    return np.clip(v / lim, 0.0, 1.0)


def _limits(stack: np.ndarray, percentile: float, joint: bool) -> np.ndarray:
    """One limit for the whole ``(B, ...)`` stack, or one per sample, broadcastable to it."""
    if joint or stack.ndim < 3:
        return robust_limit(stack, percentile)
    lim = robust_limit(stack, percentile, axis=tuple(range(1, stack.ndim)))
    return lim.reshape(lim.shape + (1,) * (stack.ndim - 1))


def polarity_overlay(
    on: Tensor | ArrayLike,
    off: Tensor | ArrayLike,
    *,
    log: bool = True,
    percentile: float = PERCENTILE,
    joint: bool = True,
) -> np.ndarray:
    """ON events red and OFF events blue on white, the strength a robustly scaled magnitude.

    Each pixel is ``1 - a (1 - hue)`` with ``a = max(a_on, a_off)`` the stronger scaled
    magnitude and ``hue`` the mix of the ON and OFF colours in proportion ``a_on : a_off``; ON
    and OFF share one scale so their strengths compare.

    Args:
        on, off: ON and OFF magnitudes (counts, surfaces), ``(H, W)`` or ``(B, H, W)``.
        log: ``log1p`` scale (for counts).
        percentile: the percentile of the non-zero magnitudes at which colours saturate.
        joint: one scale for all ``B`` images (a clip); False: one per image.

    Returns:
        RGB in [0, 1], ``(..., H, W, 3)``.

    >>> polarity_overlay([[4.0, 0.0, 0.0]], [[0.0, 4.0, 0.0]])[0].round(2).tolist()
    [[0.84, 0.09, 0.11], [0.13, 0.33, 0.85], [1.0, 1.0, 1.0]]
    """
    on, off = np.abs(_numpy(on)), np.abs(_numpy(off))
    if on.shape != off.shape or on.ndim not in (2, 3):
        raise ShapeError(
            f"on and off must be (H, W) or (B, H, W) of one shape, got {on.shape} and {off.shape}"
        )
    stack = np.stack([on, off], axis=-3)  # (..., 2, H, W): ON and OFF share a scale
    lim = _limits(stack, percentile, joint or on.ndim == 2)
    a_on, a_off = np.moveaxis(_strength(stack, lim, log), -3, 0)
    total = a_on + a_off
    w_on = np.divide(a_on, total, out=np.zeros_like(total), where=total > 0)[..., None]
    hue = w_on * ON_RGB + (1.0 - w_on) * OFF_RGB
    return 1.0 - np.maximum(a_on, a_off)[..., None] * (1.0 - hue)


def _diverging_rgb(v: np.ndarray, lim: np.ndarray) -> np.ndarray:
    """A signed map through :data:`DIVERGING_CMAP`, 0 at its centre, ``+-lim`` at its ends."""
    return colormaps[DIVERGING_CMAP](0.5 + 0.5 * np.clip(v / lim, -1.0, 1.0))[..., :3]


def event_images(
    frames: Tensor | ArrayLike,
    name: str | None = None,
    *,
    percentile: float = PERCENTILE,
    joint: bool = False,
) -> Tensor:
    """Representations ``(B, C, H, W)`` as displayable RGB images in [0, 1].

    Polarity-major maps become the :func:`polarity_overlay` of their OFF (first half) and ON
    (second half) channel sums; signed maps the diverging colouring of their channel sum (for a
    voxel grid that sum is ON - OFF per pixel); other maps grey on white.

    Args:
        frames: the representations.
        name: the representation's name, if known (see the module doc).
        percentile: the percentile of the non-zero magnitudes at which colours saturate.
        joint: one colour scale for all ``B`` images (frames of one clip); False: one each.

    Shape:
        ``(B, C, H, W) -> (B, 3, H, W)``.
    """
    a = _numpy(frames)
    if a.ndim != 4:
        raise ShapeError(f"frames must be (B, C, H, W), got {a.shape}")
    c = a.shape[1]
    if is_signed(a, name):
        v = a.sum(1)
        rgb = _diverging_rgb(v, _limits(v, percentile, joint))
    elif c >= 2 and (name in POLARITY_MAJOR or (name is None and c % 2 == 0)):
        off, on = a[:, : c // 2].sum(1), a[:, c // 2 :].sum(1)
        log = _is_count(a, name)
        rgb = polarity_overlay(on, off, log=log, percentile=percentile, joint=joint)
    else:
        v = a.sum(1)
        rgb = np.repeat(
            1.0 - _strength(v, _limits(v, percentile, joint), _is_count(a, name))[..., None], 3, -1
        )
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).float()


def _channel_names(c: int, name: str | None, signed: bool) -> list[str]:
    if c >= 2 and c % 2 == 0 and not signed and (name in POLARITY_MAJOR or name is None):
        bins = c // 2
        return [
            f"{pol}" + (f" bin {k}" if bins > 1 else "")
            for pol in ("OFF", "ON")
            for k in range(bins)
        ]
    if name in SIGNED_REPRESENTATIONS:
        return [f"bin {k} (ON - OFF)" for k in range(c)]
    return [f"channel {k}" for k in range(c)]


def plot_event_frames(
    frames: Tensor,
    composite: Tensor | None,
    title: str,
    path: str | Path,
    max_channels: int = 8,
    *,
    name: str | None = None,
    percentile: float = PERCENTILE,
) -> Path:
    """A composite picture, the ON - OFF difference, then each channel of one representation.

    The channels share one robust colour scale (shown by the colour bar): sequential from 0 for
    non-negative maps (``log1p`` for counts), diverging and centred at 0 for signed ones. The
    ON - OFF panel is drawn for polarity-major representations.

    Args:
        frames: one sample's representation ``(C, H, W)``.
        composite: its picture ``(3, H, W)`` or ``(1, H, W)`` in [0, 1]; None: the
            :func:`event_images` of ``frames`` (ON red, OFF blue on white; signed maps
            diverging).
        title: the figure title.
        path: the PNG to write.
        max_channels: channels drawn beside the composite.
        name: the representation's name, if known (see the module doc).
        percentile: the percentile of the non-zero magnitudes at which colours saturate.
    """
    if frames.dim() != 3 or (composite is not None and composite.dim() != 3):
        got = None if composite is None else tuple(composite.shape)
        raise ShapeError(
            f"frames and composite must be (C, H, W), got {tuple(frames.shape)} and {got}"
        )
    a = frames.detach().float().cpu().numpy()
    c = a.shape[0]
    signed = is_signed(a, name)
    if composite is None:
        composite = event_images(a[None], name, percentile=percentile)[0]
    polar = not signed and c >= 2 and c % 2 == 0 and (name in POLARITY_MAJOR or name is None)
    shown = min(c, max_channels)
    panels = 1 + polar + shown
    fig, axes = plt.subplots(
        1, panels, figsize=(2.3 * panels + 0.6, 2.6), squeeze=False, layout="constrained"
    )
    axes = axes[0]
    img = composite.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    axes[0].imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
    label = "ON - OFF (sum of channels)" if signed else "ON red, OFF blue"
    axes[0].set_title(label if img.shape[2] == 3 and c > 1 else "frame", fontsize=8)
    if polar:
        diff = a[c // 2 :].sum(0) - a[: c // 2].sum(0)
        norm = channel_norm(diff, signed=True, percentile=percentile)
        im = axes[1].imshow(diff, cmap=DIVERGING_CMAP, norm=norm, interpolation="nearest")
        axes[1].set_title("ON - OFF", fontsize=8)
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    norm = channel_norm(a[:shown], name=name, signed=signed, percentile=percentile)
    cmap = DIVERGING_CMAP if signed else SEQUENTIAL_CMAP
    names = _channel_names(c, name, signed)
    for k in range(shown):
        ax = axes[1 + polar + k]
        im = ax.imshow(a[k], cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(names[k], fontsize=8)
    bar = fig.colorbar(im, ax=list(axes[1 + polar :]), fraction=0.046 / shown, pad=0.02)
    bar.ax.tick_params(labelsize=6)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    more = f" (first {shown} of {c} channels)" if c > shown else ""
    scale = f"colours clip at the {percentile:g}th percentile of non-zero |values|"
    if not signed and isinstance(norm, FuncNorm):
        scale += ", log scale"
    fig.suptitle(f"{title}{more}\n{scale}", fontsize=9)
    return save(fig, path, dpi=100)
