"""One-shot (semi-supervised) video object segmentation: ReConvNet, the OSMN-style ablation and
OSVOS, trained on episodes and evaluated on whole held-out sequences with DAVIS's J and F.

Training (each video a task, seed 000): an episode's first frame and mask condition the network
(:class:`~visrep.models.vos.VosNet`), and the loss is OSVOS's class-balanced binary cross-entropy
(Caelles et al. 2017, Eq. 1: positives weighted by the fraction of negatives and vice versa) on
the frames after the first; the OSVOS parent network, which has no conditioning, learns
foreground on every frame. Evaluation (one sequence per batch): every object of the first frame
is segmented (objects are the batch: one pass for all of them), each object's probabilities are
upsampled to the annotation's full resolution, and a pixel takes the object of highest
probability when it is above 0.5 (OSMN's multi-object rule); frame 0 is the given annotation.
OSVOS is first fine-tuned on frame 0 of the sequence (``finetune_steps`` Adam steps on a copy of
the parent, per object), and its time counts in its milliseconds per frame. J and F follow the
official DAVIS evaluation (:mod:`visrep.tasks.vos_metrics`); copy-the-first-mask is scored on
every test sequence beside the method, as the floor any method must clear.
"""

from __future__ import annotations

import copy
import csv
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.data.base import DataSpec
from visrep.data.samples import META, VIDEO
from visrep.data.vos import OBJECT_MASKS
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import BackboneFactory
from visrep.models.registry import BACKBONES
from visrep.models.vos import METHODS, ModulatedSegmenter, SpatialModulator, VisualModulator, VosNet
from visrep.plots.segmentation import overlay_objects
from visrep.plots.video import plot_clip_strips
from visrep.runs import RunDir
from visrep.tasks.base import Task
from visrep.tasks.optim import OptimConfig
from visrep.tasks.vos_metrics import SequenceScores, aggregate_scores, evaluate_sequence

__all__ = ["VideoObjectSegmentationTask", "balanced_bce", "combine_objects"]
Batch = dict[str, Any]


def balanced_bce(logits: Tensor, target: Tensor) -> Tensor:
    """OSVOS's class-balanced cross-entropy (Caelles et al. 2017, Eq. 1), per frame:
    ``-beta sum_{Y+} log p - (1 - beta) sum_{Y-} log(1 - p)`` with ``beta = |Y-| / |Y|``, divided
    by the pixel count and averaged over the frames.

    Shape: ``(N, H, W)`` logits and 0/1 targets -> scalar.

    >>> round(balanced_bce(torch.zeros(1, 2, 2), torch.tensor([[[1, 0], [0, 0]]])).item(), 4)
    0.2599
    """
    if logits.shape != target.shape:
        raise ShapeError(
            f"balanced_bce: logits {tuple(logits.shape)} vs target {tuple(target.shape)}"
        )
    y = target.float().flatten(1)
    z = logits.float().flatten(1)
    beta = 1 - y.mean(1, keepdim=True)  # fraction of negatives
    w = torch.where(y > 0, beta, 1 - beta)
    return (F.binary_cross_entropy_with_logits(z, y, weight=w, reduction="none")).mean()


def combine_objects(probs: Tensor, ids: Tensor) -> Tensor:
    """Object ids per pixel from per-object probabilities: the most probable object where its
    probability exceeds 0.5, else background (0).

    Shape: ``probs (O, T, H, W)``, ``ids (O,)`` -> ``(T, H, W)`` int64.

    >>> p = torch.tensor([[[[0.9, 0.2]]], [[[0.6, 0.4]]]])
    >>> combine_objects(p, torch.tensor([3, 5])).tolist()
    [[[3, 0]]]
    """
    best, arg = probs.max(0)
    return torch.where(best > 0.5, ids.to(probs.device)[arg], 0)


