"""R-CNN's per-class linear SVMs with hard negative mining (Girshick et al. 2014, Sec. 2.3;
Felzenszwalb et al. 2010's "standard hard negative mining method"), as the authors'
``rcnn_train.m`` runs it.

Per class: a cache of positives (the ground-truth boxes' features) and one of negatives. The
first batch of images gives all its negatives and every SVM is trained; each later batch adds,
per class, the negatives scoring above ``hard_thresh`` (inside the margin, -1.0001); a class's
SVM is retrained once more than ``retrain_limit`` (2000) negatives were added, and after each
training the cached negatives scoring below ``evict_thresh`` (-1.2) are dropped; a last
training ends the pass. Solver: scikit-learn's ``LinearSVC`` (liblinear, L2-regularised hinge
loss in the dual, the regularised bias feature ``intercept_scaling``), positives weighted
``pos_weight``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

__all__ = ["SVMTrainer"]

_NEVER = -1e3  # the bias of a class without positives: it never fires


class SVMTrainer:
    """Caches and SVMs of ``k`` classes (module docstring). Feed :meth:`add_positives` (all of
    them), then :meth:`start` with the first batch's negatives, :meth:`mine` with every later
    batch, and :meth:`finish`; :meth:`weights` gives ``W (k, D)`` and ``b (k,)``.

    Features are given raw; :meth:`start` fixes the ``scale`` applied to all of them.
    """

    def __init__(
        self,
        k: int,
        c: float,
        pos_weight: float,
        bias: float,
        hard_thresh: float,
        evict_thresh: float,
        retrain_limit: int,
        max_iter: int,
    ) -> None:
        self.k, self.c, self.pos_weight, self.bias = k, c, pos_weight, bias
        self.hard_thresh, self.evict_thresh = hard_thresh, evict_thresh
        self.retrain_limit, self.max_iter = retrain_limit, max_iter
        self._pos_raw: list[list[np.ndarray]] = [[] for _ in range(k)]
        self.pos: list[np.ndarray] = []
        self.neg: list[np.ndarray] = []
        self.added = np.zeros(k, dtype=np.int64)
        self.scale: float | None = None
        self.w = np.zeros((k, 0))
        self.b = np.full(k, _NEVER)
        self.retrains = 0

    def add_positives(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Ground-truth boxes' raw features ``(n, D)`` and classes ``(n,)``."""
        for c in np.unique(labels):
            self._pos_raw[int(c)].append(np.asarray(features[labels == c], np.float32))

    def _has_pos(self, c: int) -> bool:
        return len(self.pos[c]) > 0

    def start(self, scale: float, features: np.ndarray, negative: np.ndarray) -> None:
        """The first batch: fix ``scale``, cache all its negatives (``negative (N, k)`` says
        which rows are negatives of which class), train every SVM."""
        self.scale = float(scale)
        d = features.shape[1]
        self.pos = [
            np.concatenate(p) * self.scale if p else np.zeros((0, d), np.float32)
            for p in self._pos_raw
        ]
        self._pos_raw = [[] for _ in range(self.k)]
        x = np.asarray(features, np.float32) * self.scale
        self.neg = [x[negative[:, c]] for c in range(self.k)]
        self.w = np.zeros((self.k, d))
        for c in range(self.k):
            self._update(c)

    def mine(self, features: np.ndarray, negative: np.ndarray) -> None:
        """A later batch: cache the hard negatives, retrain the classes past the limit."""
        x = np.asarray(features, np.float32) * self.scale
        z = x @ self.w.T + self.b
        hard = (z > self.hard_thresh) & negative
        for c in range(self.k):
            if not self._has_pos(c) or not hard[:, c].any():
                continue
            self.neg[c] = np.concatenate([self.neg[c], x[hard[:, c]]])
            self.added[c] += int(hard[:, c].sum())
            if self.added[c] > self.retrain_limit:
                self._update(c)

    def finish(self) -> None:
        """The final training of every class."""
        for c in range(self.k):
            self._update(c)

    def _update(self, c: int) -> None:
        self.added[c] = 0
        if not self._has_pos(c) or not len(self.neg[c]):
            self.w[c], self.b[c] = 0.0, _NEVER if not self._has_pos(c) else 0.0
            return
        x = np.concatenate([self.pos[c], self.neg[c]])
        y = np.concatenate([np.ones(len(self.pos[c])), -np.ones(len(self.neg[c]))])
        svm = LinearSVC(
            C=self.c,
            loss="hinge",
            dual=True,
            class_weight={1: self.pos_weight, -1: 1.0},
            intercept_scaling=self.bias,
            max_iter=self.max_iter,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # liblinear's usual early stop
            svm.fit(x, y)
        self.w[c], self.b[c] = svm.coef_[0], svm.intercept_[0]
        self.retrains += 1
        z = self.neg[c] @ self.w[c] + self.b[c]
        self.neg[c] = self.neg[c][z >= self.evict_thresh]  # evict the easy negatives

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``W (k, D)`` and ``b (k,)`` of the scaled features."""
        return self.w, self.b

    def num_positives(self) -> list[int]:
        return [len(p) for p in self.pos]

    def num_negatives(self) -> list[int]:
        return [len(n) for n in self.neg]
