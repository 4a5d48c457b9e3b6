"""Object detection and instance segmentation (seed 001: R-CNN, Fast / Faster / Mask R-CNN, eq.
15-17; seed 004: FPN, DETR).

The task trains any registered :class:`~visrep.models.detection.Detector` on samples with
``boxes`` and ``labels`` (and ``masks`` for instance models): it normalises the images with the
data's mean and std, hands the detector a list of images and a list of targets, and sums the
named losses the detector returns (each is logged as ``train/<name>``). Evaluation is COCO's:
mAP@[.5:.95], mAP@0.5 (``val/map_50`` picks ``best.ckpt``), mAP@0.75, per object size and per
class, from torchmetrics' ``MeanAveragePrecision`` (:mod:`visrep.tasks.detection_metrics`);
VOC's difficult objects (and COCO's crowds) are neither hits nor misses, as COCO's crowd
regions. Artifacts of a test: precision-recall curves per class, test images with true and
predicted boxes; ``visrep predict`` writes COCO-style result JSON and annotated images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import BOXES, DIFFICULT, IMAGE, LABELS, MASKS, PROPOSALS
from visrep.errors import ConfigError
from visrep.models.detection import DETECTORS, Detector, DetectorFactory, Target
from visrep.models.detection import faster_rcnn as default_model
from visrep.models.pretrained import load_matching, read_backbone_state
from visrep.plots.detection import draw_detections, plot_detections, plot_pr_curves
from visrep.plots.segmentation import default_colors
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.detection_metrics import make_map_metric, pr_curves, summarize, to_metric_inputs
from visrep.tasks.optim import OptimConfig

Batch = dict[str, Any]

_SAMPLES = 6  # test images in the overlay grid


class DetectionTask(Task):
    """Trains a registered detector (module docstring).

    Args:
        model: a registered detector with its options (``--model.model faster_rcnn
            --model.model.backbone resnet34 --model.model.min_size 512``); the data decides
            channels and classes.
        init_weights: start the whole detector from a visrep detection run (its directory or a
            ``.ckpt``) or a state dict of the detector: tensors matched by name and shape. The
            backbone alone comes from a classification run with the model's
            ``pretrained_path``. Unlike ``--ckpt_path`` (resume), optimiser and epochs start
            afresh.
        optim: optimiser and schedule.
    """

    monitor = ("val/map_50", "max")
    families = ("detection",)
    predict_native_size = True
    input_key = IMAGE

    def __init__(
        self,
        model: DetectorFactory = default_model,
        init_weights: str | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if init_weights is not None and not Path(init_weights).exists():
            raise ConfigError(f"--model.init_weights {init_weights!r} does not exist")
        self.model_spec = DETECTORS.spec(model)
        self.save_hyperparameters()
        self.hparams["model"] = self.model_spec  # plain data, whatever form was given
        if hasattr(DETECTORS.resolve(self.model_spec["class_path"]), "fit_after_training"):
            # A stage fitted after training (R-CNN's SVMs) makes the last epoch the model;
            # earlier epochs score without it, so "the best epoch" would compare unlike models.
            self.monitor = None

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if not spec.in_chans or not spec.num_classes or not spec.mean:
            raise ConfigError(
                "DetectionTask needs the data's channels, classes and mean/std (its spec())"
            )
        self.net: Detector = DETECTORS.build(self.model_spec, spec.in_chans, spec.num_classes)
        if self.net.instance_masks and MASKS not in spec.keys:
            raise ConfigError(
                f"--model.model {self.model_spec['class_path'].rsplit('.', 1)[-1]} trains on "
                f"instance masks, but the data yields {', '.join(spec.keys)} (no masks)"
            )
        name = self.model_spec["class_path"].rsplit(".", 1)[-1]
        if self.net.needs_proposals and PROPOSALS not in spec.keys:
            raise ConfigError(
                f"--model.model {name} needs region proposals: set --data.proposals (e.g. "
                "--data.proposals.strategy fast)"
            )
        if not self.net.needs_proposals and PROPOSALS in spec.keys:
            raise ConfigError(
                f"--data.proposals is set but --model.model {name} makes its own proposals: "
                "drop --data.proposals (selective search costs seconds per image)"
            )
        shape = (-1, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(shape), persistent=False)
        iou = ("bbox", "segm") if self.net.instance_masks else ("bbox",)
        # per-class AP comes from the extended summary (summarize), not torchmetrics' K extra
        # per-class evaluations
        self.val_map = make_map_metric(iou, class_metrics=False)
        self.test_map = make_map_metric(iou, class_metrics=False)

    def on_fit_start(self) -> None:
        """``init_weights`` at the start of a new fit only (see the class docstring); a
        post-training stage (R-CNN's SVMs) copied with them is reset: the network it was
        fitted on is about to change."""
        path = self.hparams.get("init_weights")
        if path and self.trainer.ckpt_path is None:
            load_matching(self.net, read_backbone_state(path, prefix="net."), str(path))
            if hasattr(self.net, "fit_after_training"):
                self.net.fitted.fill_(False)
        self._post_fitted_epoch = -1

    # -- inputs ----------------------------------------------------------------------------------
    def images(self, batch: Batch) -> list[Tensor]:
        """The batch's images, normalised, as a list (sizes may differ)."""
        x = batch[IMAGE]
        return [(im.as_subclass(Tensor) - self.mean) / self.std for im in x]

    def targets(self, batch: Batch, train: bool = False) -> list[Target]:
        """One target dict per image: plain ``boxes``, ``labels`` (and ``masks``, ``proposals``,
        ``difficult`` when the batch has them). For training (``train``), difficult objects
        (VOC's difficult, COCO's crowds) are left out, as the R-CNN papers' VOC training and
        torchvision's COCO reference do; evaluation keeps them as regions to ignore."""
        out = []
        for i, (boxes, labels) in enumerate(zip(batch[BOXES], batch[LABELS], strict=True)):
            t = {"boxes": boxes.as_subclass(Tensor).float(), "labels": labels.long()}
            for key in (MASKS, PROPOSALS, DIFFICULT):
                if key in batch:
                    t[key] = batch[key][i].as_subclass(Tensor)
            if train and DIFFICULT in t:
                keep = ~t.pop(DIFFICULT).bool()
                t.update({k: t[k][keep] for k in ("boxes", "labels", MASKS) if k in t})
            out.append(t)
        return out

    def detect(self, batch: Batch) -> list[dict[str, Tensor]]:
        """The detector's detections on the batch's images (eval mode, no gradient)."""
        images = self.images(batch)
        if self.net.needs_proposals:
            if PROPOSALS not in batch:
                raise ConfigError(
                    f"{type(self.net).__name__} needs region proposals with every image: predict "
                    "on a detection data module with --data.proposals (the run's own data), not "
                    "on image files"
                )
            proposals = [p.as_subclass(Tensor) for p in batch[PROPOSALS]]
            return self.net(images, proposals=proposals)
        return self.net(images)

    def forward(self, x: Tensor | list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections of images in [0, 1] (a ``(B, C, H, W)`` batch or a list), one dict per
        image; models that read proposals need :meth:`detect` on a batch that has them."""
        return self.detect({IMAGE: x})

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        targets = self.targets(batch, train=True)
        losses = self.net(self.images(batch), targets)
        loss = sum(losses.values())
        n = len(targets)
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def on_validation_epoch_start(self) -> None:
        """A detector with a stage fitted after training (R-CNN's SVMs and box regressors)
        fits it at the last epoch's validation (or the one when training stops early), so
        that validation and the saved ``last.ckpt`` use it."""
        if self.trainer.sanity_checking or self.trainer.state.fn != "fit":
            return
        last = self.current_epoch >= (self.trainer.max_epochs or 0) - 1
        if last or self.trainer.should_stop:
            self._fit_post_stage()

    def on_train_end(self) -> None:
        """When training ended without that validation (``max_steps``, ``max_time``, no
        validation in the last epoch), the post-training stage is fitted now and ``last.ckpt``
        rewritten with it."""
        if self._fit_post_stage():
            for cb in self.trainer.checkpoint_callbacks:
                if getattr(cb, "filename", None) == "last" and cb.dirpath:
                    self.trainer.save_checkpoint(Path(cb.dirpath) / "last.ckpt")

    def _fit_post_stage(self) -> bool:
        """Fit the detector's post-training stage once per epoch; whether it was fitted."""
        fit = getattr(self.net, "fit_after_training", None)
        if fit is None or getattr(self, "_post_fitted_epoch", -1) == self.current_epoch:
            return False
        fit(self._train_batches)
        self._post_fitted_epoch = self.current_epoch
        return True

    def _train_batches(self) -> Iterator[tuple[list[Tensor], list[Target]]]:
        """The training images without augmentation (the SVMs see the images as they are)."""
        for batch in self.trainer.datamodule.plain_train_dataloader():
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            yield self.images(batch), self.targets(batch, train=True)

    def _eval_step(self, batch: Batch, stage: str) -> list[dict[str, Tensor]]:
        detections = self.detect(batch)
        preds, target = to_metric_inputs(detections, self.targets(batch))
        getattr(self, f"{stage}_map").update(preds, target)
        return detections

    def _log_epoch(self, stage: str) -> dict[str, Any]:
        metric = getattr(self, f"{stage}_map")
        result = metric.compute()
        metric.reset()
        names = self._names()
        values = summarize(result, names, stage)
        for key, value in values.items():
            self.log(key, value, prog_bar=key == f"{stage}/map_50")
        return {"result": result, "values": values}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        detections = self._eval_step(batch, "test")
        batches = self.trainer.num_test_batches[0] if self._trainer is not None else 1
        batches = int(batches) if math.isfinite(batches) and batches > 0 else 1
        stride = max(1, batches // _SAMPLES)
        if len(self._samples) < _SAMPLES and batch_idx % stride == 0:
            targets = self.targets(batch)
            k = min(_SAMPLES - len(self._samples), max(1, math.ceil(_SAMPLES / batches)))
            for i in range(min(k, len(detections))):
                self._samples.append(
                    (
                        batch[IMAGE][i].as_subclass(Tensor).cpu(),
                        {k2: v.cpu() for k2, v in detections[i].items()},
                        {k2: v.cpu() for k2, v in targets[i].items()},
                    )
                )

    def on_test_epoch_end(self) -> None:
        self._test_results = {**self._log_epoch("test"), "samples": self._samples}
        self._samples = []

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """One detection dict per image (boxes in the image's pixels, as given) and the image
        itself as uint8, for the annotated prediction files."""
        detections = self.detect(batch)
        images = [
            (im.as_subclass(Tensor).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
            for im in batch[IMAGE]
        ]
        return {
            "detections": [{k: v.cpu() for k, v in d.items()} for d in detections],
            "image": images,
        }

    # -- what the trainer calls ------------------------------------------------------------------
    def _names(self) -> list[str]:
        spec = self.spec
        return list(spec.class_names) or [str(c) for c in range(spec.num_classes)]

    def _colors(self) -> list[tuple[int, int, int]]:
        return list(self.spec.class_colors) or default_colors(self.spec.num_classes + 1)[1:]

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: precision-recall curves per class at IoU 0.5, test images with true
        (dashed) and predicted boxes."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = self._names()
        curves = pr_curves(results["result"], names, iou=0.5)
        ap = {n: results["values"].get(f"test/ap_50/{n}", float("nan")) for n in curves}
        plot_pr_curves(curves, ap, run.plots / "pr_curves.png", "precision-recall at IoU 0.5")
        samples = results["samples"]
        if samples:
            plot_detections(
                [_hwc(im) for im, _, _ in samples],
                [d for _, d, _ in samples],
                [t for _, _, t in samples],
                names,
                run.plots / "test_detections.png",
                colors=self._colors(),
            )
        return {}

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Any]], names: list[str]
    ) -> list[str]:
        """An annotated PNG per image (``predictions/<index>_<name>.png``, detections with
        score >= 0.5) and
        ``predictions/detections.json``: COCO's result format (``image_id`` is the sample's
        index, ``bbox`` ``[x, y, w, h]``, ``category_id`` visrep's 0-based class id, not a
        COCO source's category id, ``score``), with the file and class names alongside."""
        class_names, colors = self._names(), self._colors()
        paths, results = [], []
        pairs = _flatten(outputs)
        for i, ((image, det), name) in enumerate(zip(pairs, names, strict=True)):
            boxes = det["boxes"].numpy()
            keep = det["scores"].numpy() >= 0.5
            masks = det["masks"].numpy()[keep] > 0.5 if "masks" in det else None
            drawn = draw_detections(
                _hwc(image), boxes[keep], det["labels"].numpy()[keep],
                det["scores"].numpy()[keep], class_names, colors, masks=masks,
            )  # fmt: skip
            paths.append(run.write_prediction_image(i, name, Image.fromarray(drawn)))
            for box, label, score in zip(
                boxes.tolist(), det["labels"].tolist(), det["scores"].tolist(), strict=True
            ):
                x1, y1, x2, y2 = box
                results.append(
                    {
                        "image_id": i,
                        "file_name": name,
                        "category_id": int(label),
                        "category": class_names[int(label)],
                        "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                        "score": round(float(score), 5),
                    }
                )
        run.write_text(run.predictions / "detections.json", json.dumps(results, indent=1))
        return paths

    def predict_rows(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per image: the number of detections with score >= 0.5 and their count per class."""
        names = self._names()
        rows = []
        for _, det in _flatten(outputs):
            keep = det["scores"] >= 0.5
            counts = np.bincount(det["labels"][keep].numpy(), minlength=len(names))
            rows.append(
                {"detections": int(keep.sum()), **dict(zip(names, counts.tolist(), strict=True))}
            )
        return rows


def _flatten(outputs: Iterable[dict[str, Any]]) -> list[tuple[Tensor, dict[str, Tensor]]]:
    return [p for out in outputs for p in zip(out["image"], out["detections"], strict=True)]


def _hwc(image: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` float or uint8 image as ``(H, W, 3)`` uint8 for plotting."""
    x = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().byte()
    x = x.permute(1, 2, 0).numpy()
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
