"""Supervised image classification: cross-entropy on ``x -> g_phi(x) = z -> f_theta(z)`` (seed 000, 002)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, LABEL
from visrep.errors import ConfigError
from visrep.models import ImageClassifier
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.models.stn import SpatialTransformer
from visrep.plots.baseline import plot_decision_function
from visrep.plots.classification import plot_prediction_grid
from visrep.plots.generation import plot_reconstructions
from visrep.runs import RunDir
from visrep.tasks.adversarial import AdversarialConfig, adversarial_examples, as_adversarial_config
from visrep.tasks.base import Task, write_confusion_matrix
from visrep.tasks.optim import OptimConfig
from visrep.tasks.reprojection import NaisNetReprojection

Batch = dict[str, Any]


class ClassificationTask(Task):
    """Trains an :class:`~visrep.models.ImageClassifier` (normalisation, backbone, classifier).

    Args:
        backbone: any registered backbone, by name with its own options
            (``--model.backbone resnet18 --model.backbone.small_stem true``; ``visrep fit --help``
            lists every backbone's options). The data decides its input channels, size and
            number of classes.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        optim: optimiser and schedule.
        top_k: also report top-k accuracy when there are more than k classes.
        adversarial: train on adversarial examples of each batch (PGD, FGSM or DeepFool),
            or on a clean/adversarial mix (``ratio``); None trains on clean images.
    """

    monitor = ("val/acc", "max")
    families = ("classification",)
    input_key = IMAGE  # the batch entry the model reads
    class_scores = embeds = True

    def __init__(
        self,
        backbone: BackboneFactory = small_cnn,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
        adversarial: AdversarialConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if top_k < 1:
            raise ConfigError(f"model.top_k must be >= 1, got {top_k}")
        self.adversarial = as_adversarial_config(adversarial)
        self.backbone_spec = BACKBONES.spec(backbone)
        self.save_hyperparameters()
        self.hparams["backbone"] = self.backbone_spec  # plain data, whatever form was given

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        self.net = self.build_net(spec)
        n = spec.num_classes
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.k = self.hparams.top_k if n > self.hparams.top_k else 0
        if self.k:
            self.val_topk = MulticlassAccuracy(n, top_k=self.k, average="micro")
            self.test_topk = MulticlassAccuracy(n, top_k=self.k, average="micro")
        self.test_per_class = MulticlassAccuracy(n, average=None)
        self.test_confmat = MulticlassConfusionMatrix(n)

    def build_net(self, spec: DataSpec) -> nn.Module:
        """The plain model for data described by ``spec``; subclasses build theirs."""
        backbone = BACKBONES.build(
            self.backbone_spec, spec.in_chans, spec.num_classes, spec.image_size
        )
        return ImageClassifier(backbone, spec.mean, spec.std)

    def configure_callbacks(self) -> list:
        # NAIS-Net blocks are reprojected after every step (a no-op for other backbones).
        return [NaisNetReprojection()]

    def sample_images(self, x: Any, k: int) -> Tensor:
        """The first ``k`` inputs of a batch as images ``(k, C, H, W)`` in [0, 1] for the test grid."""
        return x[:k]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- steps -----------------------------------------------------------------------------------
    def batch_input(self, batch: Batch) -> Any:
        """What the model reads from a batch: the ``input_key`` entry (a video task adds the
        clip's optical flow)."""
        return batch[self.input_key]

    def net_logits(self, x: Any) -> Tensor:
        """The class logits of a batch input (a video task averages a video's clips)."""
        return self.net(x)

    def forward_train(self, x: Any) -> tuple[Tensor, Tensor | None]:
        """A training batch's logits and the model's own weighted regularisation loss (None
        when it has none, e.g. PointNet's feature-transform regulariser)."""
        return self.net_logits(x), None

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = self.batch_input(batch), batch[LABEL]
        if self.adversarial is not None:
            x = adversarial_examples(self.net, x, y, self.adversarial)
        logits, reg = self.forward_train(x)
        loss = self._loss(logits, y)
        n = len(y)  # explicit: Lightning would guess it from the first tensor of the batch
        if reg is not None:
            self.log("train/reg", reg, on_step=False, on_epoch=True, batch_size=n)
            loss = loss + reg
        self.train_acc(logits, y)
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

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        x, y = self.batch_input(batch), batch[LABEL]
        logits = self.net_logits(x)
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

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, Tensor, Tensor]] = []
        self._points: list[tuple[Tensor, Tensor]] = []  # all test inputs of 2-D point data

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        logits, y = self._eval_step(batch, "test")
        self.test_per_class.update(logits, y)
        self.test_confmat.update(logits, y)
        if self._plane_data():
            x = self.batch_input(batch)
            self._points.append((x.reshape(len(x), 2).float().cpu(), y.cpu()))
        # Spread the 32 grid samples over the whole test set (test sets are often sorted by class).
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
        stride, per = max(1, batches // 32), max(1, math.ceil(32 / batches))
        k = min(per, 32 - sum(len(s[1]) for s in self._samples))
        if k > 0 and batch_idx % stride == 0:
            images = self.sample_images(self.batch_input(batch), k)
            self._samples.append((images.cpu(), y[:k].cpu(), logits[:k].float().softmax(-1).cpu()))

    def on_test_epoch_end(self) -> None:
        images, targets, probs = (torch.cat(t)[:32] for t in zip(*self._samples, strict=True))
        self._test_results = {
            "per_class_acc": self.test_per_class.compute().tolist(),
            "confusion_matrix": self.test_confmat.compute().tolist(),
            "samples": (images, targets, probs),
            "points": [torch.cat(t) for t in zip(*self._points, strict=True)],
        }
        self.test_per_class.reset()
        self.test_confmat.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        probs = self.net_logits(self.batch_input(batch)).softmax(-1)
        conf, pred = probs.max(-1)
        return {"pred": pred, "prob": conf}

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the confusion matrix (CSV and plot), per-class accuracy, a prediction grid."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = list(self.spec.class_names)
        cm = results["confusion_matrix"]
        write_confusion_matrix(run, names, cm)
        if results["points"]:  # points of the plane: regions, not a grid of 2x1x1 "images"
            self._plot_regions(*results["points"], names, run)
        else:
            images, targets, probs = results["samples"]
            plot_prediction_grid(images, targets, probs, names, run.plots / "test_predictions.png")
            self._plot_transformed(images, run)
        return {"test/acc_per_class": dict(zip(names, results["per_class_acc"], strict=True))}

    @torch.no_grad()
    def _plot_transformed(self, images: Tensor, run: RunDir) -> None:
        """With a spatial transformer in the net (Jaderberg et al. 2015, Fig. 1): the test grid's
        inputs and what the transformer makes of them, in alternating rows, read with a forward
        hook so whatever normalisation precedes it is the net's own."""
        st = next((m for m in self.net.modules() if isinstance(m, SpatialTransformer)), None)
        if st is None or images.dim() != 4:
            return
        seen: list[tuple[Tensor, Tensor]] = []
        hook = st.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
        was_training = self.net.training
        try:
            self.net.eval()
            self.net(images.to(next(self.net.parameters()).device))
        finally:
            hook.remove()
            self.net.train(was_training)
        x, out = (t.float().cpu() for t in seen[0])
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        lo = torch.minimum(x.amin((1, 2, 3)), out.amin((1, 2, 3))).view(-1, 1, 1, 1)
        hi = torch.maximum(x.amax((1, 2, 3)), out.amax((1, 2, 3))).view(-1, 1, 1, 1)
        scale = (hi - lo).clamp(min=1e-8)  # each input and its output on one grey scale
        plot_reconstructions(
            (x - lo) / scale, ((out - lo) / scale).clamp(0, 1), run.plots / "stn_transformed.png",
            title="test inputs (odd rows) and the spatial transformer's outputs (even rows)",
        )  # fmt: skip

    def _plane_data(self) -> bool:
        """Whether the samples are points of the plane (2-D vectors, e.g. the rings demo)."""
        return self.spec is not None and self.spec.point_dim == 2

    @torch.no_grad()
    def _plot_regions(self, points: Tensor, labels: Tensor, names: list[str], run: RunDir) -> None:
        """The trained network's decision regions over the test points (seed 002's polar
        example: the MLP learns the representation that makes the rings separable)."""
        device = next(self.net.parameters()).device
        was_training = self.net.training
        self.net.eval()

        def predict(grid: Any) -> Any:
            x = torch.as_tensor(grid, dtype=torch.float32, device=device)
            shape = (len(x), self.spec.in_chans, *self.spec.image_size)
            return self.net(x.reshape(shape)).argmax(-1).cpu().numpy()

        plot_decision_function(
            predict, points.numpy(), labels.numpy(), names, run.plots / "decision_boundary.png",
            title="network decision regions (test points)",
        )  # fmt: skip
        self.net.train(was_training)

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """``class,class_index,probability`` per sample."""
        names = list(self.spec.class_names) if self.spec else []
        rows = []
        for out in outputs:
            for c, p in zip(out["pred"].tolist(), out["prob"].tolist(), strict=True):
                name = names[c] if c < len(names) else str(c)
                rows.append({"class": name, "class_index": c, "probability": f"{p:.6f}"})
        return rows
