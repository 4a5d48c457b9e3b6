"""Point-cloud segmentation (seed 001, PointNet's segmentation network, Qi et al. 2017 Fig. 2):
a class per point from the point's own feature and the cloud's global feature.

The loss is the per-point cross-entropy ``-sum_i w_{y_i} log p_i(y_i) / sum_i w_{y_i}`` over the
points whose label is not ignored (seed 001, eq. 18, with the data's median-frequency class
weights ``w`` when ``class_weights`` is on), plus the network's own regulariser (PointNet's
``0.001 ||I - A A^T||_F^2``). Clouds of one size are stacked, clouds of different sizes packed
(the network takes both), so a batch of blocks of any sizes is one call. Metrics, from
torchmetrics over the non-ignored points: point accuracy, mean class accuracy (recall averaged
over the classes in the truth: :func:`mean_class_accuracy`), per-class IoU and their mean over
the classes present (``val/miou`` picks ``best.ckpt``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from visrep.data.base import DataSpec
from visrep.data.samples import META, POINT_LABELS, POINTS
from visrep.errors import ConfigError, ShapeError
from visrep.models.pointcloud import POINT_NETS, PointNetFactory, pointnet_seg
from visrep.plots.pointcloud import plot_point_segmentations
from visrep.plots.segmentation import plot_class_iou
from visrep.runs import RunDir
from visrep.tasks.base import Task, mean_class_accuracy, write_confusion_matrix
from visrep.tasks.optim import OptimConfig

__all__ = ["PointSegmentationTask", "mean_class_accuracy", "point_cross_entropy"]

Batch = dict[str, Any]
PREVIEW_CLOUDS = 4  # test clouds (files) drawn with truth and prediction
PREVIEW_POINTS = 100_000  # points kept per drawn cloud


def point_cross_entropy(
    logits: Tensor,
    labels: Sequence[Tensor] | Tensor,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Mean per-point cross-entropy of a batch of clouds (weighted by class, ignored points out).

    Args:
        logits: ``(B, N, K)`` stacked or ``(M, K)`` packed (cloud after cloud) scores.
        labels: the clouds' ``(N_i,)`` labels (a list, or ``(B, N)``), in the same order.
        weight: ``(K,)`` class weights, or None.
        ignore_index: the label of points that count in no loss, or None.

    Returns:
        ``()``: ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over every point of every cloud; 0 (with
        a gradient) when every point is ignored.

    Shape:
        ``(B, N, K)`` or ``(M, K)`` with ``M = sum N_i`` -> ``()``.
    """
    y = labels.reshape(-1) if isinstance(labels, Tensor) else torch.cat(list(labels))
    x = logits.reshape(-1, logits.shape[-1])
    if len(x) != len(y):
        raise ShapeError(f"point_cross_entropy: {len(x)} points of logits for {len(y)} labels")
    ignore = -100 if ignore_index is None else ignore_index
    if not bool((y != ignore).any()):
        return x.sum() * 0.0
    return F.cross_entropy(x.float(), y.to(x.device), weight=weight, ignore_index=ignore)


def _prediction_names(files: list[str]) -> dict[str, str]:
    """A distinct name per source file: its path below the folder the files share, without its
    suffix (with it, dots as ``_``, where two files differ only by suffix); ``cloud`` for none.

    >>> _prediction_names(["d/train/1.bin", "d/test/1.bin", "d/test/2.bin"])
    {'d/train/1.bin': 'train/1', 'd/test/1.bin': 'test/1', 'd/test/2.bin': 'test/2'}
    """
    paths = {f: Path(f) for f in files if f}
    try:
        common = os.path.commonpath([str(p.parent) for p in paths.values()]) if paths else ""
    except ValueError:  # absolute and relative paths mixed
        common = ""
    rel = {}
    for f, p in paths.items():
        r = p.relative_to(common) if common else p
        rel[f] = Path(*[x for x in r.parts if x != r.anchor])
    out = {f: str(r.parent / r.name.split(".")[0]) for f, r in rel.items()}
    if len(set(out.values())) < len(out):
        out = {f: str(r).replace(".", "_") for f, r in rel.items()}
    out = {f: n.replace("..", "__") for f, n in out.items()}
    return {f: out.get(f) or "cloud" for f in files}


