"""Rectified stereo pairs for self-supervised depth: datasets, Godard's augmentation, DataModule.

Training samples are ``{"image": left, "image_right": right, "meta"}`` at the working size (a
random crop of it with ``augment.crop``), augmented as Godard et al. 2017 (Sec. 4): with
probability 0.5 both views are mirrored and SWAPPED (the mirrored right view is a valid left
view); with probability 0.5 one random gamma in [0.8, 1.2], brightness in [0.5, 2] and
per-channel colour factor in [0.8, 1.2] is applied to both views, then clipped to [0, 1].
Evaluation samples add ``disparity``: the left view's ground truth at the FILE's resolution
(``(1, H0, W0)`` pixels, ``inf`` = unknown; all ``inf`` when the pair has none), so errors are
measured at full resolution; batches of pairs of different sizes hold it as a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import DISPARITY, IMAGE, META, collate
from visrep.data.stereo.sources import StereoPair, read_disparity, read_view, scan_stereo
from visrep.errors import ConfigError, DataError

__all__ = ["IMAGE_RIGHT", "StereoAugment", "StereoDataModule", "StereoDataset", "augment_pair"]

IMAGE_RIGHT = "image_right"  # the right view of a rectified pair, as ``image`` is the left


@dataclass(frozen=True)
class StereoAugment:
    """Training augmentation of a pair (Godard et al. 2017, Sec. 4).

    Attributes:
        crop: ``(H, W)`` random crop of the working-size pair (the same window in both views,
            so the pair stays rectified); None: the whole pair.
        hflip: mirror both views and swap them, with probability 0.5.
        color: gamma, brightness and per-channel colour shifts, with probability 0.5.
        gamma, brightness, color_shift: the uniform ranges of the colour factors.
    """

    crop: tuple[int, int] | None = None
    hflip: bool = True
    color: bool = True
    gamma: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (0.5, 2.0)
    color_shift: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ConfigError(f"data.augment.crop must be (H, W) >= 1 or null, got {self.crop}")
        for name in ("gamma", "brightness", "color_shift"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"data.augment.{name} must be (low, high), 0 < low <= high")


def _uniform(lo: float, hi: float, shape: tuple[int, ...], g: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def augment_pair(
    left: Tensor, right: Tensor, cfg: StereoAugment, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Godard's augmentation of one pair (see :class:`StereoAugment`); inputs are not modified.

    Shape: ``(C, H, W), (C, H, W) -> (C, h, w), (C, h, w)`` with ``(h, w) = cfg.crop``.
    """
    g = generator
    if cfg.crop is not None:
        (h, w), (ch, cw) = left.shape[-2:], cfg.crop
        if ch > h or cw > w:
            raise ConfigError(
                f"data.augment.crop {tuple(cfg.crop)} exceeds the pair's size {(h, w)}"
            )
        y = int(torch.randint(h - ch + 1, (1,), generator=g))
        x = int(torch.randint(w - cw + 1, (1,), generator=g))
        left, right = left[:, y : y + ch, x : x + cw], right[:, y : y + ch, x : x + cw]
    if cfg.hflip and float(torch.rand((), generator=g)) < 0.5:
        left, right = right.flip(-1), left.flip(-1)
    if cfg.color and float(torch.rand((), generator=g)) < 0.5:
        gamma = float(_uniform(*cfg.gamma, (), g))
        factor = _uniform(*cfg.brightness, (), g) * _uniform(*cfg.color_shift, (left.shape[0],), g)
        factor = factor.view(-1, 1, 1).to(left.dtype)
        left = (left.clamp(0, 1) ** gamma * factor).clamp(0, 1)
        right = (right.clamp(0, 1) ** gamma * factor).clamp(0, 1)
    return left.contiguous(), right.contiguous()


