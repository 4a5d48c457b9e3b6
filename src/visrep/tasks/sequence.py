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

Two kinds of data. GESTURES (the data gives a clip label, ``label``, as
:class:`~visrep.data.MovingDigitsGestureDataModule`): the per-frame classes are ``G + 1``,
background (0) and the ``G`` clip classes of the data spec
(:func:`~visrep.data.video.gesture.frame_class_names`). STRINGS (no clip label, as
:class:`~visrep.data.DigitStringsDataModule`): the frame classes are the spec's ``K`` classes,
with no background; ``seq_acc`` is the fraction of strings with every frame right, the
``frame_acc_gesture`` metric and the HCRF (which labels whole clips) do not apply, and the test
confusion matrix is over frames. For gestures, the metrics are: ``frame_acc`` (per-frame
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
from visrep.tasks.base import Task, write_confusion_matrix
from visrep.tasks.optim import OptimConfig
from visrep.tasks.sequence_metrics import (
    frame_accuracy,
    frame_class_scores,
    frame_confusion,
    majority_gesture,
    sequence_accuracy,
)

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


# -- the model ------------------------------------------------------------------------------------
class FrameSequenceNet(nn.Module):
    """Per-frame encoder -> linear per-frame scores -> temporal head (see the module docstring).

    Args:
        encoder: a 2D backbone built for ``C'`` input channels (:func:`frame_inputs`) with no
            classifier (``num_classes=0``); its pooled features are the frame's features.
        mean, std: per-channel statistics of the frames (normalised before the pairing).
        num_gestures: ``G`` clip classes; the frame classes are ``G + 1`` (with ``background``),
            else ``G``.
        frame_input: ``single``, ``pair`` or ``diff``.
        head: ``softmax``, ``chain_crf``, ``hcrf`` or ``ldcrf``.
        hidden_per_label: hidden states per label of the HCRF / LDCRF.
        hcrf_shared: the HCRF's hidden states are one set of ``hidden_per_label`` states shared
            by all gestures (Quattoni et al.'s model); False gives each gesture its own set.
        freeze_encoder: the encoder's weights take no gradient and it stays in eval mode (its
            batch-norm statistics are kept), so the head trains on fixed features.
        background: frame class 0 is background and the clip's class is its majority gesture
            (gestures); False: the frames' classes are the ``num_gestures`` classes themselves
            (strings), and there is no clip class.

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
        background: bool = True,
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
        if head == "hcrf" and not background:
            raise ConfigError(
                "model.head hcrf labels whole clips: it needs data with a clip label (gestures), "
                "not strings labelled frame by frame"
            )
        self.background = background
        self.normalize = Normalize(mean, std)
        self.encoder = encoder
        self.num_gestures, self.frame_input, self.head_kind = num_gestures, frame_input, head
        self.frozen = freeze_encoder
        k = num_gestures + 1 if background else num_gestures  # frame classes
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

    def loss(self, unary: Tensor, labels: Tensor | None, frame_labels: Tensor) -> Tensor:
        """The head's loss: per-frame cross-entropy (softmax); the chain CRF's and LDCRF's NLL
        divided by ``T`` (a per-frame NLL, on the cross-entropy's scale: same optimum); the
        HCRF's ``-log p(y | x)``; all averaged over the clips."""
        t = unary.shape[1]
        if self.head_kind == "softmax":
            return F.cross_entropy(unary.flatten(0, 1), frame_labels.flatten())
        if self.head_kind == "hcrf":
            return self.head(unary, labels)
        return self.head(unary, frame_labels) / t

    def decode(self, unary: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Per-frame classes ``(B, T)`` (None for the HCRF) and the clip gestures ``(B,)``
        (``-1``: no gesture found; None without ``background``)."""
        if self.head_kind == "hcrf":
            return None, self.head.predict(unary)
        if self.head_kind == "softmax":
            frames = unary.argmax(-1)
        elif self.head_kind == "chain_crf":
            frames = self.head.decode(unary)[0]
        else:
            frames = self.head.decode(unary)
        if not self.background:
            return frames, None
        return frames, majority_gesture(frames, self.num_gestures)


# -- the task -------------------------------------------------------------------------------------
class SequenceLabelingTask(Task):
    """Trains a :class:`FrameSequenceNet` on clips with per-frame labels (``frame_labels``):
    gesture clips with a clip label, or strings labelled frame by frame only (see the module
    docstring).

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
        self.strings = LABEL not in spec.keys  # frames labelled by the K classes, no background
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
            background=not self.strings,
        )
        names = spec.class_names
        self.frame_names = tuple(names) if self.strings else frame_class_names(names)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_seq_acc", MeanMetric())
            setattr(self, f"{stage}_frame_acc", MeanMetric())
        k = len(self.frame_names)
        for stage in ("val", "test"):  # frames by (true, predicted) class
            setattr(self, f"{stage}_frame_confmat", MulticlassConfusionMatrix(k))
        # gestures: clips by (true, predicted) gesture, 0 = "none" (no gesture found);
        # strings: frames by (true, predicted) class
        self.test_confmat = MulticlassConfusionMatrix(k)

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
    def _batch(self, batch: Batch) -> tuple[Tensor, Tensor | None, Tensor]:
        video, labels, frames = batch[VIDEO], batch.get(LABEL), batch.get(FRAME_LABELS)
        if frames is None:
            raise DataError(f"the batch has no '{FRAME_LABELS}' (per-frame labels)")
        if labels is None and not self.strings:
            raise DataError(f"the batch has no '{LABEL}' (the gesture of each clip)")
        if frames.shape != video.shape[:2]:
            raise ShapeError(
                f"'{FRAME_LABELS}' has shape {tuple(frames.shape)}, expected (B, T) = "
                f"{tuple(video.shape[:2])} as the video's"
            )
        return video, labels, frames

    def _step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor | None, Tensor | None]:
        video, labels, frames = self._batch(batch)
        unary = self.net(video)
        loss = self.net.loss(unary, labels, frames)
        n = len(video)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        with torch.no_grad():
            frame_pred, seq_pred = self.net.decode(unary.detach())
        seq = getattr(self, f"{stage}_seq_acc")
        if self.strings:  # a string is right when all its frames are
            seq.update((frame_pred == frames).all(1).float())
        else:
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
        if not self.strings:  # strings have no background: every frame is a "gesture" frame
            self.log(f"{stage}/frame_acc_gesture", gesture)
        self.log(f"{stage}/frame_acc_mean_class", mean_class)

    def on_validation_epoch_end(self) -> None:
        self._log_frame_class_scores("val")

    def on_test_epoch_start(self) -> None:
        self._samples: list[tuple[Tensor, ...]] = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, frame_pred, seq_pred = self._step(batch, "test")
        video, labels, frames = self._batch(batch)
        if self.strings:
            self.test_confmat.update(frame_pred.flatten(), frames.flatten())
            labels = seq_pred = torch.full((len(video),), -1, device=video.device)
        else:
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
        out = {}
        if seq_pred is not None:
            out["pred"] = seq_pred
        if frame_pred is not None:
            out["frames"] = frame_pred
        return out

    def predict_rows(self, outputs: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
        """Gestures: ``class,class_index,frames`` per clip (``frames``: the per-frame classes as
        a strip, ``.`` background, ``g + 1`` gesture ``g``; empty for the HCRF). Strings:
        ``frames`` only (class ``c`` as the ``c``-th of ``0-9a-z``)."""
        names = list(self.spec.class_names) if self.spec else []
        rows = []
        for out in outputs:
            frames = out.get("frames")
            if "pred" not in out:  # strings
                rows += [{"frames": _strip(f, background=False)} for f in frames]
                continue
            for i, c in enumerate(out["pred"].tolist()):
                name = "none" if c < 0 else (names[c] if c < len(names) else str(c))
                strip = _strip(frames[i]) if frames is not None else ""
                rows.append({"class": name, "class_index": c, "frames": strip})
        return rows

    # -- what the trainer calls ------------------------------------------------------------------
    def write_artifacts(self, run: RunDir, stage: str) -> dict[str, Any]:
        """After test: the clip confusion matrix over ``none`` + the gestures (strings: the frame
        confusion matrix over the classes; CSV and plot) and ``plots/test_predictions.png``:
        test clips with their true and predicted per-frame classes as strips (``.``
        background, ``g + 1`` gesture ``g``)."""
        results = getattr(self, "_test_results", None)
        if stage != "test" or not results:
            return {}
        self._test_results = None
        if self.strings:
            return self._write_string_artifacts(run, results)
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

    def _write_string_artifacts(self, run: RunDir, results: dict[str, Any]) -> dict[str, Any]:
        """Strings: the frame confusion matrix, the strips plot and the per-class frame recall."""
        names = list(self.frame_names)
        cm = results["confusion_matrix"]
        write_confusion_matrix(run, names, cm)
        video, _, frames, _, frame_pred = results["samples"]
        titles = [
            f"true  {_strip(frames[i], False)}\npred  {_strip(frame_pred[i], False)}"
            for i in range(len(frames))
        ]
        correct = (frame_pred == frames).all(1).tolist()
        plot_clip_strips(video, titles, run.plots / "test_predictions.png", correct=correct)
        rows = torch.tensor(cm, dtype=torch.float64)
        per_class = (rows.diagonal() / rows.sum(1).clamp(min=1)).tolist()
        return {"test/frame_acc_per_class": dict(zip(names, per_class, strict=True))}


def _strip(frames: Tensor, background: bool = True) -> str:
    """Per-frame classes as one character each: ``.`` background, ``1..9`` then ``a..z``;
    without background, class ``c`` is the ``c``-th of ``0..9a..z``."""
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    if background:
        chars = "." + chars[1:]
    return "".join(chars[c] if 0 <= c < len(chars) else "?" for c in frames.tolist())
