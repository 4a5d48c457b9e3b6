"""Sequence labelling of clips with per-frame neural features and a temporal head (seed 003):
softmax per frame, a linear-chain CRF, a hidden CRF or a latent-dynamic CRF.

A per-frame encoder (any registered 2D backbone, through the video nets'
:func:`~visrep.models.video.build_2d`) reads frame ``t`` alone (``single``), frames ``t - 1`` and
``t`` stacked on the channels (``pair``) or their difference (``diff``), so a frame's features
see its local motion; a linear layer maps the features ``(B, T, D)`` to per-frame scores, and
the head turns them into a loss and a decoding. Trained end to end, the CRF heads are
conditional neural fields (Peng, Bo and Xu 2009; seed 003's "latent-dynamic conditional neural
fields"):

- ``softmax``: independent per-frame classes, cross-entropy per frame;
- ``chain_crf``: a linear-chain CRF over the per-frame labels (Lafferty et al. 2001), NLL of
  the labelled path, Viterbi decoding (:class:`~visrep.models.layers.ChainCRF`);
- ``hcrf``: a hidden CRF (Quattoni et al. 2007): one gesture per clip explained by latent part
  states, ``-log p(y | x)`` (:class:`~visrep.models.layers.HiddenCRF`); it labels the clip, not
  its frames;
- ``ldcrf``: a latent-dynamic CRF (Morency et al. 2007, Eq. 1): per-frame labels, each owning
  ``hidden_per_label`` hidden states, decoded from the summed hidden-state marginals
  (:class:`~visrep.models.layers.LatentDynamicCRF`).

Per-frame classes are ``G + 1``: background (0) and the ``G`` clip classes of the data spec
(:func:`~visrep.data.video.gesture.frame_class_names`). Metrics: ``frame_acc`` (per-frame
accuracy over the ``G + 1`` classes; not for ``hcrf``, which has no per-frame output; most
frames are background, so it rewards predicting background), with, on val and test,
``frame_acc_gesture`` (accuracy on the frames whose true class is a gesture) and
``frame_acc_mean_class`` (the mean over the frame classes of their recall,
:func:`frame_class_scores`), and ``seq_acc`` (the clip's gesture: the HCRF's ``argmax_y p(y | x)``; for the frame-wise heads the
majority gesture over the frames predicted non-background, :func:`majority_gesture`, a clip
predicted all background counting as wrong). ``val/seq_acc`` selects the best checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from visrep.data.base import DataSpec
from visrep.data.samples import FRAME_LABELS, LABEL, VIDEO
from visrep.data.video.gesture import frame_class_names
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.layers import ChainCRF, HiddenCRF, LatentDynamicCRF, Normalize
from visrep.models.pretrained import load_matching, read_backbone_state
from visrep.models.registry import BACKBONES
from visrep.models.video import build_2d
from visrep.plots.video import plot_clip_strips
from visrep.runs import RunDir
from visrep.tasks.base import Task, mean_class_accuracy, write_confusion_matrix
from visrep.tasks.optim import OptimConfig

__all__ = [
    "FRAME_INPUTS",
    "HEADS",
    "FrameSequenceNet",
    "SequenceLabelingTask",
    "frame_accuracy",
    "frame_class_scores",
    "frame_confusion",
    "frame_inputs",
    "majority_gesture",
    "sequence_accuracy",
]

FrameInput = Literal["single", "pair", "diff"]
Head = Literal["softmax", "chain_crf", "hcrf", "ldcrf"]
FRAME_INPUTS: tuple[str, ...] = ("single", "pair", "diff")
HEADS: tuple[str, ...] = ("softmax", "chain_crf", "hcrf", "ldcrf")
Batch = dict[str, Any]


# -- functions ------------------------------------------------------------------------------------
def frame_inputs(video: Tensor, mode: FrameInput) -> Tensor:
    """What the per-frame encoder reads at each frame: frame ``t`` (``single``), frames
    ``t - 1`` and ``t`` stacked on the channels (``pair``), or ``x_t - x_{t-1}`` (``diff``).
    Frame 0 has no predecessor: it is paired with itself (its difference is 0).

    Shape: ``(B, T, C, H, W) -> (B, T, C', H, W)``, ``C' = 2C`` for ``pair``, else ``C``.

    >>> v = torch.arange(3.0).view(1, 3, 1, 1, 1)
    >>> frame_inputs(v, "pair")[0, :, :, 0, 0].tolist()
    [[0.0, 0.0], [0.0, 1.0], [1.0, 2.0]]
    >>> frame_inputs(v, "diff").flatten().tolist()
    [0.0, 1.0, 1.0]
    """
    if video.dim() != 5:
        raise ShapeError(f"frame_inputs: video must be (B, T, C, H, W), got {tuple(video.shape)}")
    if mode == "single":
        return video
    prev = torch.cat((video[:, :1], video[:, :-1]), dim=1)
    if mode == "pair":
        return torch.cat((prev, video), dim=2)
    if mode == "diff":
        return video - prev
    raise ConfigError(f"model.frame_input must be one of {list(FRAME_INPUTS)}, got {mode!r}")


def majority_gesture(frame_pred: Tensor, num_gestures: int) -> Tensor:
    """The gesture of a clip from its per-frame classes (0 background, ``g + 1`` gesture ``g``):
    the gesture predicted on most non-background frames (ties: the lowest id); ``-1`` when
    every frame is predicted background.

    Shape: ``(B, T) -> (B,)`` long; entries ``-1`` (padding) are ignored.

    >>> majority_gesture(torch.tensor([[0, 2, 2, 1, 0], [0, 0, 0, 0, 0]]), 2).tolist()
    [1, -1]
    """
    if frame_pred.dim() != 2:
        raise ShapeError(
            f"majority_gesture: expected (B, T) classes, got {tuple(frame_pred.shape)}"
        )
    valid = frame_pred > 0
    onehot = F.one_hot(frame_pred.clamp(0, num_gestures), num_gestures + 1)[..., 1:]
    counts = (onehot * valid[..., None]).sum(1)  # (B, G)
    return torch.where(counts.sum(-1) > 0, counts.argmax(-1), -1)


def frame_accuracy(frame_pred: Tensor, frame_labels: Tensor) -> Tensor:
    """Fraction of frames whose class is right, over all frames of the batch ``(B, T)``.

    >>> frame_accuracy(torch.tensor([[0, 1, 1, 0]]), torch.tensor([[0, 1, 2, 0]])).item()
    0.75
    """
    if frame_pred.shape != frame_labels.shape:
        raise ShapeError(
            f"frame_accuracy: predictions {tuple(frame_pred.shape)} and labels "
            f"{tuple(frame_labels.shape)} differ"
        )
    return (frame_pred == frame_labels).double().mean()


def frame_confusion(frame_pred: Tensor, frame_labels: Tensor, num_classes: int) -> Tensor:
    """Frame counts by (true, predicted) class, ``(K, K)`` long (rows true). Frames labelled
    outside ``[0, K)`` (padding ``-1``) are ignored; a prediction outside it is a ShapeError.

    >>> frame_confusion(torch.tensor([[0, 1, 1, 0]]), torch.tensor([[0, 1, 2, -1]]), 3).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    """
    if frame_pred.shape != frame_labels.shape:
        raise ShapeError(
            f"frame_confusion: predictions {tuple(frame_pred.shape)} and labels "
            f"{tuple(frame_labels.shape)} differ"
        )
    y, p = frame_labels.flatten().long(), frame_pred.flatten().long()
    keep = (y >= 0) & (y < num_classes)
    y, p = y[keep], p[keep]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ShapeError(f"frame_confusion: predicted classes must lie in [0, {num_classes})")
    cm = torch.bincount(y * num_classes + p, minlength=num_classes**2)
    return cm.view(num_classes, num_classes)


def frame_class_scores(confusion: Tensor) -> tuple[float, float]:
    """``(frame_acc_gesture, frame_acc_mean_class)`` of a frame confusion matrix ``(K, K)``
    (rows true, columns predicted, class 0 background): the accuracy over the frames whose
    true class is a gesture (``> 0``), and the mean over the classes with true frames of their
    recall ``cm[c, c] / sum_j cm[c, j]`` (balanced accuracy); ``nan`` when there are no such
    frames. Unlike ``frame_acc``, neither is won by predicting background everywhere.

    >>> frame_class_scores(torch.tensor([[6, 0, 0], [1, 1, 0], [2, 0, 0]]))
    (0.25, 0.5)
    """
    cm = confusion.double()
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ShapeError(f"frame_class_scores: expected a (K, K) matrix, got {tuple(cm.shape)}")
    support = cm.sum(1)
    gesture = support[1:].sum()
    acc_gesture = (cm.diagonal()[1:].sum() / gesture).item() if gesture > 0 else float("nan")
    mean = float(mean_class_accuracy(cm)) if (support > 0).any() else float("nan")
    return acc_gesture, mean


def sequence_accuracy(seq_pred: Tensor, labels: Tensor) -> Tensor:
    """Fraction of clips whose gesture is right (a prediction of ``-1``, no gesture, is wrong).

    >>> sequence_accuracy(torch.tensor([1, -1, 0]), torch.tensor([1, 0, 0])).item()
    0.6666666666666666
    """
    if seq_pred.shape != labels.shape:
        raise ShapeError(
            f"sequence_accuracy: predictions {tuple(seq_pred.shape)} and labels "
            f"{tuple(labels.shape)} differ"
        )
    return (seq_pred == labels).double().mean()


# -- the model ------------------------------------------------------------------------------------
class FrameSequenceNet(nn.Module):
    """Per-frame encoder -> linear per-frame scores -> temporal head (see the module docstring).

    Args:
        encoder: a 2D backbone built for ``C'`` input channels (:func:`frame_inputs`) with no
            classifier (``num_classes=0``); its pooled features are the frame's features.
        mean, std: per-channel statistics of the frames (normalised before the pairing).
        num_gestures: ``G`` clip classes; the frame classes are ``G + 1``.
        frame_input: ``single``, ``pair`` or ``diff``.
        head: ``softmax``, ``chain_crf``, ``hcrf`` or ``ldcrf``.
        hidden_per_label: hidden states per label of the HCRF / LDCRF.
        hcrf_shared: the HCRF's hidden states are one set of ``hidden_per_label`` states shared
            by all gestures (Quattoni et al.'s model); False gives each gesture its own set.
        freeze_encoder: the encoder's weights take no gradient and it stays in eval mode (its
            batch-norm statistics are kept), so the head trains on fixed features.

    Shape: video ``(B, T, C, H, W)`` in [0, 1] -> scores ``(B, T, num_states)``.
    """

    def __init__(
        self,
        encoder: Backbone,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        num_gestures: int,
        frame_input: FrameInput = "pair",
        head: Head = "softmax",
        hidden_per_label: int = 3,
        hcrf_shared: bool = True,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.head must be one of {list(HEADS)}, got {head!r}")
        if frame_input not in FRAME_INPUTS:
            raise ConfigError(
                f"model.frame_input must be one of {list(FRAME_INPUTS)}, got {frame_input!r}"
            )
        if num_gestures < 1:
            raise ConfigError(f"FrameSequenceNet: num_gestures must be >= 1, got {num_gestures}")
        self.normalize = Normalize(mean, std)
        self.encoder = encoder
        self.num_gestures, self.frame_input, self.head_kind = num_gestures, frame_input, head
        self.frozen = freeze_encoder
        k = num_gestures + 1  # frame classes
        self.head: nn.Module | None
        if head == "softmax":
            self.head, states = None, k
        elif head == "chain_crf":
            self.head = ChainCRF(k)
            states = k
        elif head == "hcrf":
            self.head = HiddenCRF(num_gestures, hidden_per_label, shared=hcrf_shared)
            states = self.head.num_states
        else:
            self.head = LatentDynamicCRF(k, hidden_per_label)
            states = self.head.num_states
        self.num_states = states
        self.unary = nn.Linear(encoder.num_features, states)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()  # Lightning restores per-module modes without calling train()

    def train(self, mode: bool = True) -> FrameSequenceNet:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # keep its batch-norm statistics
        return self

    def features(self, video: Tensor) -> Tensor:
        """Per-frame features ``(B, T, D)`` of pixel-space clips ``(B, T, C, H, W)``."""
        if video.dim() != 5:
            raise ShapeError(
                f"FrameSequenceNet: video must be (B, T, C, H, W), got {tuple(video.shape)}"
            )
        b, t = video.shape[:2]
        x = self.normalize(video.flatten(0, 1)).view(video.shape)
        x = frame_inputs(x, self.frame_input).flatten(0, 1)
        z = self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True)
        return z.view(b, t, -1)

    def forward(self, video: Tensor) -> Tensor:
        """Per-frame scores ``(B, T, num_states)`` (the head's unary potentials)."""
        return self.unary(self.features(video))

    def loss(self, unary: Tensor, labels: Tensor, frame_labels: Tensor) -> Tensor:
        """The head's loss: per-frame cross-entropy (softmax); the chain CRF's and LDCRF's NLL
        divided by ``T`` (a per-frame NLL, on the cross-entropy's scale: same optimum); the
        HCRF's ``-log p(y | x)``; all averaged over the clips."""
        t = unary.shape[1]
        if self.head_kind == "softmax":
            return F.cross_entropy(unary.flatten(0, 1), frame_labels.flatten())
        if self.head_kind == "hcrf":
            return self.head(unary, labels)
        return self.head(unary, frame_labels) / t

    def decode(self, unary: Tensor) -> tuple[Tensor | None, Tensor]:
        """Per-frame classes ``(B, T)`` (None for the HCRF) and the clip gestures ``(B,)``
        (``-1``: no gesture found)."""
        if self.head_kind == "hcrf":
            return None, self.head.predict(unary)
        if self.head_kind == "softmax":
            frames = unary.argmax(-1)
        elif self.head_kind == "chain_crf":
            frames = self.head.decode(unary)[0]
        else:
            frames = self.head.decode(unary)
        return frames, majority_gesture(frames, self.num_gestures)


# -- the task -------------------------------------------------------------------------------------
class SequenceLabelingTask(Task):
    """Trains a :class:`FrameSequenceNet` on clips with per-frame labels (``frame_labels``).

    Args:
        backbone: the per-frame 2D encoder, any registered backbone with its options
            (``--model.backbone small_cnn --model.backbone.channels [16,32,64]``).
        frame_input: ``single``, ``pair`` (frames ``t - 1`` and ``t`` on the channels) or
            ``diff`` (:func:`frame_inputs`).
        head: ``softmax``, ``chain_crf``, ``hcrf`` or ``ldcrf``.
        hidden_per_label: hidden states per label (HCRF, LDCRF).
        hcrf_shared: the HCRF's hidden states are shared by all gestures (see
            :class:`FrameSequenceNet`).
        init_weights: a run directory or ``.ckpt`` of this task whose ENCODER initialises this
            one (tensors matched by name and shape), loaded at the start of a new fit only (a
            resumed run and later evaluations use their own checkpoint): with
            ``freeze_encoder`` the CRF heads train on the features a softmax run learnt.
        freeze_encoder: keep the encoder's weights and batch-norm statistics fixed; needs
            ``init_weights`` holding every encoder tensor (checked when a new fit starts).
        optim: optimiser and schedule.
    """

    monitor = ("val/seq_acc", "max")
    families = ("video",)
    input_key = VIDEO  # the batch entry the model reads

    def __init__(
        self,
        backbone: BackboneFactory = small_cnn,
        frame_input: FrameInput = "pair",
        head: Head = "softmax",
        hidden_per_label: int = 3,
        hcrf_shared: bool = True,
        init_weights: str | None = None,
        freeze_encoder: bool = False,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(optim)
        if head not in HEADS:
            raise ConfigError(f"model.head must be one of {list(HEADS)}, got {head!r}")
        if frame_input not in FRAME_INPUTS:
            raise ConfigError(
                f"model.frame_input must be one of {list(FRAME_INPUTS)}, got {frame_input!r}"
            )
        if not isinstance(hidden_per_label, int) or hidden_per_label < 1:
            raise ConfigError(f"model.hidden_per_label must be >= 1, got {hidden_per_label!r}")
        if init_weights is not None and not Path(init_weights).exists():
            raise ConfigError(f"--model.init_weights {init_weights!r} does not exist")
        self.backbone_spec = BACKBONES.spec(backbone)
        self.save_hyperparameters()
        self.hparams["backbone"] = self.backbone_spec  # plain data, whatever form was given

    # -- model -----------------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> None:
        if FRAME_LABELS not in spec.keys:
            raise ConfigError(
                f"SequenceLabelingTask needs per-frame labels ('{FRAME_LABELS}'), but the data "
                f"gives {', '.join(spec.keys)} (e.g. visrep.data.MovingDigitsGestureDataModule)"
            )
        if not spec.num_classes or not spec.in_chans or not spec.image_size or not spec.mean:
            raise ConfigError(
                "SequenceLabelingTask needs the data's classes, channels, frame size and mean/std"
            )
        hp = self.hparams
        chans = spec.in_chans * (2 if hp.frame_input == "pair" else 1)
        encoder = build_2d(
            lambda c, n, s: BACKBONES.build(self.backbone_spec, c, n, s),
            chans,
            0,
            tuple(spec.image_size),
        )
        self.net = FrameSequenceNet(
            encoder,
            spec.mean,
            spec.std,
            spec.num_classes,
            hp.frame_input,
            hp.head,
            hp.hidden_per_label,
            hp.hcrf_shared,
            hp.freeze_encoder,
        )
        self.frame_names = frame_class_names(spec.class_names)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_seq_acc", MeanMetric())
            setattr(self, f"{stage}_frame_acc", MeanMetric())
        k = spec.num_classes + 1
        for stage in ("val", "test"):  # frames by (true, predicted) class
            setattr(self, f"{stage}_frame_confmat", MulticlassConfusionMatrix(k))
        # clips by (true, predicted) gesture, 0 = "none" (no gesture found)
        self.test_confmat = MulticlassConfusionMatrix(spec.num_classes + 1)

    def on_fit_start(self) -> None:
        """``init_weights`` (the encoder) at the start of a new fit only. A frozen encoder must
        come whole from ``init_weights``: otherwise the head would train on random features.
        (Checked here, not in ``__init__``: a frozen run read back from its checkpoint has no
        ``init_weights``, its encoder being in the checkpoint.)"""
        if self.trainer.ckpt_path is not None:
            return
        path, frozen = self.hparams.get("init_weights"), self.hparams.get("freeze_encoder")
        if frozen and not path:
            raise ConfigError(
                "--model.freeze_encoder needs --model.init_weights (a gesture_softmax run)"
            )
        if not path:
            return
        state = read_backbone_state(path, prefix="net.encoder.")
        if frozen:
            own = self.net.encoder.state_dict()
            missing = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
            if missing:
                raise ConfigError(
                    f"--model.init_weights {str(path)!r}: {len(missing)} of the frozen "
                    f"encoder's {len(own)} tensors are missing or of another shape "
                    f"({', '.join(missing[:3])}, ...); a frozen encoder must be loaded whole"
                )
        load_matching(self.net.encoder, state, str(path))

    def forward(self, video: Tensor) -> Tensor:
        return self.net(video)

    # -- steps -----------------------------------------------------------------------------------
    def _batch(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        video, labels, frames = batch[VIDEO], batch[LABEL], batch.get(FRAME_LABELS)
        if frames is None:
            raise DataError(f"the batch has no '{FRAME_LABELS}' (per-frame labels)")
        if frames.shape != video.shape[:2]:
            raise ShapeError(
                f"'{FRAME_LABELS}' has shape {tuple(frames.shape)}, expected (B, T) = "
                f"{tuple(video.shape[:2])} as the video's"
            )
        return video, labels, frames

    def _step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor | None, Tensor]:
        video, labels, frames = self._batch(batch)
        unary = self.net(video)
        loss = self.net.loss(unary, labels, frames)
        n = len(labels)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        with torch.no_grad():
            frame_pred, seq_pred = self.net.decode(unary.detach())
        seq = getattr(self, f"{stage}_seq_acc")
        seq.update((seq_pred == labels).float())
        self.log(f"{stage}/seq_acc", seq, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        if frame_pred is not None:
            acc = getattr(self, f"{stage}_frame_acc")
            acc.update((frame_pred == frames).float().flatten())
            self.log(f"{stage}/frame_acc", acc, on_step=False, on_epoch=True, batch_size=n)
            if stage != "train":
                confmat = getattr(self, f"{stage}_frame_confmat")
                confmat.update(frame_pred.flatten(), frames.flatten())
        return loss, frame_pred, seq_pred

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def _log_frame_class_scores(self, stage: str) -> None:
        """``{stage}/frame_acc_gesture`` and ``{stage}/frame_acc_mean_class`` of the epoch's
        frames (:func:`frame_class_scores`); nothing for a head without per-frame output."""
        confmat = getattr(self, f"{stage}_frame_confmat", None)
        if confmat is None or not confmat.update_called:
            return
        cm = confmat.compute()
        confmat.reset()
        gesture, mean_class = frame_class_scores(cm)
        self.log(f"{stage}/frame_acc_gesture", gesture)
        self.log(f"{stage}/frame_acc_mean_class", mean_class)

    def on_validation_epoch_end(self) -> None:
        self._log_frame_class_scores("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, ...]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, frame_pred, seq_pred = self._step(batch, "test")
        video, labels, frames = self._batch(batch)
        self.test_confmat.update(seq_pred + 1, labels + 1)
        k = 8 - sum(len(s[0]) for s in self._samples)
        if k > 0:
            fp = frame_pred[:k] if frame_pred is not None else torch.full_like(frames[:k], -1)
            self._samples.append(
                tuple(t.cpu() for t in (video[:k], labels[:k], frames[:k], seq_pred[:k], fp))
            )

    def on_test_epoch_end(self) -> None:
        self._log_frame_class_scores("test")
        self._test_results = {
            "confusion_matrix": self.test_confmat.compute().tolist(),
            "samples": tuple(torch.cat(t) for t in zip(*self._samples, strict=True)),
        }
        self.test_confmat.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        frame_pred, seq_pred = self.net.decode(self.net(batch[VIDEO]))
        out = {"pred": seq_pred}
        if frame_pred is not None:
            out["frames"] = frame_pred
        return out

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """``class,class_index,frames`` per clip (``frames``: the per-frame classes as a strip,
        ``.`` background, ``g + 1`` gesture ``g``; empty for the HCRF)."""
        names = list(self.spec.class_names) if self.spec else []
        rows = []
        for out in outputs:
            frames = out.get("frames")
            for i, c in enumerate(out["pred"].tolist()):
                name = "none" if c < 0 else (names[c] if c < len(names) else str(c))
                strip = _strip(frames[i]) if frames is not None else ""
                rows.append({"class": name, "class_index": c, "frames": strip})
        return rows

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the clip confusion matrix over ``none`` + the gestures (CSV and plot) and
        ``plots/test_predictions.png``: test clips with their true and predicted per-frame
        classes as strips (``.`` background, ``g + 1`` gesture ``g``)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        names = list(self.spec.class_names)
        cm = results["confusion_matrix"]
        write_confusion_matrix(run, ["none", *names], cm)
        video, labels, frames, seq_pred, frame_pred = results["samples"]
        titles = []
        for i in range(len(labels)):
            p = int(seq_pred[i])
            head = f"true {names[int(labels[i])]} / pred {names[p] if p >= 0 else 'none'}"
            line = f"true  {_strip(frames[i])}"
            if int(frame_pred[i, 0]) >= 0:
                line += f"\npred  {_strip(frame_pred[i])}"
            titles.append(f"{head}\n{line}")
        correct = (seq_pred == labels).tolist()
        plot_clip_strips(video, titles, run.plots / "test_predictions.png", correct=correct)
        rows = torch.tensor(cm, dtype=torch.float64)[1:]  # true gestures (none is never true)
        per_class = (rows[:, 1:].diagonal() / rows.sum(1).clamp(min=1)).tolist()
        return {"test/seq_acc_per_class": dict(zip(names, per_class, strict=True))}


def _strip(frames: Tensor) -> str:
    """Per-frame classes as one character each: ``.`` background, ``1..9`` then ``a..z``."""
    chars = ".123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(chars[c] if 0 <= c < len(chars) else "?" for c in frames.tolist())
