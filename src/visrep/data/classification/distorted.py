"""Distorted MNIST-family digits, as in the STN paper (Jaderberg et al. 2015, Sec. 4.1, Appendix A).

Every image of a source (an IDX folder such as MNIST, Fashion-MNIST or KMNIST; an ``.npz``
archive; or scikit-learn's 8x8 digits) is warped by one random distortion whose parameters are
a pure function of ``(distortion.seed, source split, sample index)``: the same sample is the
same image in every epoch, every worker and every run with that seed. The distortions:

- ``rotation`` (R): a rotation by an angle uniform in ``+-max_angle`` (default 90 degrees);
- ``rts`` (RTS): rotation uniform in ``+-max_angle`` (default 45 degrees), scale uniform in
  ``scale`` (0.7 to 1.2), placed at a uniform random position on a canvas ``canvas`` times the
  image side (42 x 42 for 28 x 28 digits);
- ``projective`` (P): the image scaled by a factor uniform in ``projective_scale`` (0.75 to 1),
  then its four corners moved by Gaussian noise of standard deviation ``projective_sigma``
  image sides (0.18, about 5 pixels of 28), the homography through the moved corners;
- ``elastic`` (E): a thin-plate-spline warp whose ``4 x 4`` control points move by uniform
  noise of up to ``elastic_shift`` image sides (0.1, about 3 pixels of 28).

The R and RTS ranges are the paper's. The P and E magnitudes follow our reading of its
Appendix A and are options, not verified numbers. Warps are computed for a whole batch at once
(one homography or TPS per sample, then one ``grid_sample``), with bilinear interpolation and
zero (background) outside the digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform, get_tps_transform, warp_points_tps
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.classification.digits import DigitsDataModule
from visrep.data.classification.idx import IDXDataModule
from visrep.data.classification.npz import load_npz_split
from visrep.data.datasets import ArrayImageDataset, SampleBatch, class_names
from visrep.data.samples import IMAGE, LABEL, image_sample
from visrep.errors import ConfigError, DataError

__all__ = [
    "DistortedDataset",
    "DistortedDigitsDataModule",
    "DistortionConfig",
    "distort_images",
    "distortion_grid",
    "hash_uniform",
]

Kind = Literal["none", "rotation", "rts", "projective", "elastic"]
_DEFAULT_ANGLE = {"rotation": 90.0, "rts": 45.0}
_ELASTIC_GRID = 4  # control points per side of the elastic TPS warp

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class DistortionConfig:
    """Which distortion, its seed and its magnitudes (``--data.distortion.kind rts`` etc.).

    Attributes:
        kind: ``none``, ``rotation`` (R), ``rts`` (RTS), ``projective`` (P) or ``elastic`` (E).
        seed: the seed of the per-sample parameters.
        max_angle: largest rotation in degrees; default 90 for R, 45 for RTS.
        scale: RTS scale range.
        canvas: RTS canvas side over the image side (1.5: 42 for 28).
        projective_scale: P scale range.
        projective_sigma: P corner noise, standard deviation in image sides.
        elastic_shift: E control-point shift, largest in image sides.
    """

    kind: Kind = "rotation"
    seed: int = 0
    max_angle: float | None = None
    scale: tuple[float, float] = (0.7, 1.2)
    canvas: float = 1.5
    projective_scale: tuple[float, float] = (0.75, 1.0)
    projective_sigma: float = 0.18
    elastic_shift: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("none", *_DEFAULT_ANGLE, "projective", "elastic"):
            raise ConfigError(
                "data.distortion.kind must be none, rotation, rts, projective or elastic, "
                f"got {self.kind!r}"
            )
        if self.max_angle is not None and not 0 <= self.max_angle <= 180:
            raise ConfigError(
                f"data.distortion.max_angle must be in [0, 180], got {self.max_angle}"
            )
        for name in ("scale", "projective_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"data.distortion.{name} must be (lo, hi) with 0 < lo <= hi")
        if self.canvas < 1:
            raise ConfigError(f"data.distortion.canvas must be >= 1, got {self.canvas}")
        for name in ("projective_sigma", "elastic_shift"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.distortion.{name} must be >= 0")

    @property
    def angle(self) -> float:
        """The largest rotation in degrees for this kind."""
        default = _DEFAULT_ANGLE.get(self.kind, 0.0)
        return default if self.max_angle is None else float(self.max_angle)

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The ``(H, W)`` of a distorted ``size`` image (the canvas for RTS)."""
        if self.kind != "rts":
            return size
        return round(size[0] * self.canvas), round(size[1] * self.canvas)


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: a bijective avalanche of 64-bit words (uint64 wraps by design).
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, index: np.ndarray, n: int) -> np.ndarray:
    """``n`` uniform numbers in ``[0, 1)`` per index, a pure function of ``(seed, stream, index)``.

    A counter-based generator (splitmix64 of the key), vectorised over the indices, so every
    sample gets its own reproducible draw whatever batch it is read in.

    Returns:
        ``(len(index), n)`` float64.

    >>> a = hash_uniform(0, 1, np.array([3, 7]), 2)
    >>> bool((a == hash_uniform(0, 1, np.array([7, 3]), 2)[::-1]).all())
    True
    """
    with np.errstate(over="ignore"):
        key = _mix(np.full(1, seed % 2**64, dtype=np.uint64)) ^ np.uint64(stream % 2**64)
        key = _mix(_mix(key) + np.asarray(index, dtype=np.int64).astype(np.uint64))
        z = _mix(key[:, None] + np.arange(1, n + 1, dtype=np.uint64))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _normal(u: np.ndarray) -> np.ndarray:
    # Box-Muller on pairs of columns: (N, 2k) uniforms -> (N, k) standard normals.
    k = u.shape[1] // 2
    return np.sqrt(-2 * np.log1p(-u[:, :k])) * np.cos(2 * math.pi * u[:, k:])


