"""Shallow baselines of seed 002: k-NN and linear classifiers on fixed features, and their scores.

Seed 002 ("limits of shallow classifiers", "representation is important"): a k-nearest-
neighbour or a linear classifier on raw pixels is the baseline every learned representation is
measured against; the same classifiers on better features (polar coordinates for the rings, a
bag of visual words, Fisher vectors, a trained network's features) show what the representation
adds. This module holds the data side (a split's inputs as one tensor, without training
augmentation), the fixed features that need no fitting (pixels, polar coordinates), the two
classifiers and the metrics; :mod:`visrep.analysis.baseline_features` the fitted encoders.

* k-NN: Euclidean distances by ``torch.cdist`` over chunks of queries, the ``k`` nearest by a
  stable sort (equal distances: the lower training index first), a majority vote (ties to the
  smallest class id); both tie rules as scikit-learn's ``KNeighborsClassifier(algorithm="brute")``.
* linear: scikit-learn's ``SGDClassifier``, hinge loss (the seed's "linear SVM trained with SGD")
  or logistic loss, one-vs-rest, on standardised features, or on the features as they are for
  encodings that are already normalised (BoVW histograms; power + L2-normalised Fisher vectors,
  which Perronnin et al. 2010 feed straight to the linear SVM); its regularisation ``alpha`` is
  chosen on the validation split from a small grid, extended tenfold (at most 3 extra fits)
  while the best ``alpha`` is the smallest or largest tried (the model fitted on the training
  split with the best ``alpha`` is kept; ties go to the larger ``alpha``).
* histogram (event data, HOTS, Lagorce et al. 2016, Sec. 3.3): the nearest class signature (the
  mean training histogram of each class) or training histogram, under the standard,
  normalised or Bhattacharyya distance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from visrep.data.base import stratified_split
from visrep.data.samples import EVENTS, IMAGE, LABEL, POINT, collate
from visrep.errors import ConfigError, DataError, ShapeError
from visrep.events.hots import DISTANCES, histogram_distances
from visrep.events.types import EventBatch, EventStream
from visrep.tasks.base import mean_class_accuracy

__all__ = [
    "DEFAULT_ALPHAS",
    "EXTRA_ALPHA_FITS",
    "EventInputs",
    "HistogramClassifier",
    "KnnClassifier",
    "LinearClassifier",
    "SplitInputs",
    "classification_scores",
    "fit_classifier",
    "knn_predict",
    "pixel_features",
    "polar_features",
    "split_inputs",
    "subsample_split",
]

#: the ``alpha`` grid searched on the validation split by the linear classifier
DEFAULT_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: fits at most added beyond the grid while the best ``alpha`` is at its edge
EXTRA_ALPHA_FITS = 3


# -- data --------------------------------------------------------------------------------------------
class EventInputs:
    """The event recordings of a split, one :class:`~visrep.events.types.EventStream` per sample;
    indexed like a tensor's first dimension (an int, a slice or an index tensor)."""

    def __init__(self, streams: Sequence[EventStream]) -> None:
        self.streams = list(streams)

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, idx: int | slice | Tensor) -> EventInputs:
        if isinstance(idx, Tensor):
            return EventInputs([self.streams[int(i)] for i in idx.reshape(-1)])
        if isinstance(idx, slice):
            return EventInputs(self.streams[idx])
        return EventInputs([self.streams[idx]])

    def batches(self, size: int) -> list[EventBatch]:
        """The streams as :class:`~visrep.events.types.EventBatch` es of ``size`` samples."""
        return [
            EventBatch.from_streams(self.streams[i : i + size]) for i in range(0, len(self), size)
        ]


@dataclass
class SplitInputs:
    """A split's inputs stacked: ``inputs`` (N, ...) float (or :class:`EventInputs`), ``labels``
    (N,) int64, and the sample key they came from (``image``, ``point`` or ``events``)."""

    inputs: Tensor | EventInputs
    labels: Tensor
    key: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_2d(self) -> bool:
        """Whether each input is a 2-D point (``(2,)`` or a 2-channel 1 x 1 image)."""
        if not isinstance(self.inputs, Tensor):
            return False
        return self.inputs[0].numel() == 2 if len(self) else False


