"""Point-cloud transforms: frozen dataclasses on sample dicts, explicit torch generators.

Every transform is called as ``t(sample, generator=None)`` on a sample dict (``"points"``: float
``(N, D)``, columns 0..2 x, y, z, further columns per-point features) and returns a NEW dict; it
never changes itself or its input. Geometric transforms act on ``points[:, :3]`` and keep the
feature columns as they are; transforms that reorder or subsample points index
``"point_labels"`` (``(N,)``) the same way. Randomness comes from ``generator``; None draws from
torch's global generator (seed it with ``torch.manual_seed`` for repeatable runs).

The augmentations are PointNet's (Qi et al. 2017, sec. 5.1: "randomly rotating the object along
the up-axis and jitter the position of each points by a Gaussian noise with zero mean and 0.01
standard deviation", clipped at 0.05 in the authors' ``provider.py``), random scaling (PointNet++'s
``provider.py``: one factor in [0.8, 1.25] per cloud, isotropic; DGCNN's training: one factor
in [2/3, 3/2] per axis, anisotropic, and a shift in [-0.2, 0.2] per axis) and translation, and
PointNet++'s random input dropout (Qi et al. 2017b, sec. 3.3).

=========================  ===================================================================
transform                  what it does
=========================  ===================================================================
:class:`NormalizeUnitSphere`  centre at the centroid, scale the largest radius to 1
:class:`RandomRotateUp`    rotation by a uniform angle about the up axis
:class:`Jitter`            add ``clip(N(0, sigma^2), -clip, clip)`` to each coordinate
:class:`RandomScale`       multiply by a uniform factor in [low, high) (per axis if anisotropic)
:class:`RandomTranslate`   add a uniform shift in [-max_shift, max_shift] per axis
:class:`PointDropout`      replace a random share of the points by the first point (keeps N)
:class:`FixedSize`         subsample (random or farthest-point) or repeat-pad to ``num_points``
:class:`ComposePoints`     apply transforms in order with one generator
=========================  ===================================================================

>>> s = {"points": torch.tensor([[0.0, 0, 0, 7], [2, 0, 0, 8]])}
>>> NormalizeUnitSphere()(s)["points"].tolist()
[[-1.0, 0.0, 0.0, 7.0], [1.0, 0.0, 0.0, 8.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from visrep.data.pointcloud.sampling import farthest_point_sample
from visrep.errors import ConfigError, ShapeError

__all__ = [
    "ComposePoints",
    "FixedSize",
    "Jitter",
    "NormalizeUnitSphere",
    "PointDropout",
    "PointTransform",
    "RandomRotateUp",
    "RandomScale",
    "RandomTranslate",
    "normalize_unit_sphere",
]

PointTransform = Callable[[dict, torch.Generator | None], dict]

POINTS = "points"
POINT_LABELS = "point_labels"


# -- helpers -------------------------------------------------------------------------------------
def _points(sample: dict[str, Any], who: object) -> Tensor:
    """``sample["points"]`` checked: a floating ``(N, D)`` tensor with ``D >= 3``."""
    if not isinstance(sample, dict) or POINTS not in sample:
        raise ShapeError(f"{type(who).__name__}: expected a sample dict with a 'points' entry")
    p = sample[POINTS]
    if not isinstance(p, Tensor) or p.dim() != 2 or p.shape[1] < 3 or not p.is_floating_point():
        got = f"{tuple(p.shape)} {p.dtype}" if isinstance(p, Tensor) else type(p).__name__
        raise ShapeError(f"{type(who).__name__}: points must be a float (N, >=3) tensor, got {got}")
    return p


def _with_xyz(sample: dict[str, Any], points: Tensor, xyz: Tensor) -> dict[str, Any]:
    """A new sample whose points have ``xyz`` in columns 0..2 and the old feature columns."""
    out = dict(sample)
    out[POINTS] = torch.cat([xyz.to(points.dtype), points[:, 3:]], dim=1)
    return out


def _indexed(sample: dict[str, Any], points: Tensor, idx: Tensor) -> dict[str, Any]:
    """A new sample with the points (and ``point_labels``, if present) at ``idx``."""
    out = dict(sample)
    out[POINTS] = points[idx]
    labels = sample.get(POINT_LABELS)
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.shape != points.shape[:1]:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ShapeError(f"point_labels must be a ({points.shape[0]},) tensor, got {got}")
        out[POINT_LABELS] = labels[idx.to(labels.device)]
    return out


def _check_generator(generator: torch.Generator | None, who: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(
            f"{type(who).__name__}: generator must be a torch.Generator or None, "
            f"got {type(generator).__name__}"
        )


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) draws on the CPU (the generator's device), float64."""
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _number(value: object, name: str, low: float, high: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (low <= float(value) <= high) or not math.isfinite(float(value)):
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be a number {bounds}, got {value!r}")
    return float(value)


# -- transforms ----------------------------------------------------------------------------------
def normalize_unit_sphere(points: Tensor) -> Tensor:
    """Every cloud of ``(S, N, D)`` centred at its centroid and scaled so its farthest point has
    norm 1 (x, y, z only; further columns kept): the batched form of
    :class:`NormalizeUnitSphere`. Clouds of coinciding points are only centred.

    >>> p = normalize_unit_sphere(torch.tensor([[[0.0, 0, 0], [4, 0, 0]]]))
    >>> p.tolist()
    [[[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]
    """
    if points.shape[-2] == 0:
        return points.clone()
    xyz = points[..., :3].double()
    xyz = xyz - xyz.mean(-2, keepdim=True)
    radius = xyz.norm(dim=-1).amax(-1, keepdim=True)[..., None]
    xyz = xyz / torch.where(radius > 0, radius, torch.ones_like(radius))
    return torch.cat([xyz.to(points.dtype), points[..., 3:]], -1)


@dataclass(frozen=True)
class NormalizeUnitSphere:
    """Centre x, y, z at their centroid and scale so the farthest point has norm 1.

    The normalisation of PointNet's ModelNet data ("normalized into a unit sphere", Qi et al.
    2017, sec. 5.1): :func:`normalize_unit_sphere` on one cloud. A cloud whose points all
    coincide is only centred.
    """

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        p = _points(sample, self)
        out = dict(sample)
        out[POINTS] = normalize_unit_sphere(p[None])[0]
        return out


@dataclass(frozen=True)
class RandomRotateUp:
    """Rotate x, y, z by an angle drawn uniformly in [0, 2 pi) about the up axis ``axis``.

    PointNet's augmentation (Qi et al. 2017, sec. 5.1, "rotating the object along the up-axis").
    The rotation acts on the two other axes ``(a+1) % 3, (a+2) % 3`` in that cyclic order, so it
    is proper (determinant +1). Feature columns (e.g. normals) are kept unchanged.
    """

    axis: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or self.axis not in (0, 1, 2):
            raise ConfigError(f"RandomRotateUp: axis must be 0, 1 or 2, got {self.axis!r}")

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        theta = 2 * math.pi * float(_uniform((1,), generator))
        c, s = math.cos(theta), math.sin(theta)
        i, j = (self.axis + 1) % 3, (self.axis + 2) % 3
        rot = torch.eye(3, dtype=torch.float64)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        xyz = p[:, :3].double() @ rot.to(p.device).T
        return _with_xyz(sample, p, xyz)


@dataclass(frozen=True)
class Jitter:
    """Add Gaussian noise ``N(0, sigma^2)``, clipped to [-clip, clip], to every coordinate.

    PointNet (Qi et al. 2017, sec. 5.1): sigma 0.01; the authors' ``jitter_point_cloud`` clips
    at 0.05.
    """

    sigma: float = 0.01
    clip: float = 0.05

    def __post_init__(self) -> None:
        _number(self.sigma, "Jitter: sigma", 0.0)
        _number(self.clip, "Jitter: clip", 0.0)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        noise = torch.randn((p.shape[0], 3), generator=generator, dtype=torch.float64)
        noise = (self.sigma * noise).clamp_(-self.clip, self.clip).to(p.device)
        return _with_xyz(sample, p, p[:, :3].double() + noise)


@dataclass(frozen=True)
class RandomScale:
    """Multiply x, y, z by a factor drawn uniformly in [low, high): one per axis if
    ``anisotropic``, else one for all three."""

    low: float = 0.8
    high: float = 1.25
    anisotropic: bool = True

    def __post_init__(self) -> None:
        low = _number(self.low, "RandomScale: low", 0.0)
        high = _number(self.high, "RandomScale: high", 0.0)
        if not 0 < low <= high:
            raise ConfigError(f"RandomScale: need 0 < low <= high, got low={low}, high={high}")
        if not isinstance(self.anisotropic, bool):
            raise ConfigError(
                f"RandomScale: anisotropic must be true or false, got {self.anisotropic!r}"
            )

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        u = _uniform((3 if self.anisotropic else 1,), generator)
        scale = (self.low + (self.high - self.low) * u).to(p.device)
        return _with_xyz(sample, p, p[:, :3].double() * scale)


@dataclass(frozen=True)
class RandomTranslate:
    """Add one shift per axis, drawn uniformly in [-max_shift, max_shift], to all points."""

    max_shift: float = 0.1

    def __post_init__(self) -> None:
        _number(self.max_shift, "RandomTranslate: max_shift", 0.0)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        shift = (self.max_shift * (2 * _uniform((3,), generator) - 1)).to(p.device)
        return _with_xyz(sample, p, p[:, :3].double() + shift)


@dataclass(frozen=True)
class PointDropout:
    """PointNet++'s random input dropout (Qi et al. 2017b, sec. 3.3): draw a ratio
    ``theta ~ U[0, max_ratio]``, drop each point with probability ``theta`` and replace it by
    the first point (whole row, features and ``point_labels`` included), so N is kept."""

    max_ratio: float = 0.875

    def __post_init__(self) -> None:
        ratio = _number(self.max_ratio, "PointDropout: max_ratio", 0.0, 1.0)
        if ratio >= 1.0:
            raise ConfigError(f"PointDropout: max_ratio must be in [0, 1), got {self.max_ratio!r}")

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        ratio = self.max_ratio * float(_uniform((1,), generator))
        drop = _uniform((p.shape[0],), generator) <= ratio
        idx = torch.arange(p.shape[0])
        idx[drop] = 0
        return _indexed(sample, p, idx.to(p.device))


@dataclass(frozen=True)
class FixedSize:
    """Exactly ``num_points`` points: a subsample when the cloud has more, else all points
    followed by a random choice (with replacement) of repeats.

    ``method="random"`` subsamples uniformly without replacement (random order);
    ``method="fps"`` by farthest-point sampling from the first point (PointNet++, sec. 3.2),
    which is deterministic. ``point_labels`` are indexed the same way.
    """

    num_points: int
    method: Literal["random", "fps"] = "random"

    def __post_init__(self) -> None:
        n = self.num_points
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"FixedSize: num_points must be a positive int, got {n!r}")
        if self.method not in ("random", "fps"):
            raise ConfigError(f"FixedSize: method must be 'random' or 'fps', got {self.method!r}")

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        p = _points(sample, self)
        n, k = p.shape[0], self.num_points
        if n == 0:
            raise ShapeError("FixedSize: the cloud has no points")
        if n >= k:
            if self.method == "fps":
                idx = farthest_point_sample(p, k)
            else:
                idx = torch.randperm(n, generator=generator)[:k]
        else:
            extra = torch.randint(0, n, (k - n,), generator=generator)
            idx = torch.cat([torch.arange(n), extra])
        return _indexed(sample, p, idx.to(p.device))


@dataclass(frozen=True)
class ComposePoints:
    """Apply ``transforms`` in order, all drawing from the one ``generator``."""

    transforms: tuple[PointTransform, ...]

    def __post_init__(self) -> None:
        bad = [type(t).__name__ for t in self.transforms if not callable(t)]
        if bad:
            raise ConfigError(f"ComposePoints: transforms must be callables, got {', '.join(bad)}")
        object.__setattr__(self, "transforms", tuple(self.transforms))

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        _check_generator(generator, self)
        out = dict(sample)
        for t in self.transforms:
            out = t(out, generator)
        return out
