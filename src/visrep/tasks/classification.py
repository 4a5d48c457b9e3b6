"""Supervised image classification: cross-entropy on ``x -> g_phi(x) = z -> f_theta(z)`` (seed 000, 002)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from visrep.errors import ConfigError
from visrep.models import ImageClassifier, create_backbone
from visrep.tasks.adversarial import AdversarialConfig, adversarial_examples, as_adversarial_config
from visrep.tasks.optim import OptimConfig, as_optim_config, build_optimizer, build_scheduler

# Data facts the model needs; filled from the data module at fit time when not given.
_DATA_KEYS = ("num_classes", "in_chans", "image_size", "mean", "std", "class_names")


class ClassificationTask(L.LightningModule):
    """Trains an :class:`~visrep.models.ImageClassifier` built from a named backbone.

    Args:
        backbone: a name from :func:`visrep.models.list_backbones`.
        backbone_args: the backbone's own options (checked against its signature).
        num_classes, in_chans, image_size, mean, std, class_names: taken from the data module
            when left empty (the usual case); stored in the checkpoint so prediction needs no data.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        optim: optimiser and schedule.
        top_k: also report top-k accuracy when there are more than k classes.
        adversarial: train on adversarial examples of each batch (PGD, FGSM or DeepFool),
            or on a clean/adversarial mix (``ratio``); None trains on clean images.
    """

    monitor = ("val/acc", "max")

    def __init__(
        self,
        backbone: str = "small_cnn",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int | None = None,
        in_chans: int | None = None,
        image_size: list[int] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
        adversarial: AdversarialConfig | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.optim = as_optim_config(optim)
        self.adversarial = as_adversarial_config(adversarial)
        self.save_hyperparameters()
        # Checkpoints hold plain values only, so they load with weights_only=True.
        self.hparams["optim"] = asdict(self.optim)
        self.hparams["adversarial"] = asdict(self.adversarial) if self.adversarial else None
        self.net: ImageClassifier | None = None
        if all(self.hparams.get(k) is not None for k in _DATA_KEYS):
            self._build()

    # -- model -----------------------------------------------------------------------------------
    def _build(self) -> None:
        self.net = self.build_net()
        n = self.hparams.num_classes
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.k = self.hparams.top_k if n > self.hparams.top_k else 0
        if self.k:
            self.val_topk = MulticlassAccuracy(n, top_k=self.k, average="micro")
            self.test_topk = MulticlassAccuracy(n, top_k=self.k, average="micro")
        self.test_per_class = MulticlassAccuracy(n, average=None)
        self.test_confmat = MulticlassConfusionMatrix(n)

    def build_net(self) -> nn.Module:
        """The plain model, from the (complete) hyper-parameters; subclasses build theirs."""
        hp = self.hparams
        backbone = create_backbone(
            hp.backbone,
            in_chans=hp.in_chans,
            num_classes=hp.num_classes,
            img_size=tuple(hp.image_size),
            **(hp.backbone_args or {}),
        )
        return ImageClassifier(backbone, hp.mean, hp.std)

    def sample_images(self, x: Any, k: int) -> Tensor:
        """The first ``k`` inputs of a batch as images ``(k, C, H, W)`` in [0, 1] for the test grid."""
        return x[:k]

    def configure_model(self) -> None:
        if self.net is not None:
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "describe"):
            raise ConfigError(
                "the model needs num_classes/in_chans/image_size/mean/std: give them or a data module"
            )
        for k, v in dm.describe().items():
            if self.hparams.get(k) is None:
                self.hparams[k] = v
        self._build()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- steps -----------------------------------------------------------------------------------
    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.adversarial is not None:
            x = adversarial_examples(self.net, x, y, self.adversarial)
        logits = self.net(x)
        loss = self._loss(logits, y)
        self.train_acc(logits, y)
        n = len(y)  # explicit: Lightning would guess it from the first tensor of the batch
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
            batch_size=n,
        )
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = self.net(x)
        n = len(y)
        self.log(
            f"{stage}/loss",
            self._loss(logits, y),
            sync_dist=True,
            prog_bar=stage == "val",
            batch_size=n,
        )
        acc = getattr(self, f"{stage}_acc")
        acc(logits, y)
        self.log(f"{stage}/acc", acc, prog_bar=stage == "val", batch_size=n)
        if self.k:
            topk = getattr(self, f"{stage}_topk")
            topk(logits, y)
            self.log(f"{stage}/acc_top{self.k}", topk, batch_size=n)
        return logits, y

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, Tensor, Tensor]] = []

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        logits, y = self._eval_step(batch, "test")
        self.test_per_class.update(logits, y)
        self.test_confmat.update(logits, y)
        # Spread the 32 grid samples over the whole test set (test sets are often sorted by class).
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
        stride, per = max(1, batches // 32), max(1, math.ceil(32 / batches))
        k = min(per, 32 - sum(len(s[1]) for s in self._samples))
        if k > 0 and batch_idx % stride == 0:
            images = self.sample_images(batch[0], k)
            self._samples.append((images.cpu(), y[:k].cpu(), logits[:k].softmax(-1).cpu()))

    def on_test_epoch_end(self) -> None:
        images, targets, probs = (torch.cat(t)[:32] for t in zip(*self._samples, strict=True))
        self.test_artifacts = {
            "class_names": list(self.hparams.class_names),
            "per_class_acc": self.test_per_class.compute().tolist(),
            "confusion_matrix": self.test_confmat.compute().tolist(),
            "samples": {"images": images, "targets": targets, "probs": probs},
        }
        self.test_per_class.reset()
        self.test_confmat.reset()

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        probs = self.net(batch[0]).softmax(-1)
        conf, pred = probs.max(-1)
        return {"pred": pred, "prob": conf, "probs": probs}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        opt = build_optimizer(self.net, self.optim)
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ConfigError(
                "trainer.max_epochs must be set (>= 1) for the learning-rate schedule"
            )
        steps = max(int(self.trainer.estimated_stepping_batches) // max_epochs, 1)
        sched = build_scheduler(opt, self.optim, steps, max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
