"""A toy task family defined outside visrep: regress the mean brightness of an image.

It exists to show (and test) that a new family needs no edit to visrep's CLI, trainer, report
or other tasks: a data module with a ``spec()``, a :class:`~visrep.tasks.Task` subclass, and
nothing else. ``tests/tasks/test_new_family.py`` runs it through ``visrep fit``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from visrep.data.base import DataSpec
from visrep.data.samples import collate
from visrep.plots import save
from visrep.runs import RunDir
from visrep.tasks import OptimConfig, Task


class MeanImages(Dataset):
    """Random 1x4x4 images; the target is their mean."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 1, 4, 4, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "target": self.images[i].mean()}


class MeanImagesDataModule(L.LightningDataModule):
    def __init__(self, n: int = 96, batch_size: int = 16) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size

    def spec(self) -> DataSpec:
        return DataSpec(
            family="regression", keys=("image", "target"), in_chans=1, image_size=(4, 4)
        )

    def _loader(self, seed: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            MeanImages(self.n, seed),
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(0, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(2)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(3)


class MeanRegressionTask(Task):
    """Linear regression of the mean pixel; MSE loss, ``val/mse`` picks ``best.ckpt``."""

    monitor = ("val/mse", "min")
    families = ("regression",)

    def __init__(self, hidden: int = 8, optim: OptimConfig | None = None) -> None:
        super().__init__(optim)
        self.save_hyperparameters()

    def build(self, spec: DataSpec) -> None:
        h, w = spec.image_size
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(spec.in_chans * h * w, self.hparams.hidden),
            nn.Linear(self.hparams.hidden, 1),
        )

    def _mse(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        loss = F.mse_loss(self.net(batch["image"]).squeeze(1), batch["target"])
        self.log(f"{stage}/mse", loss, batch_size=len(batch["target"]))
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._mse(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._mse(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._mse(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"pred": self.net(batch["image"]).squeeze(1), "target": batch["target"]}

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        if stage != "test":
            return {}
        fig, ax = plt.subplots()
        w = self.net[1].weight.detach()  # (hidden, pixels)
        ax.imshow(w.numpy())
        save(fig, run.plots / "weights.png")
        return {"test/weight_spread": float(w.std())}