class PointSegmentationTask(Task):
    """Trains a dense point-cloud network (PointNet's segmentation net by default) to label
    every point.

    Args:
        net: a registered point-cloud network with per-point outputs and its options
            (``--model.net pointnet_seg --model.net.feature_transform false``); the data decides
            the point dimension and the classes.
        class_weights: weight the cross-entropy with the data's class weights (median-frequency
            balancing over the training points) when the data module gives them.
        optim: optimiser and schedule.
    """

    monitor = ("val/miou", "max")
    families = ("pointcloud_segmentation",)
    input_key = POINTS

    def __init__(
        self,
        net: PointNetFactory = pointnet_seg,
        class_weights: bool = True,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        self.net_spec = POINT_NETS.spec(net)
        if not POINT_NETS.resolve(self.net_spec["class_path"]).dense:
            raise ConfigError(
                f"model.net {self.net_spec['class_path']!r} gives one output per cloud: "
                "PointSegmentationTask needs per-point outputs (pointnet_seg)"
            )
        self.save_hyperparameters()
        self.hparams["net"] = self.net_spec

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if not spec.point_dim or not spec.num_classes:
            raise ConfigError("PointSegmentationTask needs the data's point dimension and classes")
        self.net = POINT_NETS.build(self.net_spec, spec.point_dim, spec.num_classes)
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
                self, f"{stage}_acc", MulticlassAccuracy(n, average="micro", ignore_index=ignore)
            )
        self.test_confmat = MulticlassConfusionMatrix(n, ignore_index=ignore)

    def forward(self, points: Tensor | list[Tensor]) -> Tensor:
        return self.net(points)

    # -- steps -----------------------------------------------------------------------------------
    def _loss(self, logits: Tensor, labels: Sequence[Tensor]) -> Tensor:
        return point_cross_entropy(logits, labels, self.class_weight, self.spec.ignore_index)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch[POINTS], batch[POINT_LABELS]
        logits, reg = self.net.forward_with_aux(x)
        loss = self._loss(logits, y)
        n = len(x)
        if reg is not None:
            self.log("train/reg", reg, on_step=False, on_epoch=True, batch_size=n)
            loss = loss + reg
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def _eval_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        x, y = batch[POINTS], batch[POINT_LABELS]
        logits = self.net(x)
        self.log(f"{stage}/loss", self._loss(logits, y), sync_dist=True, batch_size=len(x))
        pred = logits.reshape(-1, logits.shape[-1]).argmax(-1)
        target = torch.cat(list(y)).to(pred.device)
        for name in ("iou", "acc"):
            getattr(self, f"{stage}_{name}").update(pred, target)
        return pred, target

    def _log_epoch(self, stage: str) -> Tensor:
        metric = getattr(self, f"{stage}_iou")
        iou = metric.compute()
        # the mean over the classes in the truth or the prediction (as SegmentationTask)
        cm = metric.confmat
        present = (cm.sum(0) + cm.sum(1)) > 0
        miou = iou[present].mean() if bool(present.any()) else iou.new_zeros(())
        self.log(f"{stage}/miou", miou, prog_bar=stage == "val")
        self.log(f"{stage}/point_acc", getattr(self, f"{stage}_acc").compute())
        self.log(f"{stage}/mean_class_acc", mean_class_accuracy(cm).float())
        for name in ("iou", "acc"):
            getattr(self, f"{stage}_{name}").reset()
        return torch.where(present, iou, torch.full_like(iou, float("nan")))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._clouds: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        pred, target = self._eval_step(batch, "test")
        self.test_confmat.update(pred, target)
        # the first few test files, reassembled from their blocks, for the picture
        start = 0
        metas = batch.get(META) or [{} for _ in batch[POINTS]]
        for i, (pts, meta) in enumerate(zip(batch[POINTS], metas, strict=True)):
            n = len(pts)
            name = str(meta.get("file", f"test cloud {batch_idx}.{i}"))
            if name in self._clouds or len(self._clouds) < PREVIEW_CLOUDS:
                parts = self._clouds.setdefault(name, [])
                if sum(len(p[0]) for p in parts) < PREVIEW_POINTS:
                    offset = meta.get("offset", torch.zeros(3))
                    xyz = pts[:, :3].float().cpu() + offset.float().cpu()
                    parts.append(
                        (xyz, target[start : start + n].cpu(), pred[start : start + n].cpu())
                    )
            start += n

    def on_test_epoch_end(self) -> None:
        iou = self._log_epoch("test")
        self._test_results = {
            "iou": iou.tolist(),
            "confusion_matrix": self.test_confmat.compute().tolist(),
        }
        self.test_confmat.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """Per cloud: its predicted labels ``(N_i,)``, its file and its points' indices and
        coordinates there."""
        x = batch[POINTS]
        logits = self.net(x)
        flat = logits.reshape(-1, logits.shape[-1]).argmax(-1).cpu()
        sizes = [len(p) for p in x]
        metas = batch.get(META) or [{} for _ in x]
        return {
            "point_labels": list(torch.split(flat, sizes)),
            "file": [str(m.get("file", "")) for m in metas],
            "index": [
                m.get("index", torch.arange(s)).cpu() for m, s in zip(metas, sizes, strict=True)
            ],
            "xyz": [
                p[:, :3].float().cpu() + m.get("offset", torch.zeros(3)).float().cpu()
                for p, m in zip(x, metas, strict=True)
            ],
        }

    # -- what the trainer calls ------------------------------------------------------------------
    def _names(self) -> list[str]:
        return list(self.spec.class_names) or [str(c) for c in range(self.spec.num_classes)]

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: per-class IoU (bars and ``test/iou_per_class``), the confusion matrix
        (CSV and plot; rows: true class, over non-ignored points) and up to four test clouds
        coloured by truth and by prediction (``plots/test_segmentations.png``)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = self._names()
        write_confusion_matrix(run, names, results["confusion_matrix"])
        plot_class_iou(results["iou"], names, run.plots / "class_iou.png")
        examples = []
        for name, parts in self._clouds.items():
            xyz, truth, pred = (torch.cat(t) for t in zip(*parts, strict=True))
            examples.append((xyz, truth, pred, Path(name).name))
        if examples:
            ext = examples[0][0].amax(0) - examples[0][0].amin(0)
            view = "top" if float(ext[:2].max()) > 3 * float(ext[2]) else "3d"
            plot_point_segmentations(
                examples, names, run.plots / "test_segmentations.png", self.spec.ignore_index, view
            )
        self._clouds = {}
        iou = [None if v != v else v for v in results["iou"]]  # NaN: class absent from the split
        return {"test/iou_per_class": dict(zip(names, iou, strict=True))}

    def _by_file(self, outputs: list[dict[str, Any]]) -> dict[str, list[tuple[Tensor, ...]]]:
        files: dict[str, list[tuple[Tensor, ...]]] = {}
        for out in outputs:
            for f, idx, lab, xyz in zip(
                out["file"], out["index"], out["point_labels"], out["xyz"], strict=True
            ):
                files.setdefault(f, []).append((idx, lab, xyz))
        return files

    def write_prediction_files(
        self, run: RunDir, outputs: list[dict[str, Any]], names: list[str]
    ) -> list[str]:
        """Per source file, ``predictions/<path>.npz``: ``index`` (the predicted points'
        indices in the file, sorted), ``point_labels`` (their predicted classes), ``points``
        (their x, y, z) and ``class_names`` (``visrep points show`` draws it). ``<path>`` is the
        file's path below the folder all predicted files share, without its suffix
        (``test/000001``, ``train/000001``: files of one name in two folders do not overwrite
        each other). Each sample's row names its file's ``.npz``."""
        by_file = self._by_file(outputs)
        names = _prediction_names(list(by_file))
        paths: dict[str, str] = {}
        for f, parts in by_file.items():
            idx, lab, xyz = (torch.cat(t) for t in zip(*parts, strict=True))
            order = torch.argsort(idx)
            rel = Path("predictions") / f"{names[f]}.npz"
            buf = io.BytesIO()
            np.savez(
                buf,
                index=idx[order].numpy(),
                point_labels=lab[order].numpy().astype(np.int64),
                points=xyz[order].numpy().astype(np.float32),
                class_names=np.array(self._names()),
            )
            run.write_bytes(run.root / rel, buf.getvalue())
            paths[f] = str(rel)
        return [paths[f] for out in outputs for f in out["file"]]

    def predict_rows(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per predicted cloud (block): its points and the classes predicted in it."""
        return [
            {"points": len(lab), "classes": " ".join(map(str, torch.unique(lab).tolist()))}
            for out in outputs
            for lab in out["point_labels"]
        ]