class StereoDataset(Dataset):
    """Pairs read from their files, resized to the working ``size`` (bilinear, antialiased).

    Args:
        pairs: the pairs (:func:`~visrep.data.stereo.scan_stereo`).
        size: working ``(H, W)`` of both views.
        train: training samples (augmented, no disparity) or evaluation samples (with it).
        augment: the training augmentation.
        channels: 3 (RGB) or 1 (grey).
        repeats: samples per pair in one pass (training: crops per pair per epoch).
        disparity_scale: what 8/16-bit disparity PNGs hold per pixel of disparity.

    The resized views of each pair are kept in memory once read (``2 C H W`` floats per pair).
    """

    def __init__(
        self,
        pairs: list[StereoPair],
        size: tuple[int, int],
        train: bool,
        augment: StereoAugment | None = None,
        channels: int = 3,
        repeats: int = 1,
        disparity_scale: float = 1.0,
    ) -> None:
        self.pairs, self.size, self.train = list(pairs), tuple(size), train
        self.augment = augment or StereoAugment()
        self.channels, self.repeats, self.disparity_scale = channels, repeats, disparity_scale
        # pair -> (left, right at the working size, native (H, W))
        self._views: dict[int, tuple[Tensor, Tensor, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def views(self, i: int) -> tuple[Tensor, Tensor]:
        """The left and right views of pair ``i`` at the working size; checks their sizes."""
        if i not in self._views:
            p = self.pairs[i]
            left, right = read_view(p.left, self.channels), read_view(p.right, self.channels)
            if left.shape != right.shape:
                raise DataError(
                    f"stereo pair {p.name!r}: left {p.left!r} is {left.shape[2]}x{left.shape[1]} "
                    f"but right {p.right!r} is {right.shape[2]}x{right.shape[1]}; a rectified "
                    "pair has one size"
                )
            both = torch.stack([left, right])
            if tuple(both.shape[-2:]) != self.size:
                both = F.interpolate(both, size=self.size, mode="bilinear", antialias=True)
            self._views[i] = (both[0].clamp(0, 1), both[1].clamp(0, 1), tuple(left.shape[-2:]))
        return self._views[i][:2]

    def disparity(self, i: int) -> Tensor:
        """The left view's ground truth ``(1, H0, W0)`` at the file's size (all ``inf`` if none)."""
        p = self.pairs[i]
        self.views(i)
        native = self._views[i][2]
        if p.disparity is None:
            return torch.full((1, *native), float("inf"))
        d = read_disparity(p.disparity, self.disparity_scale)
        if tuple(d.shape[-2:]) != native:
            raise DataError(
                f"stereo pair {p.name!r}: disparity {p.disparity!r} is {d.shape[2]}x{d.shape[1]} "
                f"but the images are {native[1]}x{native[0]}"
            )
        return d

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = index % len(self.pairs)
        left, right = self.views(i)
        meta = {"file": self.pairs[i].name}
        if self.train:
            left, right = augment_pair(left, right, self.augment)
            return {IMAGE: tv_tensors.Image(left), IMAGE_RIGHT: right, META: meta}
        return {IMAGE: tv_tensors.Image(left), IMAGE_RIGHT: right, DISPARITY: self.disparity(i),
                META: meta}  # fmt: skip


class StereoDataModule(SplitDataModule):
    """Rectified pairs from one or several folders (layouts: :mod:`visrep.data.stereo.sources`).

    Training needs no disparity: the network learns from the pairs' own views. With
    ``train_on_eval`` every pair is in the training, validation AND test splits: test-time
    self-supervision (the ground truth is never seen, only the views of the pairs scored),
    the honest use of a handful of pairs; otherwise pairs are split by ``split``.

    Args:
        root: a folder or a list of folders of pairs.
        size: working ``(H, W)`` every view is resized to (Godard: 256 x 512).
        channels: 3 (RGB) or 1 (grey).
        augment: training crop, flips and colour changes.
        crops_per_pair: training samples per pair per epoch.
        train_on_eval: train on the validation and test pairs' views too (see above).
        disparity_scale: value per pixel of disparity in disparity PNGs (KITTI: 256).
        loader, split: batches and (without ``train_on_eval``) the split of the pairs.
    """

    collate_fn = staticmethod(collate)

    def __init__(
        self,
        root: str | list[str],
        size: tuple[int, int] = (256, 512),
        channels: int = 3,
        augment: StereoAugment | None = None,
        crops_per_pair: int = 1,
        train_on_eval: bool = False,
        disparity_scale: float = 1.0,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        self.roots = [root] if isinstance(root, str) else list(root)
        if not self.roots:
            raise ConfigError("data.root must name at least one folder of stereo pairs")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"data.size must be (H, W) >= 1, got {size}")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        if crops_per_pair < 1:
            raise ConfigError(f"data.crops_per_pair must be >= 1, got {crops_per_pair}")
        if disparity_scale <= 0:
            raise ConfigError(f"data.disparity_scale must be > 0, got {disparity_scale}")
        self.size, self.channels = (int(size[0]), int(size[1])), channels
        self.augment = StereoAugment(**augment) if isinstance(augment, dict) else augment
        self.augment = self.augment or StereoAugment()
        crop = self.augment.crop
        if crop is not None and (crop[0] > self.size[0] or crop[1] > self.size[1]):
            raise ConfigError(f"data.augment.crop {tuple(crop)} exceeds data.size {self.size}")
        self.crops_per_pair, self.train_on_eval = crops_per_pair, train_on_eval
        self.disparity_scale = disparity_scale
        self.pairs: list[StereoPair] = []

    def load(self) -> Splits:
        self.pairs = [p for r in self.roots for p in scan_stereo(r)]
        return Splits(self.pairs, None, [])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self.train_on_eval:
            super().setup(stage)  # split the pairs, then on_splits_ready
            return
        self.load()
        self._datasets(self.pairs, self.pairs, self.pairs)

    def on_splits_ready(self) -> None:
        def pairs_of(ds: Dataset | None) -> list[StereoPair] | None:
            if ds is None:
                return None
            return [self.pairs[i] for i in ds.indices] if isinstance(ds, Subset) else list(ds)

        self._datasets(pairs_of(self.train_set), pairs_of(self.val_set), pairs_of(self.test_set))

    def _datasets(self, train: list, val: list | None, test: list | None) -> None:
        def make(pairs: list | None, is_train: bool) -> StereoDataset | None:
            if pairs is None:
                return None
            return StereoDataset(
                pairs, self.size, is_train, self.augment, self.channels,
                self.crops_per_pair if is_train else 1, self.disparity_scale,
            )  # fmt: skip

        self.train_set, self.val_set, self.test_set = (
            make(train, True), make(val, False), make(test, False)
        )  # fmt: skip

    def spec(self) -> DataSpec:
        """Stereo samples at the working size (the task's disparity unit is its width)."""
        return DataSpec(
            family="stereo",
            keys=(IMAGE, IMAGE_RIGHT, DISPARITY),
            in_chans=self.channels,
            image_size=self.size,
        )

    def sample_names(self) -> list[str]:
        """The names of the test pairs, in loader order."""
        return [p.name for p in self.test_set.pairs] if self.test_set is not None else []