def split_inputs(
    ds: Dataset, collate_fn: Callable[[list[Any]], Any] = collate, batch_size: int = 512
) -> SplitInputs:
    """The inputs and labels of a classification dataset, in order, as two tensors.

    The dataset is read directly, not through a trainer, so no training augmentation applies:
    visrep's image data modules augment batches in ``on_after_batch_transfer`` only while a
    trainer is training, and their datasets yield un-normalised images in [0, 1] (the model
    normalises). Samples are ``{"image", "label"}``, ``{"point", "label"}`` or
    ``{"events", "label"}`` (event recordings, kept as :class:`EventInputs`).

    Raises:
        DataError: the samples hold no ``image`` / ``point`` with a ``label``.
        ShapeError: the dataset is empty.
    """
    xs, ys, key = [], [], None
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_fn):
        key = next((k for k in (IMAGE, POINT, EVENTS) if k in batch), None)
        want = EventBatch if key == EVENTS else Tensor
        if key is None or LABEL not in batch or not isinstance(batch[key], want):
            raise DataError(
                "baselines need classification samples (image, point or events, and label), "
                f"got keys {', '.join(map(str, batch))}"
            )
        if key == EVENTS:
            xs.extend(batch[key].stream(b) for b in range(len(batch[key])))
        else:
            xs.append(batch[key].float().as_subclass(Tensor))
        ys.append(torch.as_tensor(batch[LABEL]).long())
    if key is None:
        raise ShapeError("baselines: the split is empty")
    inputs = EventInputs(xs) if key == EVENTS else torch.cat(xs)
    return SplitInputs(inputs, torch.cat(ys), key)


def subsample_split(split: SplitInputs, n: int, seed: int = 0) -> SplitInputs:
    """At most ``n`` samples of ``split``, a seeded class-stratified draw, in their order."""
    if n >= len(split):
        return split
    keep, _ = stratified_split(split.labels.numpy(), len(split) - n, seed, "--train_limit")
    idx = torch.from_numpy(keep)
    return SplitInputs(split.inputs[idx], split.labels[idx], split.key)


# -- fixed features ----------------------------------------------------------------------------------
def pixel_features(inputs: Tensor) -> Tensor:
    """Raw pixels as one vector per sample: ``(N, C, H, W)`` in [0, 1] -> ``(N, C*H*W)`` float32.

    >>> pixel_features(torch.ones(2, 1, 2, 3)).shape
    torch.Size([2, 6])
    """
    return inputs.reshape(len(inputs), -1).float()


def polar_features(inputs: Tensor) -> Tensor:
    """2-D points as polar coordinates ``(rho, theta)`` (seed 002, "representation is important").

    ``rho = sqrt(x1^2 + x2^2)``, ``theta = atan2(x2, x1)`` in ``(-pi, pi]``.

    Args:
        inputs: ``(N, 2)`` points, or any ``(N, ...)`` holding 2 values per sample (a 2-channel
            1 x 1 image).

    Returns:
        ``(N, 2)`` float32.

    Raises:
        ShapeError: the samples are not 2-D points.

    >>> polar_features(torch.tensor([[0.0, 2.0], [-1.0, 0.0]])).tolist()
    [[2.0, 1.5707963705062866], [1.0, 3.1415927410125732]]
    """
    if inputs.dim() < 1 or inputs[0].numel() != 2:
        raise ShapeError(
            "--features polar needs 2-D point inputs (2 values per sample), got samples of "
            f"shape {tuple(inputs.shape[1:])}"
        )
    x = inputs.reshape(len(inputs), 2).float()
    return torch.stack([x.norm(dim=1), torch.atan2(x[:, 1], x[:, 0])], 1)


