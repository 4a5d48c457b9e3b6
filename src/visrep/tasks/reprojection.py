"""Lightning callback keeping NAIS-Net blocks in their stability region during training.

Projected gradient descent (Ciccone et al., NeurIPS 2018, Sec. 5): after every optimiser step the
weights of every NAIS-Net block are reprojected with Algorithm 1 (FC) or Algorithm 2 (conv).
Kept out of ``visrep.models`` so the models stay usable without Lightning.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from visrep.models.layers.naisnet import reproject_


class NaisNetReprojection(pl.Callback):
    """Reproject every NAIS-Net block of the trained module after each training batch.

    ``on_train_batch_end`` runs after the batch's optimiser step in automatic and manual
    optimisation; with gradient accumulation the extra calls are no-ops because reprojection
    is idempotent. The weights are also reprojected once when fitting starts, so the first
    forward pass already satisfies the constraints.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reproject_(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        reproject_(pl_module)