class VideoObjectSegmentationTask(Task):
    """ReConvNet, OSMN-style or OSVOS on :class:`~visrep.data.DavisVosDataModule` data.

    Args:
        method: ``reconvnet``, ``osmn`` or ``osvos`` (:class:`~visrep.models.vos.VosNet`).
        channels: the segmentation network's stage widths.
        recurrent_stages: ReConvNet's ConvLSTM stages (indices into ``channels``; empty for the
            others).
        modulator: the visual modulator's backbone (any registered 2D backbone).
        crop_size: the visual modulator's object crop, pixels.
        spatial_scale, spatial_jitter: the spatial prior's width and training perturbation.
        teacher_forcing: in training, the spatial prior of frame ``t`` is the TRUE mask of
            ``t - 1`` (OSMN); False: the network's own previous prediction, as at test time.
        finetune_steps, finetune_lr: OSVOS's per-sequence fine-tuning on frame 0 (Adam).
        optim: optimiser and schedule.
    """

    monitor = ("val/jf_mean", "max")
    families = ("vos",)

    def __init__(
        self,
        method: str = "reconvnet",
        channels: tuple[int, ...] = (16, 32, 64, 128),
        recurrent_stages: tuple[int, ...] = (2, 3),
        modulator: BackboneFactory = small_cnn,
        crop_size: int = 64,
        spatial_scale: float = 1.0,
        spatial_jitter: float = 0.1,
        teacher_forcing: bool = True,
        finetune_steps: int = 50,
        finetune_lr: float = 1e-3,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if method not in METHODS:
            raise ConfigError(f"model.method must be one of {list(METHODS)}, got {method!r}")
        if finetune_steps < 0:
            raise ConfigError(f"model.finetune_steps must be >= 0, got {finetune_steps}")
        self.modulator_spec = BACKBONES.spec(modulator)
        self.save_hyperparameters()
        self.hparams["modulator"] = self.modulator_spec

    def build(self, spec: DataSpec) -> None:
        if OBJECT_MASKS not in spec.keys or not spec.image_size or not spec.mean:
            raise ConfigError(
                f"VideoObjectSegmentationTask needs clips with '{OBJECT_MASKS}', a frame size and "
                f"mean/std (visrep.data.DavisVosDataModule), got {', '.join(spec.keys)}"
            )
        hp = self.hparams
        rec = tuple(hp.recurrent_stages) if hp.method == "reconvnet" else ()
        seg = ModulatedSegmenter(tuple(hp.channels), rec)
        visual = spatial = None
        if hp.method != "osvos":
            s = int(hp.crop_size)
            encoder = BACKBONES.build(self.modulator_spec, 3, 0, (s, s))
            visual = VisualModulator(encoder, seg.modulated_channels, s)
            spatial = SpatialModulator(seg.modulated_channels, hp.spatial_scale, hp.spatial_jitter)
        self.net = VosNet(hp.method, seg, visual, spatial, spec.mean, spec.std)

    def forward(self, batch: Batch) -> Tensor:
        """Logits ``(B, T, h, w)`` of a batch's clips, conditioned on their first frame's
        foreground (every object together; :class:`VosNet`)."""
        video, masks = self._clip(batch)
        first = (masks[:, 0] > 0).float()[:, None]
        first = F.interpolate(first, size=video.shape[-2:], mode="area")[:, 0] >= 0.5
        return self.net(video, first.float())

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """One whole sequence: its frame count, object count and J&F-free summary (the masks
        themselves are what ``visrep test`` scores)."""
        pred, _, ms, _ = self._segment(batch)
        objects = int((pred.unique() > 0).sum())
        return {
            "frames": torch.tensor([len(pred)]),
            "objects": torch.tensor([objects]),
            "ms_per_frame": torch.tensor([ms]),
        }

    # -- training ----------------------------------------------------------------------------------
    def _clip(self, batch: Batch) -> tuple[Tensor, Tensor]:
        video, masks = batch[VIDEO], batch.get(OBJECT_MASKS)
        if masks is None:
            raise DataError(f"the batch has no '{OBJECT_MASKS}'")
        if video.dim() != 5 or masks.shape[:2] != video.shape[:2]:
            raise ShapeError(
                f"VOS batch: video (B, T, 3, H, W) and {OBJECT_MASKS} (B, T, H', W') expected, "
                f"got {tuple(video.shape)} and {tuple(masks.shape)}"
            )
        return video, masks

    def _parent_logits(self, video: Tensor) -> Tensor:
        """OSVOS: every frame on its own, ``(B, T, H, W)``."""
        frames = self.net.normalize(video.flatten(0, 1))
        return self.net.segmenter.step(frames)[0][:, 0].view(video.shape[:2] + video.shape[-2:])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        video, masks = self._clip(batch)
        target = (masks > 0).long()
        if self.hparams.method == "osvos":
            loss = balanced_bce(self._parent_logits(video).flatten(0, 1), target.flatten(0, 1))
        else:
            forced = target if self.hparams.teacher_forcing else None
            logits = self.net(video, target[:, 0], forced)
            loss = balanced_bce(logits[:, 1:].flatten(0, 1), target[:, 1:].flatten(0, 1))
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(video)
        )
        return loss

    # -- evaluation --------------------------------------------------------------------------------
    def _finetuned(self, video: Tensor, first: Tensor) -> Tensor:
        """OSVOS: a copy of the parent fine-tuned on frame 0 of each object, then every frame;
        logits ``(O, T, h, w)``."""
        out = []
        for o in range(len(first)):  # one fine-tuned network per object
            seg = copy.deepcopy(self.net.segmenter).train()
            opt = torch.optim.Adam(seg.parameters(), lr=self.hparams.finetune_lr)
            x0 = self.net.normalize(video[0, :1]).clone()
            y0 = first[o : o + 1].clone()
            for step in range(self.hparams.finetune_steps):
                flip = step % 2 == 1  # the paper's augmentation, mirrored every other step
                x, y = (x0.flip(-1), y0.flip(-1)) if flip else (x0, y0)
                loss = balanced_bce(seg.step(x)[0][:, 0], y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            seg.eval()
            with torch.no_grad():
                frames = self.net.normalize(video[0])
                out.append(seg.step(frames)[0][:, 0])
        return torch.stack(out)

    def _segment(self, batch: Batch) -> tuple[Tensor, Tensor, float, str]:
        """One sequence -> predicted ids at full resolution ``(T, H, W)``, the truth, ms per
        frame, and the sequence's name."""
        video, gt = self._clip(batch)
        if len(video) != 1:
            raise ShapeError(f"VOS evaluation takes one sequence per batch, got {len(video)}")
        gt = gt[0].long()
        name = batch[META][0]["sequence"] if META in batch else "?"
        ids = gt[0].unique()
        ids = ids[ids > 0]
        if not len(ids):
            raise DataError(f"sequence {name!r}: the first frame's annotation has no object")
        h, w = video.shape[-2:]
        first = (gt[0][None] == ids[:, None, None]).float()  # (O, H, W)
        first = F.interpolate(first[:, None], size=(h, w), mode="area")[:, 0]
        first = (first >= 0.5).float()
        start = time.perf_counter()
        if self.hparams.method == "osvos":
            with torch.inference_mode(False), torch.enable_grad():
                logits = self._finetuned(video.clone(), first.clone())
        else:
            clip = video.expand(len(ids), *video.shape[1:])
            logits = self.net(clip, first)
        probs = torch.sigmoid(F.interpolate(logits, size=gt.shape[-2:], mode="bilinear"))
        pred = combine_objects(probs, ids)
        pred[0] = gt[0]
        ms = (time.perf_counter() - start) * 1000 / len(gt)
        return pred, gt, ms, name

    def on_validation_epoch_start(self) -> None:
        self._scores: list[tuple[str, str, float, SequenceScores]] = []

    def on_test_epoch_start(self) -> None:
        self._scores = []
        self._strips: list[tuple[str, Tensor, Tensor]] = []

    def _eval_step(self, batch: Batch, stage: str) -> None:
        pred, gt, ms, name = self._segment(batch)
        gt = gt.cpu()
        self._scores.append((name, self.hparams.method, ms, evaluate_sequence(pred.cpu(), gt)))
        if stage == "test" and len(self._strips) < 3:  # a few sequences for the report
            video = batch[VIDEO][0].cpu()
            small = [
                F.interpolate(m[:, None].float(), size=video.shape[-2:], mode="nearest")[
                    :, 0
                ].long()
                for m in (pred.cpu(), gt)
            ]
            self._strips.append(
                (name, overlay_objects(video, small[0]), overlay_objects(video, small[1]))
            )
        if stage == "test":  # the floor: the first mask copied to every frame
            copied = evaluate_sequence(gt[:1].expand_as(gt), gt)
            self._scores.append((name, "copy_first", 0.0, copied))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_scores(self, stage: str) -> None:
        """``{stage}/jf_mean``, ``j_mean`` ... (the official global scores over all objects of
        all sequences) and ``ms_per_frame``; copy-first's under ``{stage}/copy_first/``."""
        scores = getattr(self, "_scores", [])
        for method in sorted({m for _, m, _, _ in scores}):
            mine = [(ms, sc) for _, m, ms, sc in scores if m == method]
            prefix = f"{stage}/" if method == self.hparams.method else f"{stage}/{method}/"
            for k, v in aggregate_scores(sc for _, sc in mine).items():
                self.log(prefix + k, v)
            self.log(prefix + "ms_per_frame", sum(ms for ms, _ in mine) / len(mine))

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")
        self._test_rows = [
            {
                "sequence": name,
                "method": method,
                "object": int(obj),
                **{f"j_{k}": float(v[i]) for k, v in sc.j_stats.items()},
                **{f"f_{k}": float(v[i]) for k, v in sc.f_stats.items()},
                "jf_mean": float(sc.jf_mean[i]),
                "ms_per_frame": ms,
            }
            for name, method, ms, sc in self._scores
            for i, obj in enumerate(sc.object_ids.tolist())
        ]

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: ``vos_per_sequence.csv`` (one row per sequence, object and method: J and F
        mean / recall / decay, J&F, ms per frame), the same rows in ``metrics.json``, and
        ``plots/test_predictions.png``: the first test sequences' frames with the predicted and
        the true objects tinted."""
        rows = getattr(self, "_test_rows", None)
        if stage != "test" or not rows:
            return {}
        self._test_rows = None
        strips = getattr(self, "_strips", [])
        if strips:
            t = min(len(p) for _, p, _ in strips)
            clips = torch.stack([c[:t] for _, p, g in strips for c in (p, g)])
            titles = [f"{name}\n{kind}" for name, _, _ in strips for kind in ("predicted", "truth")]
            plot_clip_strips(clips, titles, run.plots / "test_predictions.png")
        path = run.root / "vos_per_sequence.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return {"test/per_sequence": rows}