def _pixel_grid(h: int, w: int) -> Tensor:
    # Pixel centres of an (h, w) image, centred on the image centre: (h w, 2) as (x, y).
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def _normalise(points: Tensor, h: int, w: int) -> Tensor:
    # Centred pixel coordinates of an (h, w) input -> grid_sample's [-1, 1] (align_corners=False).
    return points * points.new_tensor([2.0 / w, 2.0 / h])


def distortion_grid(
    config: DistortionConfig, size: tuple[int, int], index: np.ndarray, stream: int = 0
) -> Tensor:
    """The ``grid_sample`` grid of each sample's distortion, ``(N, H_out, W_out, 2)`` float64.

    Output pixel ``p`` (centred pixel coordinates) reads the input at ``T^-1 p``, with ``T``
    drawn from :func:`hash_uniform` of ``(config.seed, stream, index)``.
    """
    h, w = size
    ho, wo = config.out_size(size)
    n, side = len(index), float(max(h, w))
    out = _pixel_grid(ho, wo)  # (P, 2)
    kind = config.kind
    if kind in ("none", "rotation", "rts"):
        u = torch.from_numpy(hash_uniform(config.seed, stream, index, 4))
        a = torch.deg2rad((2 * u[:, 0] - 1) * config.angle) if kind != "none" else u[:, 0] * 0
        s, t = torch.ones(n, dtype=torch.float64), torch.zeros(n, 2, dtype=torch.float64)
        if kind == "rts":
            lo, hi = config.scale
            s = lo + (hi - lo) * u[:, 1]
            # anywhere the image's own frame still fits on the canvas
            room = torch.tensor([(wo - w) / 2, (ho - h) / 2], dtype=torch.float64)
            t = (2 * u[:, 2:4] - 1) * room
        c, sn = torch.cos(a), torch.sin(a)
        # input = R(-a) (p - t) / s, with y pointing down (a > 0 turns the digit on screen)
        inv = torch.stack([torch.stack([c, sn], -1), torch.stack([-sn, c], -1)], -2)
        src = torch.einsum("nij,npj->npi", inv, out[None] - t[:, None]) / s[:, None, None]
    elif kind == "projective":
        u = hash_uniform(config.seed, stream, index, 17)
        lo, hi = config.projective_scale
        s = torch.from_numpy(lo + (hi - lo) * u[:, :1])[:, :, None]  # (N, 1, 1)
        noise = torch.from_numpy(_normal(u[:, 1:17]).reshape(n, 4, 2)) * config.projective_sigma
        corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
        corners = (corners * torch.tensor([w / 2, h / 2], dtype=torch.float64)).expand(n, 4, 2)
        moved = corners * s + noise * side
        hom = get_perspective_transform(moved, corners)  # output corners -> input corners
        p = torch.cat([out, torch.ones(len(out), 1, dtype=torch.float64)], dim=1)
        q = torch.einsum("nij,pj->npi", hom, p)
        src = q[..., :2] / q[..., 2:]
    else:  # elastic
        k = _ELASTIC_GRID
        u = torch.from_numpy(hash_uniform(config.seed, stream, index, 2 * k * k))
        g = torch.linspace(-1, 1, k, dtype=torch.float64)
        gy, gx = torch.meshgrid(g, g, indexing="ij")
        half = torch.tensor([w / 2, h / 2], dtype=torch.float64)
        ctrl = (torch.stack([gx.reshape(-1), gy.reshape(-1)], -1) * half).expand(n, k * k, 2)
        shifted = ctrl + (2 * u.view(n, k * k, 2) - 1) * config.elastic_shift * side
        # kornia's TPS through the control points: output point ctrl reads input at shifted
        kw, aw = get_tps_transform(ctrl, shifted)
        src = warp_points_tps(out.expand(n, -1, -1), shifted, kw, aw)
    return _normalise(src, h, w).view(n, ho, wo, 2)


