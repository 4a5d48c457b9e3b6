"""2-d Gaussian mixtures: the mode-collapse benchmark of GANs (8 Gaussians on a ring, 25 on a grid).

VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018) measure mode
collapse on a ring of 8 Gaussians (radius 2, std 0.02) and a 5 x 5 grid of 25 (spacing 2,
std 0.05); the samples are points ``(2,)`` with the index of the mode that drew them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import LABEL, POINT, collate
from visrep.errors import ConfigError, ShapeError

__all__ = [
    "MIXTURES",
    "GaussianMixtureDataModule",
    "PointDataset",
    "mixture_modes",
    "mode_names",
    "sample_mixture",
]

MIXTURES = ("ring8", "grid25")
DEFAULT_STD = {"ring8": 0.02, "grid25": 0.05}


def mixture_modes(
    name: Literal["ring8", "grid25"], radius: float = 2.0, spacing: float = 2.0
) -> Tensor:
    """The mode centres of a named 2-d mixture, float32 ``(K, 2)``.

    ``ring8``: 8 points at angles ``2 pi k / 8`` on a circle of ``radius``; ``grid25``: the grid
    ``spacing * {-2, -1, 0, 1, 2}^2`` (row-major in y, then x), as in VEEGAN and PacGAN.

    >>> mixture_modes("ring8")[:3].round(decimals=4)
    tensor([[2.0000, 0.0000],
            [1.4142, 1.4142],
            [0.0000, 2.0000]])
    >>> mixture_modes("grid25").shape
    torch.Size([25, 2])
    """
    if name == "ring8":
        angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        modes = radius * torch.stack([angle.cos(), angle.sin()], 1)
    elif name == "grid25":
        ticks = spacing * torch.arange(-2, 3, dtype=torch.float64)
        y, x = torch.meshgrid(ticks, ticks, indexing="ij")
        modes = torch.stack([x.reshape(-1), y.reshape(-1)], 1)
    else:
        raise ConfigError(f"data.mixture must be one of {', '.join(MIXTURES)}, got {name!r}")
    # cos(pi/2) is 6e-17, not 0: round the float64 centres to float32 exactly once
    return torch.where(modes.abs() < 1e-12, 0.0, modes).float()


def sample_mixture(
    modes: Tensor, std: float, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``n`` points of the equal-weight mixture of isotropic Gaussians ``N(modes[k], std^2 I)``.

    Args:
        modes: ``(K, D)`` centres.
        std: the standard deviation of every component (per coordinate).
        n: number of points.
        generator: the randomness (a seeded ``torch.Generator`` makes the draw reproducible).

    Returns:
        ``(points (n, D) float32, labels (n,) int64)``, label ``k`` = the component drawn.

    >>> pts, lab = sample_mixture(torch.zeros(3, 2), 0.0, 4, torch.Generator().manual_seed(0))
    >>> pts.abs().max().item(), lab.shape
    (0.0, torch.Size([4]))
    """
    if modes.dim() != 2 or modes.shape[0] < 1:
        raise ShapeError(
            f"sample_mixture: modes must be (K, D) with K >= 1, got {tuple(modes.shape)}"
        )
    if not (std >= 0 and math.isfinite(std)):
        raise ConfigError(f"sample_mixture: std must be a finite number >= 0, got {std}")
    labels = torch.randint(modes.shape[0], (n,), generator=generator)
    noise = torch.randn(n, modes.shape[1], generator=generator)
    return modes.float()[labels] + std * noise, labels


def mode_names(modes: Tensor) -> tuple[str, ...]:
    """One class name per mode: its centre ``"(x, y)"`` (``%g``, so ``(1.41421, -1.41421)``)."""
    return tuple("(" + ", ".join(f"{v:g}" for v in row) + ")" for row in modes.tolist())


