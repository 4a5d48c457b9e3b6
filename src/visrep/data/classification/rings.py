"""Two concentric noisy rings: seed 002's "representation is important" example.

Seed 002 ("limits of shallow classifiers" / "representation is important"): two classes of 2-D
points, one inside the other, cannot be separated by a line in Cartesian coordinates
``(x1, x2)`` but can in polar ones ``(rho, theta)``, where the class is a threshold on ``rho``.
A linear classifier on ``(x1, x2)`` stays near chance; on ``(rho, theta)`` (or on the features
of an MLP that learns such a representation) it is almost perfect.

Samples are ``{"image": float32 (2, 1, 1), "label": int}``: the point ``(x1, x2)`` as a 2-channel
1 x 1 "image", which is what :class:`~visrep.tasks.ClassificationTask` reads and the ``mlp``
backbone flattens (``in_chans=2``, ``img_size=1``); the spec also says ``point_dim=2`` so that
tools (``visrep baseline --features polar``, decision-boundary plots) know the input is a 2-D
point.
"""

from __future__ import annotations

import math

import numpy as np

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.datasets import ArrayImageDataset
from visrep.data.samples import IMAGE, LABEL
from visrep.errors import ConfigError

__all__ = ["RingsDataModule", "sample_rings"]

CLASS_NAMES = ("inner", "outer")


def sample_rings(
    n: int, radii: tuple[float, float], noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two concentric rings, classes balanced (class 0 inner, 1 outer).

    Each point has a uniform angle ``phi`` and radius ``radii[c] + noise * eps``,
    ``eps ~ N(0, 1)``: ``x = (r cos phi, r sin phi)``.

    Args:
        n: number of points (class 0 gets ``ceil(n / 2)``).
        radii: ring radii ``(inner, outer)``.
        noise: standard deviation of the radial noise.
        rng: the randomness.

    Returns:
        ``(points (n, 2) float32, labels (n,) int64)``, shuffled.

    >>> x, y = sample_rings(6, (1.0, 2.0), 0.0, np.random.default_rng(0))
    >>> np.round(np.hypot(x[:, 0], x[:, 1]), 4).tolist() == (y + 1).astype(float).tolist()
    True
    """
    labels = np.arange(n, dtype=np.int64) % 2
    rng.shuffle(labels)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    r = np.asarray(radii, dtype=np.float64)[labels] + noise * rng.standard_normal(n)
    points = np.stack([r * np.cos(phi), r * np.sin(phi)], 1).astype(np.float32)
    return points, labels


class RingsDataModule(SplitDataModule):
    """Two concentric noisy rings of 2-D points (class 0 inner, class 1 outer).

    The three splits are drawn once in :meth:`setup`, each from its own generator seeded with
    ``(seed, split)``, so the validation and test points do not depend on ``train_size``.

    Args:
        radii: ring radii ``(inner, outer)``, ``0 <= inner < outer``.
        noise: standard deviation of the radial noise (> 0 blurs the rings; 0 allowed).
        train_size, val_size, test_size: points per split (classes balanced).
        seed: seed of the draws, an integer >= 0.
        loader: batch sizes and workers.

    A config::

        data:
          class_path: visrep.data.RingsDataModule
          init_args: {radii: [1.0, 2.0], noise: 0.2}
    """

    def __init__(
        self,
        radii: tuple[float, float] = (1.0, 2.0),
        noise: float = 0.2,
        train_size: int = 2000,
        val_size: int = 500,
        test_size: int = 1000,
        seed: int = 0,
        loader: LoaderConfig = LoaderConfig(batch_size=128),
    ) -> None:
        super().__init__(loader, SplitConfig(val_fraction=0.0, seed=seed))
        radii = tuple(float(r) for r in radii)
        if len(radii) != 2 or not (0 <= radii[0] < radii[1] and math.isfinite(radii[1])):
            raise ConfigError(
                f"data.radii must be [inner, outer] with 0 <= inner < outer, got {list(radii)}"
            )
        if not (isinstance(noise, int | float) and math.isfinite(noise) and noise >= 0):
            raise ConfigError(f"data.noise must be a finite number >= 0, got {noise!r}")
        for name, n in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if not isinstance(n, int) or isinstance(n, bool) or n < 2:
                raise ConfigError(f"data.{name} must be an integer >= 2, got {n!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"data.seed must be an integer >= 0, got {seed!r}")
        self.radii, self.noise, self.seed = radii, float(noise), seed
        self.sizes = (train_size, val_size, test_size)

    def _draw(self, split: int) -> ArrayImageDataset:
        rng = np.random.default_rng([self.seed, split])
        points, labels = sample_rings(self.sizes[split], self.radii, self.noise, rng)
        return ArrayImageDataset(points[:, :, None, None], labels, scale=1.0)

    def load(self) -> Splits:
        train, val, test = (self._draw(k) for k in range(3))
        return Splits(train, train.targets, list(CLASS_NAMES), test=test, val=val)

    def on_splits_ready(self) -> None:
        self.mean, self.std = self.train_set.dataset.channel_stats(
            np.asarray(self.train_set.indices)
        )

    def spec(self) -> DataSpec:
        """Family ``classification``: a 2-channel 1 x 1 image that is a 2-D point."""
        return DataSpec(
            family="classification",
            keys=(IMAGE, LABEL),
            in_chans=2,
            image_size=(1, 1),
            num_classes=2,
            class_names=CLASS_NAMES,
            mean=tuple(self.mean),
            std=tuple(self.std),
            point_dim=2,
        )
