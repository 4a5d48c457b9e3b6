"""Video classification (seed 004, "CNNs applied to videos"): cross-entropy on a clip model's
scores; at test time a video's clips are scored one by one and their softmax scores averaged
(Karpathy et al. 2014, Simonyan & Zisserman 2014: "the class scores of the clips are averaged").

The classification task of :class:`~visrep.tasks.ClassificationTask` (loss, metrics, confusion
matrix, optimisation) around a registered video network
(:data:`~visrep.models.video.VIDEO_NETS`: single frame, early / late / slow fusion, C3D, I3D,
the Table 8 embedder, two-stream, CNN + LSTM, ConvLSTM), reading the batch's ``video`` (and
``flow`` for two-stream networks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from visrep.data.base import DataSpec
from visrep.data.samples import FLOW, LABEL, VIDEO
from visrep.errors import ConfigError, DataError
from visrep.models.video import (
    VIDEO_NETS,
    VideoClassifier,
    VideoNetFactory,
    average_softmax,
    single_frame,
)
from visrep.plots.video import plot_clip_strips
from visrep.runs import RunDir
from visrep.tasks.base import mean_class_accuracy, write_confusion_matrix
from visrep.tasks.classification import ClassificationTask
from visrep.tasks.optim import OptimConfig

__all__ = ["VideoClassificationTask"]

Clip = tuple[Tensor, Tensor | None]  # (video, flow or None)


class VideoClassificationTask(ClassificationTask):
    """Trains a video network to classify clips; tests clip and video accuracy.

    A test batch whose ``video`` is ``(B, K, T, C, H, W)`` holds K clips per video (dense
    multi-clip sampling): ``test/acc`` is then the video accuracy of the averaged scores and
    ``test/clip_acc`` the accuracy of single clips (equal when K is 1).

    Args:
        net: a registered video network with its options (``--model.net c3d
            --model.net.width 0.25``, ``--model.net i3d --model.net.backbone resnet18``). The
            data decides channels, frames, frame size and classes.
        flow_scale: optical flow (pixels) is divided by this before a two-stream network reads it.
        label_smoothing, optim, top_k: as in :class:`~visrep.tasks.ClassificationTask`.
    """

    families = ("video",)
    input_key = VIDEO
    # net.embed(video) gives the clip representation (visrep embed); image attribution maps
    # do not apply to clips
    class_scores, embeds = False, True

    def __init__(
        self,
        net: VideoNetFactory = single_frame,
        flow_scale: float = 20.0,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
        top_k: int = 5,
    ) -> None:
        if flow_scale <= 0:
            raise ConfigError(f"model.flow_scale must be > 0, got {flow_scale}")
        super().__init__(label_smoothing=label_smoothing, optim=optim, top_k=top_k)
        self.net_spec = VIDEO_NETS.spec(net)
        self.hparams.pop("backbone", None)  # the image backbone of the parent: not used here
        self.hparams["net"] = self.net_spec
        self.hparams["flow_scale"] = flow_scale
        self.uses_flow = bool(
            getattr(VIDEO_NETS.resolve(self.net_spec["class_path"]), "uses_flow", False)
        )

    def build(self, spec: DataSpec) -> None:
        super().build(spec)
        self.test_clip_acc = MulticlassAccuracy(spec.num_classes, average="micro")

    def build_net(self, spec: DataSpec) -> VideoClassifier:
        if not spec.num_frames or not spec.num_classes or not spec.in_chans or not spec.image_size:
            raise ConfigError(
                "VideoClassificationTask needs the data's frames, channels, frame size and classes"
            )
        if self.uses_flow and FLOW not in spec.keys:
            raise ConfigError(
                f"model.net {self.net_spec['class_path']!r} reads optical flow, but the data "
                f"gives {', '.join(spec.keys)}: set --data.flow true"
            )
        net = VIDEO_NETS.build(
            self.net_spec, spec.in_chans, spec.num_classes, spec.num_frames, spec.image_size
        )
        return VideoClassifier(net, spec.mean, spec.std, flow_scale=self.hparams.flow_scale)

    # -- inputs and scores -----------------------------------------------------------------------
    def batch_input(self, batch: dict[str, Any]) -> Clip:
        flow = batch.get(FLOW) if self.uses_flow else None
        if self.uses_flow and flow is None:
            raise DataError("the batch has no 'flow' for the two-stream network")
        return batch[VIDEO], flow

    def net_logits(self, x: Clip) -> Tensor:
        video, flow = x
        if video.dim() not in (5, 6):
            raise DataError(
                f"video batches are (B, T, C, H, W) or (B, K, T, C, H, W), got {tuple(video.shape)}"
            )
        logits = self.net(video, flow)  # (B, classes), or (B, K, classes) for K clips a video
        clips = logits if logits.dim() == 3 else logits[:, None]
        self._clip_logits = None if self.training else clips
        return average_softmax(clips, dim=1) if logits.dim() == 3 else logits

    def sample_images(self, x: Clip, k: int) -> Tensor:
        """The first ``k`` clips ``(k, T, C, H, W)`` (a video's first clip when it has several)."""
        video = x[0][:k]
        return video[:, 0] if video.dim() == 6 else video

    # -- test ------------------------------------------------------------------------------------
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._clip_logits = None
        super().test_step(batch, batch_idx)
        y, clips = batch[LABEL], self._clip_logits  # (B, K, classes), from the step above
        k = clips.shape[1]
        self.test_clip_acc(clips.flatten(0, 1), y.repeat_interleave(k))
        self.log("test/clip_acc", self.test_clip_acc, batch_size=len(y) * k)
        self.log("test/clips_per_video", float(k), batch_size=len(y))

    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the confusion matrix (CSV and plot), per-class and mean-class accuracy,
        and the test clips as frame strips with their predicted and true classes
        (``plots/test_predictions.png``)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = list(self.spec.class_names)
        write_confusion_matrix(run, names, results["confusion_matrix"])
        clips, targets, probs = results["samples"]
        pred = probs.argmax(-1)
        titles = [
            f"pred {names[p]} ({probs[i, p]:.2f}) / true {names[t]}"
            for i, (p, t) in enumerate(zip(pred.tolist(), targets.tolist(), strict=True))
        ]
        n = min(len(clips), 12)
        correct = (pred == targets).tolist()[:n]
        plot_clip_strips(clips[:n], titles[:n], run.plots / "test_predictions.png", correct=correct)
        return {
            "test/acc_per_class": dict(zip(names, results["per_class_acc"], strict=True)),
            "test/acc_mean_class": float(
                mean_class_accuracy(torch.tensor(results["confusion_matrix"]))
            ),
        }
