"""Prediction inputs: one image file or a folder of them (``visrep predict --data.path``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from visrep.data.base import LoaderConfig
from visrep.data.datasets import IMAGE_EXTENSIONS, ImageFileDataset
from visrep.data.samples import collate
from visrep.errors import DataError


def list_images(path: str | Path) -> list[str]:
    """``path`` itself if it is an image file, else every image below the folder (sorted)."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"data.path {str(p)!r} is not an image ({', '.join(IMAGE_EXTENSIONS)})")
        return [str(p)]
    if not p.is_dir():
        raise DataError(f"data.path {str(p)!r} does not exist")
    files = sorted(
        str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
    )
    if not files:
        raise DataError(f"data.path {str(p)!r} holds no image files")
    return files


class ImageFilesDataModule(L.LightningDataModule):
    """Images to predict on, resized and converted to what the trained model expects.

    The channel count and size are read from the model's data spec (stored in its checkpoint),
    so ``visrep predict --ckpt_path CKPT --data.path DIR`` needs nothing else. Samples are
    ``{"image": Image}`` (no label).

    Args:
        path: an image file or a folder of them (searched recursively).
        loader: batch size and workers (``eval_batch_size`` is the prediction batch, when set).
    """

    def __init__(self, path: str, loader: LoaderConfig = LoaderConfig(batch_size=256)) -> None:
        super().__init__()
        self.path = path
        self.files = list_images(path)
        self.loader = loader

    def predict_dataloader(self) -> DataLoader:
        task = self.trainer.lightning_module
        spec = getattr(task, "spec", None)
        native = getattr(task, "predict_native_size", False)  # dense tasks: masks at image size
        size = (
            tuple(spec.image_size) if spec is not None and spec.image_size and not native else None
        )
        chans = spec.in_chans if spec is not None and spec.in_chans else 3
        ds = ImageFileDataset(self.files, [-1] * len(self.files), chans, size)
        cfg = self.loader
        return DataLoader(
            ds,
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            num_workers=cfg.num_workers,
            collate_fn=collate,
        )

    def sample_names(self) -> list[str]:
        """One name per prediction sample, in loader order."""
        return self.files
