"""scikit-learn's bundled digits (1,797 8x8 grey images, 10 classes): the embedded default data."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import ArrayImageDataset


class DigitsDataModule(ImageDataModule):
    """The UCI optical digits as shipped with scikit-learn; no files needed.

    Pixel values 0..16 are scaled to [0, 1]. There is no official test split, so a stratified
    ``split.test_fraction`` (default 20%) is held out with ``split.seed``.

    Args:
        loader, split, augment: batches, splits and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).
    """

    def __init__(
        self,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
        split: SplitConfig = SplitConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        super().__init__(loader, split, augment)

    def load(self) -> Splits:
        d = load_digits()
        images = (d.images.astype(np.float32) / 16.0)[:, None]
        targets = d.target.astype(np.int64)
        return Splits(
            ArrayImageDataset(images, targets, scale=1.0), targets, [str(c) for c in range(10)]
        )
