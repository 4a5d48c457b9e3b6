"""numpy ``.npz`` archives of images and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.data.augment import AugmentConfig
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import ArrayImageDataset, class_names, image_split, to_nchw
from visrep.errors import DataError


def _array(path: Path, key: str | None, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"npz file {str(path)!r} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataError(f"npz file {str(path)!r} is a single .npy array, not an archive")
        with z:
            keys = list(z.keys())
            if key is not None and key in keys:
                return z[key]
            if len(keys) == 1:  # e.g. KMNIST's 'arr_0'
                return z[keys[0]]
    except DataError:
        raise
    except Exception as e:  # BadZipFile (CRC, truncation), EOFError, zlib.error, ValueError ...
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise DataError(
            f"cannot read npz file {str(path)!r}: {type(e).__name__}: {reason}"
        ) from None
    raise DataError(
        f"npz file {str(path)!r} has no {what} array {key!r}; it holds {', '.join(keys)}"
    )


def load_npz_split(
    images_path: Path, labels_path: Path | None, images_key: str, labels_key: str
) -> ArrayImageDataset:
    """One split: images (and labels, from the same file unless ``labels_path`` is given)."""
    images = to_nchw(_array(images_path, images_key, "image"), str(images_path))
    labels_path = labels_path or images_path
    labels = _array(labels_path, labels_key, "label")
    split = image_split(images, labels, str(images_path), str(labels_path))
    if images.dtype == np.uint8:
        return split
    return ArrayImageDataset(images.astype(np.float32), split.targets)


class NpzDataModule(ImageDataModule):
    """Images and labels in ``.npz`` files.

    Either one archive per split holding ``images_key`` and ``labels_key`` arrays, or separate
    image and label archives (the KMNIST layout: ``kmnist-test-imgs.npz`` + ``kmnist-test-labels.npz``,
    single-array files are read whatever their key). Images are (N, H, W), (N, H, W, C) or
    (N, C, H, W), uint8 or float in [0, 1].

    Args:
        train_path: training images (and labels) archive.
        test_path: test archive; without it a stratified ``test_fraction`` is held out.
        train_labels_path / test_labels_path: separate label archives.
        images_key / labels_key: array names inside the archives.
        loader, split, augment: batches, splits and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).
    """

    def __init__(
        self,
        train_path: str,
        test_path: str | None = None,
        train_labels_path: str | None = None,
        test_labels_path: str | None = None,
        images_key: str = "x",
        labels_key: str = "y",
        class_names: list[str] | None = None,
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        super().__init__(loader, split, augment)
        self.paths = (train_path, test_path, train_labels_path, test_labels_path)
        self.keys = (images_key, labels_key)
        self.names = class_names

    def load(self) -> Splits:
        tr, te, trl, tel = (Path(p) if p else None for p in self.paths)
        train = load_npz_split(tr, trl, *self.keys)
        test = load_npz_split(te, tel, *self.keys) if te else None
        names = class_names([train] if test is None else [train, test], self.names, str(tr))
        return Splits(train, train.targets, names, test=test)