# -- classifiers -------------------------------------------------------------------------------------
def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    queries: Tensor,
    k: int = 1,
    num_classes: int | None = None,
    chunk: int | None = None,
) -> Tensor:
    """k-nearest-neighbour classification by Euclidean distance, majority vote.

    Distances ``torch.cdist`` of a chunk of queries to every training sample, the first ``k``
    of a stable sort kept (equal distances: the lower training index wins; ``topk``, and the
    stable sort only for rows with ties at the ``k``-th distance), votes
    counted by ``scatter_add``; a tie of votes goes to the smallest class id. Both tie rules are
    scikit-learn's ``KNeighborsClassifier(algorithm="brute")`` with uniform weights (tested on
    integer data, where equal distances are exact). Computed in the inputs' dtype (float64 for
    exact parity with scikit-learn).

    Args:
        train_x: ``(M, D)`` training features; train_y: ``(M,)`` their classes.
        queries: ``(N, D)``.
        k: neighbours, ``1 <= k <= M``.
        num_classes: class count (default ``max(train_y) + 1``).
        chunk: queries per ``cdist`` (default: about 2^24 distances at a time).

    Returns:
        ``(N,)`` int64 predicted classes.

    >>> knn_predict(torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([0, 0, 1]),
    ...             torch.tensor([[0.4], [4.0]]), k=1).tolist()
    [0, 1]
    """
    if train_x.dim() != 2 or queries.dim() != 2 or train_x.shape[1] != queries.shape[1]:
        raise ShapeError(
            f"knn: train (M, D) and queries (N, D) expected, got {tuple(train_x.shape)} and "
            f"{tuple(queries.shape)}"
        )
    if not 1 <= k <= len(train_x):
        raise ConfigError(f"--k must be in [1, {len(train_x)}] (the training samples), got {k}")
    c = int(num_classes if num_classes is not None else int(train_y.max()) + 1)
    chunk = chunk or max(1, 2**24 // max(len(train_x), 1))
    train_y = train_y.long().to(train_x.device)
    out = []
    for q in queries.split(chunk):
        d = torch.cdist(q.to(train_x), train_x)
        nn = _nearest(d, k)
        votes = torch.zeros(len(q), c, dtype=torch.int64, device=train_x.device)
        votes.scatter_add_(1, train_y[nn], torch.ones_like(nn))
        out.append(votes.argmax(1))  # first maximum: the smallest class among ties
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def _nearest(d: Tensor, k: int) -> Tensor:
    """The indices of the ``k`` smallest distances of each row, equal distances taken in index
    order: the first ``k`` of a stable sort, as a set (``(N, k)``, in no particular order).

    ``topk`` first; only the rows where distances equal to the ``k``-th one straddle the cut
    (``topk`` may keep any of them) are stably sorted.

    >>> _nearest(torch.tensor([[2.0, 1.0, 1.0, 1.0]]), 2).sort().values.tolist()
    [[1, 2]]
    """
    top = d.topk(k, dim=1, largest=False)
    kth = top.values[:, -1:]
    tied = (d == kth).sum(1) > k - (d < kth).sum(1)  # more ties at the cut than places left
    nn = top.indices
    if tied.any():
        rows = tied.nonzero().squeeze(1)
        nn = nn.clone()
        nn[rows] = d[rows].sort(dim=1, stable=True).indices[:, :k]
    return nn


class KnnClassifier:
    """:func:`knn_predict` holding its training set (``fit`` stores it)."""

    def __init__(self, k: int = 1, num_classes: int | None = None) -> None:
        if k < 1:
            raise ConfigError(f"--k must be >= 1, got {k}")
        self.k, self.num_classes = k, num_classes

    def fit(self, x: Tensor, y: Tensor) -> KnnClassifier:
        self.x, self.y = x, y
        return self

    def predict(self, x: Tensor) -> Tensor:
        return knn_predict(self.x, self.y, x, self.k, self.num_classes)


class LinearClassifier:
    """A linear classifier trained with SGD (scikit-learn), on standardised features or not.

    ``StandardScaler`` fitted on the training features (``standardize``), then
    ``SGDClassifier`` (one-vs-rest) with the hinge loss (a linear SVM, seed 002) or the logistic
    loss. Already normalised encodings go in as they are: Perronnin et al. 2010 (Sec. 3) train
    the linear SVM directly on power + L2-normalised Fisher vectors, and BoVW histograms are
    L1-normalised; standardising them would re-weight rare words / Gaussians.

    Args:
        loss: ``hinge`` or ``log``.
        alpha: L2 regularisation strength (scikit-learn's ``alpha``).
        seed: seeds the SGD sample order.
        max_iter: epochs of SGD at most (stops earlier at ``tol``).
        standardize: fit a ``StandardScaler`` on the training features first.
    """

    def __init__(
        self,
        loss: Literal["hinge", "log"] = "hinge",
        alpha: float = 1e-4,
        seed: int = 0,
        max_iter: int = 50,
        standardize: bool = True,
    ) -> None:
        from sklearn.linear_model import SGDClassifier
        from sklearn.preprocessing import StandardScaler

        if loss not in ("hinge", "log"):
            raise ConfigError(f"--loss must be hinge or log, got {loss!r}")
        if not alpha > 0:
            raise ConfigError(f"linear classifier: alpha must be > 0, got {alpha}")
        self.scaler = StandardScaler() if standardize else None
        self.clf = SGDClassifier(
            loss="hinge" if loss == "hinge" else "log_loss",
            alpha=alpha,
            max_iter=max_iter,
            tol=1e-4,
            random_state=seed,
        )

    def fit(self, x: Tensor, y: Tensor) -> LinearClassifier:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        z = x.float().numpy()  # float32: half the memory of float64
        if self.scaler is not None:
            z = self.scaler.fit_transform(z)
        with warnings.catch_warnings():  # max_iter bounds the cost on purpose
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf.fit(z, y.numpy())
        return self

    def predict(self, x: Tensor) -> Tensor:
        z = x.float().numpy()
        if self.scaler is not None:
            z = self.scaler.transform(z)
        return torch.from_numpy(self.clf.predict(z).astype(np.int64))


class HistogramClassifier:
    """HOTS's classifier (Lagorce et al. 2016, Sec. 3.3): the nearest reference histogram under
    a histogram distance (:func:`~visrep.events.hots.histogram_distances`).

    Args:
        distance: ``standard``, ``normalised`` or ``bhattacharyya``.
        reference: ``class`` (one signature per class, the mean of its training histograms, as
            the paper) or ``samples`` (every training histogram: 1-nearest neighbour).
    """

    def __init__(
        self,
        distance: Literal["standard", "normalised", "bhattacharyya"] = "bhattacharyya",
        reference: Literal["class", "samples"] = "class",
    ) -> None:
        if distance not in DISTANCES:
            raise ConfigError(f"--distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        if reference not in ("class", "samples"):
            raise ConfigError(f"--reference must be class or samples, got {reference!r}")
        self.distance, self.reference = distance, reference

    def fit(self, x: Tensor, y: Tensor) -> HistogramClassifier:
        if (x < 0).any():
            raise ShapeError("--classifier histogram needs non-negative histogram features")
        y = y.long()
        if self.reference == "samples":
            self.refs, self.classes = x.double(), y
            return self
        self.classes = torch.unique(y)  # sorted
        onehot = (y[:, None] == self.classes[None]).double()
        self.refs = (onehot.T @ x.double()) / onehot.sum(0)[:, None]
        return self

    def predict(self, x: Tensor) -> Tensor:
        d = histogram_distances(x, self.refs, self.distance)
        return self.classes[d.argmin(1)]  # ties: the first reference (smallest class / index)


Classifier = KnnClassifier | LinearClassifier | HistogramClassifier


@dataclass
class FittedClassifier:
    """The classifier kept, the options chosen on the validation split, its fit time."""

    model: Classifier
    chosen: dict[str, Any]
    val_acc: float
    fit_time_s: float
    grid: dict[str, float] = field(default_factory=dict)
    edge: Literal["low", "high"] | None = None


def fit_classifier(
    kind: Literal["knn", "linear", "histogram"],
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    num_classes: int,
    k: int = 1,
    loss: Literal["hinge", "log"] = "hinge",
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    seed: int = 0,
    max_iter: int = 50,
    standardize: bool = True,
    distance: Literal["standard", "normalised", "bhattacharyya"] = "bhattacharyya",
    reference: Literal["class", "samples"] = "class",
) -> FittedClassifier:
    """Fit a k-NN, linear or histogram classifier; the linear one's ``alpha`` chosen on val.

    The linear classifier is fitted for every ``alpha`` of ``alphas``; while the best is the
    smallest (largest) ``alpha`` tried, one tenth (ten times) of it is tried too, at most
    :data:`EXTRA_ALPHA_FITS` extra fits. Ties of validation accuracy go to the larger ``alpha``.
    A single ``alpha`` is a fixed choice: nothing is searched or extended.

    Returns:
        the kept model, ``chosen`` (``{"k": k}`` or ``{"alpha": a, "loss": loss}``), its
        validation accuracy, the fit time (linear: the whole grid search, its validation
        predictions included; k-NN: storing the training set, none of its predictions),
        ``grid`` (validation accuracy per ``alpha`` tried, extensions included) and ``edge``
        (``low`` / ``high`` when the chosen ``alpha`` is still the smallest / largest tried).

    Raises:
        DataError: the linear classifier's training labels hold fewer than 2 classes.
    """
    start = time.perf_counter()
    if kind == "knn":  # nothing to fit: the time is storing the training set
        model = KnnClassifier(k, num_classes).fit(train_x, train_y)
        fit_time = time.perf_counter() - start
        acc = float((model.predict(val_x) == val_y).double().mean()) if len(val_y) else math.nan
        return FittedClassifier(model, {"k": k}, acc, fit_time)
    if kind == "histogram":  # HOTS: nearest class signature, nothing chosen on val
        model = HistogramClassifier(distance, reference).fit(train_x, train_y)
        fit_time = time.perf_counter() - start
        acc = float((model.predict(val_x) == val_y).double().mean()) if len(val_y) else math.nan
        return FittedClassifier(
            model, {"distance": distance, "reference": reference}, acc, fit_time
        )
    if kind != "linear":
        raise ConfigError(f"--classifier must be knn, linear or histogram, got {kind!r}")
    if not alphas:
        raise ConfigError("--alphas must hold at least one value")
    if len(torch.unique(train_y)) < 2:
        raise DataError(
            "--classifier linear needs at least 2 classes in the training split, got "
            f"{len(torch.unique(train_y))} ({len(train_y)} samples; raise --train_limit)"
        )
    tried: dict[float, tuple[float, LinearClassifier]] = {}

    def fit(a: float) -> None:
        m = LinearClassifier(loss, a, seed, max_iter, standardize).fit(train_x, train_y)
        tried[a] = (float((m.predict(val_x) == val_y).double().mean()), m)

    def best() -> float:  # ties keep the larger alpha (the simpler model)
        return max(tried, key=lambda a: (tried[a][0], a))

    def edge() -> Literal["low", "high"] | None:
        if len(tried) < 2:
            return None
        return "low" if best() == min(tried) else "high" if best() == max(tried) else None

    for a in sorted(set(alphas), reverse=True):
        fit(a)
    for _ in range(EXTRA_ALPHA_FITS):
        side = edge()
        if side is None:
            break
        fit(min(tried) / 10 if side == "low" else max(tried) * 10)
    a = best()
    acc, m = tried[a]
    grid = {f"{b:g}": round(tried[b][0], 6) for b in sorted(tried)}
    elapsed = time.perf_counter() - start
    return FittedClassifier(m, {"alpha": a, "loss": loss}, acc, elapsed, grid, edge())


# -- scores ------------------------------------------------------------------------------------------
def classification_scores(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy, mean per-class accuracy, per-class accuracy and the confusion matrix.

    Mean class accuracy averages the recall of the classes present in ``target`` (a class never
    true has no recall and does not count; per-class accuracy reports it as NaN).

    Raises:
        ShapeError: ``pred`` and ``target`` differ in shape.
        DataError: a label of either lies outside ``0 .. num_classes - 1``.

    >>> s = classification_scores(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]), 3)
    >>> s["acc"], s["acc_mean_class"], s["confusion_matrix"][0]
    (0.75, 0.75, [1, 1, 0])
    """
    if pred.shape != target.shape:
        raise ShapeError(f"scores: pred {tuple(pred.shape)} and target {tuple(target.shape)}")
    for name, t in (("target", target), ("pred", pred)):
        bad = (t < 0) | (t >= num_classes)
        if bad.any():
            raise DataError(
                f"scores: {name} label {int(t[bad][0])} is outside 0..{num_classes - 1} "
                f"({num_classes} classes)"
            )
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    cm.index_put_((target.long(), pred.long()), torch.ones_like(target.long()), accumulate=True)
    rows = cm.sum(1)
    per = cm.diagonal().double() / rows.clamp_min(1)
    per = torch.where(rows > 0, per, torch.full_like(per, math.nan))
    return {
        "acc": float(cm.diagonal().sum()) / max(int(rows.sum()), 1),
        "acc_mean_class": float(mean_class_accuracy(cm)),
        "acc_per_class": per.tolist(),
        "confusion_matrix": cm.tolist(),
    }
