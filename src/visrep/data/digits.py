"""scikit-learn's bundled digits (1,797 8x8 grey images, 10 classes): the embedded default data."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, Splits
from visrep.data.datasets import ArrayImageDataset


class DigitsDataModule(ImageDataModule):
    """The UCI optical digits as shipped with scikit-learn; no files needed.

    Pixel values 0..16 are scaled to [0, 1]. There is no official test split, so a stratified
    ``test_fraction`` (default 20%) is held out with ``seed``.

    Args:
        train_samples: use a seeded, class-stratified subset of this many training samples
            (after the validation split is carved out); None uses all.
    """

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        train_samples: int | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        super().__init__(
            batch_size,
            eval_batch_size,
            num_workers,
            val_fraction,
            test_fraction,
            seed,
            train_samples=train_samples,
            augment=augment,
        )

    def load(self) -> Splits:
        d = load_digits()
        images = (d.images.astype(np.float32) / 16.0)[:, None]
        targets = d.target.astype(np.int64)
        return Splits(
            ArrayImageDataset(images, targets, scale=1.0), targets, [str(c) for c in range(10)]
        )