class PointDataset(Dataset):
    """Vector samples ``{"point": (D,), "label": int}`` held in two tensors.

    ``__getitems__`` gathers a whole batch with one index operation and returns it already
    batched (``{"point": (B, D), "label": (B,)}``); :attr:`GaussianMixtureDataModule.collate_fn`
    passes such batches through, so loading costs no per-sample Python work.
    """

    def __init__(self, points: Tensor, labels: Tensor) -> None:
        if points.dim() != 2 or labels.shape != points.shape[:1]:
            raise ShapeError(
                f"PointDataset: points (N, D) and labels (N,) expected, got "
                f"{tuple(points.shape)} and {tuple(labels.shape)}"
            )
        self.points = points.float()
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {POINT: self.points[i], LABEL: int(self.labels[i])}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {POINT: self.points[idx], LABEL: self.labels[idx]}


def collate_batched(samples: Any) -> dict[str, Any]:
    """A batch a dataset's ``__getitems__`` built already, else :func:`~visrep.data.collate`."""
    return samples if isinstance(samples, dict) else collate(samples)


class GaussianMixtureDataModule(SplitDataModule):
    """Points of a 2-d Gaussian mixture: ``{"point": float32 (2,), "label": mode index}``.

    The three splits are drawn once in :meth:`setup`, vectorised, each from its own generator
    seeded with ``(seed, split)``: the same ``seed`` gives the same points, and the validation
    and test points do not change with ``train_size``. An epoch is one pass over the
    ``train_size`` points (Goodfellow et al. 2014, algorithm 1, draws a fresh minibatch of real
    samples for each discriminator step: large ``train_size`` comes close to that).

    Args:
        mixture: ``ring8`` (8 modes on a circle of radius 2) or ``grid25`` (5 x 5 modes, spacing
            2); see :func:`mixture_modes`.
        std: per-mode standard deviation (default: 0.02 for ring8, 0.05 for grid25, as VEEGAN).
        train_size, val_size, test_size: points per split.
        seed: seed of the draws.
        loader: batch sizes and workers.

    Attributes:
        modes: the centres ``(K, 2)`` (also in ``spec().class_names`` as ``"(x, y)"``).
        std: the per-mode standard deviation used.

    A config::

        data:
          class_path: visrep.data.GaussianMixtureDataModule
          init_args: {mixture: grid25, loader: {batch_size: 256}}
    """

    collate_fn = staticmethod(collate_batched)

    def __init__(
        self,
        mixture: Literal["ring8", "grid25"] = "ring8",
        std: float | None = None,
        train_size: int = 100_000,
        val_size: int = 2_500,
        test_size: int = 2_500,
        seed: int = 0,
        loader: LoaderConfig = LoaderConfig(batch_size=256),
    ) -> None:
        super().__init__(loader, SplitConfig(val_fraction=0.0, seed=seed))
        self.modes = mixture_modes(mixture)
        self.mixture = mixture
        std = DEFAULT_STD[mixture] if std is None else std
        if not (isinstance(std, int | float) and math.isfinite(std) and std > 0):
            raise ConfigError(f"data.std must be a finite number > 0 (or null), got {std!r}")
        self.std = float(std)
        for name, n in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if not isinstance(n, int) or n < 1:
                raise ConfigError(f"data.{name} must be an integer >= 1, got {n!r}")
        self.sizes = (train_size, val_size, test_size)
        self.seed = seed

    def _draw(self, split: int) -> PointDataset:
        g = torch.Generator().manual_seed(self.seed * 3 + split)
        return PointDataset(*sample_mixture(self.modes, self.std, self.sizes[split], g))

    def load(self) -> Splits:
        train, val, test = (self._draw(k) for k in range(3))
        return Splits(train, train.labels.numpy(), list(mode_names(self.modes)), test=test, val=val)

    def spec(self) -> DataSpec:
        """Family ``mixture2d``: ``point_dim`` 2, one class per mode named by its centre."""
        return DataSpec(
            family="mixture2d",
            keys=(POINT, LABEL),
            num_classes=len(self.modes),
            class_names=mode_names(self.modes),
            point_dim=2,
        )