def distort_images(
    images: Tensor, config: DistortionConfig, index: np.ndarray | Sequence[int], stream: int = 0
) -> Tensor:
    """Distort a batch: ``images[i]`` by the distortion of sample ``index[i]`` (one grid_sample).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H_out, W_out)`` (``H_out = H`` except for ``rts``).
    """
    idx = np.asarray(index, dtype=np.int64)
    if images.dim() != 4 or len(idx) != images.shape[0]:
        raise DataError(
            f"distort_images: images {tuple(images.shape)} and {len(idx)} indices; expected "
            "(N, C, H, W) and N indices"
        )
    if config.kind == "none":
        return images
    grid = distortion_grid(config, (images.shape[2], images.shape[3]), idx, stream)
    out = F.grid_sample(images, grid.to(images.dtype), "bilinear", "zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


class DistortedDataset(Dataset):
    """An :class:`~visrep.data.datasets.ArrayImageDataset` whose image ``i`` is distorted by
    sample ``i``'s own draw; labels are kept. ``stream`` tells the source's splits apart."""

    def __init__(self, base: ArrayImageDataset, config: DistortionConfig, stream: int) -> None:
        self.base = base
        self.config = config
        self.stream = stream
        self.targets = base.targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> SampleBatch:
        raw = self.base.__getitems__(indices).batch
        images = distort_images(raw[IMAGE], self.config, indices, self.stream)
        labels = raw[LABEL]
        return SampleBatch({IMAGE: images, LABEL: labels},
                           lambda j: image_sample(images[j].clone(), int(labels[j])))  # fmt: skip


class DistortedDigitsDataModule(ImageDataModule):
    """An MNIST-family source with the STN paper's distortions (see the module docstring).

    Args:
        root: an IDX folder (``train-images-idx3-ubyte[.gz]``, ``t10k-...``: MNIST,
            Fashion-MNIST, KMNIST ...), an ``.npz`` archive of ``images_key`` / ``labels_key``
            (a test split is then held out with ``split.test_fraction``), or None for
            scikit-learn's 8x8 digits (no files).
        distortion: the distortion, its seed and magnitudes.
        images_key, labels_key: array names in an ``.npz`` root.
        class_names: names of the classes (default: their indices).
        loader, split, augment: batches, splits and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).
    """

    def __init__(
        self,
        root: str | None = None,
        distortion: DistortionConfig = DistortionConfig(),
        images_key: str = "x",
        labels_key: str = "y",
        class_names: list[str] | None = None,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        super().__init__(loader, split, augment)
        self.root = None if root is None else Path(root)
        if self.root is not None and not (self.root.is_dir() or self.root.suffix == ".npz"):
            raise DataError(f"data.root {root!r} is neither an IDX folder nor an .npz archive")
        self.distortion = distortion
        self.keys = (images_key, labels_key)
        self.names = class_names

    def _source(self) -> Splits:
        if self.root is None:
            return DigitsDataModule().load()
        if self.root.is_dir():
            return IDXDataModule(str(self.root), self.names).load()
        train = load_npz_split(self.root, None, *self.keys)
        return Splits(train, train.targets, class_names([train], self.names, str(self.root)))

    def load(self) -> Splits:
        s = self._source()
        cfg = self.distortion
        return Splits(
            DistortedDataset(s.train, cfg, stream=0),
            s.train_targets,
            s.class_names,
            test=None if s.test is None else DistortedDataset(s.test, cfg, stream=1),
        )
