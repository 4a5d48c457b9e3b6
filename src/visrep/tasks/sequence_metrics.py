"""Metrics of sequence labelling (:mod:`visrep.tasks.sequence`): per-frame accuracy and
confusion, scores that predicting background everywhere cannot win, and a clip's gesture from
its per-frame classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import ShapeError
from visrep.tasks.base import mean_class_accuracy

__all__ = [
    "frame_accuracy",
    "frame_class_scores",
    "frame_confusion",
    "majority_gesture",
    "sequence_accuracy",
]


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
