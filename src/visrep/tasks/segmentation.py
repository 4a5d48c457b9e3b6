"""Semantic segmentation: per-pixel classification (seed 001, loss eq. 18; seed 003, FCN / DeepLab).

The loss is the pixel-wise cross-entropy ``-sum_i w_{y_i} log p_i(y_i)`` over the pixels that
are not ignored (seed 001, eq. 18), with SegNet's median-frequency class weights ``w`` from the
data module when ``class_weights`` is on, optionally plus the soft Dice loss. Metrics come from
torchmetrics over the non-ignored pixels: mean IoU (``val/miou`` picks ``best.ckpt``), per-class
IoU, pixel accuracy and mean class accuracy.

Two options change what the network's scores go through: ``crf`` (a dense CRF, as DeepLab's
post-processing or, with ``crf.trainable``, as a CRF-as-RNN layer trained end to end, Zheng et
al. ICCV 2015) and ``inference`` (whole-image or sliding-window scores for validation, test and
prediction; :mod:`visrep.models.inference`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from visrep.data.base import DataSpec
from visrep.data.samples import IMAGE, MASK
from visrep.errors import ConfigError
from visrep.losses import dice_loss
from visrep.models.inference import sliding_window_logits
from visrep.models.layers.crf import DenseCRF, check_crf_options, dense_crf
from visrep.models.pretrained import load_matching, read_backbone_state
from visrep.models.segmentation import SEGMENTERS, SegmenterFactory
from visrep.models.segmentation import unet as default_model
from visrep.models.segmenter import ImageSegmenter
from visrep.plots.segmentation import colorize, default_colors, plot_class_iou, plot_segmentations
from visrep.runs import RunDir
from visrep.tasks.base import Task, write_confusion_matrix
from visrep.tasks.optim import OptimConfig

Batch = dict[str, Any]


@dataclass(frozen=True)
class CRFConfig:
    """A dense CRF on the network's scores (Krähenbühl and Koltun 2011; seed 003).

    With ``trainable`` off it is DeepLab's post-processing (Chen et al. 2015): mean-field
    marginals of :func:`visrep.models.layers.crf.dense_crf` with the network's log-probabilities
    as unaries, on every evaluated and predicted image; the loss stays the network's own. With
    ``trainable`` on it is CRF-as-RNN (Zheng et al., ICCV 2015): the model ends in a
    :class:`~visrep.models.layers.crf.DenseCRF` layer whose kernel weights ``w_appearance``,
    ``w_smoothness`` (initialised to the values here) and label-compatibility matrix
    (initialised to Potts) are learnt with the network through the unrolled iterations; the
    loss is the (class-weighted) NLL of the CRF's marginals ``log Q``, and evaluation and
    prediction use the same layer. The thetas stay fixed, as in the paper. The defaults are
    Krähenbühl and Koltun's (intensities in 0..255 units); ``window`` is the radius of the
    message window (see the CRF's docstring for what it truncates).

    Cost of the trainable layer: the ``((2 window + 1)^2 - 1) / 2`` distinct appearance weights
    (the kernel is symmetric) are held per image, ``2 B ((2 window + 1)^2 - 1) H W`` bytes
    (window 9, 8 images of 176x240: 232 MiB), and each iteration filters the marginals with
    them; the backward applies the same filter to the gradient. Measured (1 CPU thread on a
    busy 2-core machine; U-Net depth 4 width 16, 8 x 176x240, 11 classes, 5 iterations): 4.3-6.3
    s a training step with the layer, 1.3-1.5 s without; peak memory 2.4-3.0 GB against 1.5 GB.

    Initial weights: with ``normalize="none"`` the kernels are summed unnormalised (Eq. 3), so
    at window 9 a pixel receives up to ~360 appearance and ~55 smoothness messages and the
    post-processing defaults (10, 3) start a trained layer saturated (an untrained U-Net's loss
    is ~80 instead of 2.5, ``Q`` one-hot, little gradient). Train either with
    ``normalize="after"`` (each message divided by the kernel's response to ones, as
    CRF-as-RNN's mean-field layer) and weights ~1-3 (loss 2.50-2.55 there), or unnormalised
    from ``w_appearance ~ 0.03, w_smoothness ~ 0.05`` (loss 2.51).
    """

    iterations: int = 5
    theta_alpha: float = 80.0
    theta_beta: float = 13.0
    theta_gamma: float = 3.0
    w_appearance: float = 10.0
    w_smoothness: float = 3.0
    window: int = 9
    trainable: bool = False
    normalize: Literal["none", "after", "symmetric"] = "none"  # kernel normalisation, see dense_crf

    def __post_init__(self) -> None:
        # checked when the options are given, not at the first validation after an epoch
        check_crf_options(
            "--model.crf", self.iterations, self.theta_alpha, self.theta_beta, self.theta_gamma,
            self.window, self.normalize,
        )  # fmt: skip
        for name in ("w_appearance", "w_smoothness"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"--model.crf: {name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class InferenceConfig:
    """How validation, test and prediction compute the scores of an image.

    ``whole`` runs the model once on the whole image; ``sliding`` on overlapping ``window``
    tiles whose scores are blended (:func:`visrep.models.inference.sliding_window_logits`),
    then a trainable CRF, if any, runs once on the blended scores of the whole image. Training
    always runs on whole (cropped) samples.

    Attributes:
        mode: ``whole`` or ``sliding``.
        window: tile ``(H, W)``; None: the training crop (the data spec's image size).
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        blend: ``uniform`` or ``gaussian`` weights of a tile's pixels.
        batch_size: tiles per model call; None: as many as the images in the batch.
    """

    mode: Literal["whole", "sliding"] = "whole"
    window: tuple[int, int] | None = None
    overlap: float = 0.5
    blend: Literal["uniform", "gaussian"] = "uniform"
    batch_size: int | None = None


def _inference_config(value: InferenceConfig | dict | None) -> InferenceConfig:
    """``value`` as a checked :class:`InferenceConfig` (a ``ConfigError`` names the option)."""
    cfg = InferenceConfig(**value) if isinstance(value, dict) else value or InferenceConfig()
    if cfg.mode not in ("whole", "sliding"):
        raise ConfigError(f"--model.inference.mode must be whole or sliding, got {cfg.mode!r}")
    if cfg.window is not None:
        w = tuple(cfg.window) if isinstance(cfg.window, list | tuple) else (cfg.window,)
        if len(w) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in w
        ):
            raise ConfigError(
                f"--model.inference.window must be (H, W) of ints >= 1 or null, got {cfg.window!r}"
            )
        cfg = replace(cfg, window=w)
    if not isinstance(cfg.overlap, int | float) or not 0 <= cfg.overlap < 1:
        raise ConfigError(f"--model.inference.overlap must be in [0, 1), got {cfg.overlap!r}")
    if cfg.blend not in ("uniform", "gaussian"):
        raise ConfigError(f"--model.inference.blend must be uniform or gaussian, got {cfg.blend!r}")
    if cfg.batch_size is not None and (
        isinstance(cfg.batch_size, bool)
        or not isinstance(cfg.batch_size, int)
        or cfg.batch_size < 1
    ):
        raise ConfigError(
            f"--model.inference.batch_size must be an int >= 1 or null, got {cfg.batch_size!r}"
        )
    return cfg


_SAMPLES = 6  # test images in the overlay grid


class SegmentationTask(Task):
    """Trains an :class:`~visrep.models.segmenter.ImageSegmenter` around a registered model.

    Args:
        model: a registered segmentation model with its options (``--model.model fcn8s
            --model.model.encoder resnet_small``); the data decides channels and classes.
        loss: ``ce`` (weighted cross-entropy), ``dice`` or ``ce+dice``.
        class_weights: weight the cross-entropy with the data's class weights (SegNet's median
            frequency balancing) when the data module gives them.
        crf: a dense CRF (None: off): post-processing of validation, test and predicted masks
            (the loss is the network's own), or with ``crf.trainable`` a CRF-as-RNN layer
            trained end to end (the loss is the NLL of its marginals); see :class:`CRFConfig`.
        inference: whole-image (default) or sliding-window scores for validation, test and
            prediction (``--model.inference.mode sliding``); see :class:`InferenceConfig`.
        init_weights: start the whole network from a visrep segmentation run (its directory or
            a ``.ckpt``) or a state dict of ``ImageSegmenter``: tensors matched by name and
            shape (a CRF layer the run did not have keeps its initial values), for fine-tuning
            a trained model with a CRF-as-RNN layer, other crops or another schedule. Unlike
            ``--ckpt_path`` (which resumes a run), the optimiser and epoch start afresh.
        optim: optimiser and schedule.
    """

    monitor = ("val/miou", "max")
    families = ("segmentation",)
    predict_native_size = True
    input_key = IMAGE

    def __init__(
        self,
        model: SegmenterFactory = default_model,
        loss: Literal["ce", "dice", "ce+dice"] = "ce",
        class_weights: bool = True,
        crf: CRFConfig | None = None,
        inference: InferenceConfig | None = None,
        init_weights: str | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        self.crf = CRFConfig(**crf) if isinstance(crf, dict) else crf
        self.inference = _inference_config(inference)
        if init_weights is not None and not Path(init_weights).exists():
            raise ConfigError(f"--model.init_weights {init_weights!r} does not exist")
        if loss not in ("ce", "dice", "ce+dice"):
            raise ConfigError(f"model.loss must be ce, dice or ce+dice, got {loss!r}")
        self.model_spec = SEGMENTERS.spec(model)
        self.save_hyperparameters()
        self.hparams["model"] = self.model_spec  # plain data, whatever form was given

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if not spec.in_chans or not spec.num_classes or not spec.mean:
            raise ConfigError(
                "SegmentationTask needs the data's channels, classes and mean/std (its spec())"
            )
        model = SEGMENTERS.build(self.model_spec, spec.in_chans, spec.num_classes)
        c = self.crf
        layer = None
        if c is not None and c.trainable:
            layer = DenseCRF(
                spec.num_classes, c.iterations, c.theta_alpha, c.theta_beta, c.theta_gamma,
                c.w_appearance, c.w_smoothness, window=c.window, learnable=True,
                normalize=c.normalize,
            )  # fmt: skip
        self.net = ImageSegmenter(model, spec.mean, spec.std, crf=layer)
        n, ignore = spec.num_classes, spec.ignore_index
        weights = spec.class_weights if self.hparams.class_weights else None
        self.register_buffer(
            "class_weight",
            torch.tensor(weights, dtype=torch.float32) if weights else None,
            persistent=False,
        )
        for stage in ("val", "test"):
            setattr(
                self, f"{stage}_iou", MulticlassJaccardIndex(n, average=None, ignore_index=ignore)
            )
            setattr(
                self, f"{stage}_pixacc", MulticlassAccuracy(n, average="micro", ignore_index=ignore)
            )
            setattr(
                self,
                f"{stage}_classacc",
                MulticlassAccuracy(n, average="macro", ignore_index=ignore),
            )
        self.test_confmat = MulticlassConfusionMatrix(n, ignore_index=ignore)

    def on_fit_start(self) -> None:
        """``init_weights`` at the start of a new fit only: a resumed run, and evaluating the
        fine-tuned checkpoint later, use the checkpoint's own weights (the source run may be
        gone by then)."""
        path = self.hparams.get("init_weights")
        if path and self.trainer.ckpt_path is None:
            load_matching(self.net, read_backbone_state(path, prefix="net."), str(path))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- steps -----------------------------------------------------------------------------------
    def _loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        ignore = self.spec.ignore_index if self.spec.ignore_index is not None else -100
        loss = logits.new_zeros(())
        if "ce" in self.hparams.loss:
            loss = loss + F.cross_entropy(
                logits, mask, weight=self.class_weight, ignore_index=ignore
            )
        if "dice" in self.hparams.loss:
            loss = loss + dice_loss(logits, mask, self.spec.ignore_index)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, mask = batch[IMAGE], batch[MASK]
        loss = self._loss(self.net(x), mask)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def logits(self, x: Tensor) -> Tensor:
        """The model's scores on images ``x`` at their size, as evaluation computes them: the
        whole image in one call, or blended sliding-window scores (then a trainable CRF on
        the whole image). With a trainable CRF the scores are its ``log Q``.

        Shape: ``(B, C, H, W) -> (B, num_classes, H, W)``.
        """
        cfg = self.inference
        if cfg.mode == "whole":
            return self.net(x)
        window = cfg.window or (tuple(self.spec.image_size) if self.spec.image_size else None)
        if window is None:
            raise ConfigError(
                "--model.inference.window is needed: the data spec gives no training image size"
            )
        scores = sliding_window_logits(
            self.net.scores, x, window, overlap=cfg.overlap, blend=cfg.blend,
            batch_size=cfg.batch_size or len(x),
        )  # fmt: skip
        return self.net.refine(scores, x)

    def predict_mask(self, x: Tensor, logits: Tensor | None = None) -> Tensor:
        """Class ids ``(B, H, W)`` of images ``x``: the argmax of :meth:`logits` (of the
        trainable CRF's marginals when there is one), or of the post-processing CRF's."""
        logits = self.logits(x) if logits is None else logits
        if self.crf is None or self.crf.trainable:
            return logits.argmax(1)
        c = self.crf
        q = dense_crf(
            -logits.float().log_softmax(1), x.float(), c.iterations, c.theta_alpha,
            c.theta_beta, c.theta_gamma, c.w_appearance, c.w_smoothness, window=c.window,
            normalize=c.normalize,
        )  # fmt: skip
        return q.argmax(1)

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        x, mask = batch[IMAGE], batch[MASK]
        logits = self.logits(x)
        n = len(x)
        self.log(f"{stage}/loss", self._loss(logits, mask), sync_dist=True, batch_size=n)
        pred = self.predict_mask(x, logits)
        for name in ("iou", "pixacc", "classacc"):
            getattr(self, f"{stage}_{name}").update(pred, mask)
        return pred, mask

    def _log_epoch(self, stage: str) -> Tensor:
        metric = getattr(self, f"{stage}_iou")
        iou = metric.compute()
        # mIoU over the classes present in the truth or the prediction (torchmetrics' per-class
        # IoU is 0 for a class absent from both, which would drag the mean of a small split down)
        cm = metric.confmat
        present = (cm.sum(0) + cm.sum(1)) > 0
        miou = iou[present].mean() if bool(present.any()) else iou.new_zeros(())
        self.log(f"{stage}/miou", miou, prog_bar=stage == "val")
        self.log(f"{stage}/pixel_acc", getattr(self, f"{stage}_pixacc").compute())
        self.log(f"{stage}/mean_class_acc", getattr(self, f"{stage}_classacc").compute())
        for name in ("iou", "pixacc", "classacc"):
            getattr(self, f"{stage}_{name}").reset()
        return iou

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, Tensor, Tensor]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        pred, mask = self._eval_step(batch, "test")
        self.test_confmat.update(pred, mask)
        # a few test images spread over the split for the overlay grid
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
        stride = max(1, batches // _SAMPLES)
        have = sum(len(s[0]) for s in self._samples)
        if have < _SAMPLES and batch_idx % stride == 0:
            k = min(_SAMPLES - have, max(1, math.ceil(_SAMPLES / batches)), len(pred))
            self._samples.append((batch[IMAGE][:k].cpu(), mask[:k].cpu(), pred[:k].cpu()))

    def on_test_epoch_end(self) -> None:
        iou = self._log_epoch("test")
        self._test_results = {
            "iou": iou.tolist(),
            "confusion_matrix": self.test_confmat.compute().tolist(),
            "samples": tuple(torch.cat(t) for t in zip(*self._samples, strict=True)),
        }
        self.test_confmat.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor | list[Tensor]]:
        """``{"mask": (B, H, W) uint8}`` at the size of the images given; a batch of images of
        different sizes (a list) gives a list of masks, each at its image's size."""
        x = batch[IMAGE]
        if isinstance(x, list | tuple):
            return {"mask": [self.predict_mask(im[None])[0].to(torch.uint8) for im in x]}
        return {"mask": self.predict_mask(x).to(torch.uint8)}

    # -- what the trainer calls ------------------------------------------------------------------
    def _colors(self) -> list[tuple[int, int, int]]:
        spec = self.spec
        return list(spec.class_colors) or default_colors(spec.num_classes)

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: per-class IoU (bars and metrics), the confusion matrix, overlays."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = list(self.spec.class_names) or [str(c) for c in range(self.spec.num_classes)]
        cm = results["confusion_matrix"]
        write_confusion_matrix(run, names, cm)
        plot_class_iou(results["iou"], names, run.plots / "class_iou.png")
        images, truth, pred = results["samples"]
        plot_segmentations(
            images, truth, pred, self._colors(), self.spec.ignore_index,
            run.plots / "test_segmentations.png",
        )  # fmt: skip
        return {"test/iou_per_class": dict(zip(names, results["iou"], strict=True))}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Tensor]], names: list[str]
    ) -> list[str]:
        """A palette PNG of each predicted mask: ``predictions/<index>_<name>.png``."""
        masks = _masks(outputs)
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[: self.spec.num_classes] = colorize(
            np.arange(self.spec.num_classes)[None], self._colors(), None
        )[0]
        paths = []
        for i, (mask, name) in enumerate(zip(masks, names, strict=True)):
            img = Image.fromarray(mask, mode="P")
            img.putpalette(palette.flatten().tolist())
            paths.append(run.write_prediction_image(i, name, img))
        return paths

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """The classes present in each predicted mask (the mask itself is a file)."""
        return [{"classes": " ".join(map(str, np.unique(m).tolist()))} for m in _masks(outputs)]


def _masks(outputs: list[dict[str, Any]]) -> list[np.ndarray]:
    """The predicted masks of ``predict_step`` outputs, one ``(H, W)`` array per sample."""
    return [m.cpu().numpy() for out in outputs for m in out["mask"]]
