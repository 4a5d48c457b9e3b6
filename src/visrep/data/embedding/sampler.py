"""P x K batches for metric learning: P distinct classes, K samples of each, per batch.

Batch-hard and semi-hard mining (Hermans et al. 2017, "In Defense of the Triplet Loss for
Person Re-Identification", section 2: "randomly sampling P classes, and then randomly sampling K
images of each class, thus resulting in a batch of PK images"; Schroff et al. 2015, FaceNet,
section 3.2) need every batch to hold several samples of each of several classes: a uniformly
shuffled batch of 64 from 1000 classes holds almost no positive pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import BatchSampler, Sampler

from visrep.errors import ConfigError, DataError


class EpochCounter(Sampler[int]):
    """The epoch of a :class:`PKBatchSampler` when no distributed sampler carries it.

    Lightning calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler``
    only, never on the batch sampler itself, so the PK sampler keeps its epoch here. Iterating
    it gives ``range(n)`` (its order is never used to make batches).
    """

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))


def pk_batches_per_epoch(groups: np.ndarray, classes_per_batch: int) -> int:
    """The most batches ``B`` such that ``B * P`` groups fit with at most ``B`` per class.

    Class ``c`` holds ``groups[c]`` groups of K samples; a class can appear at most once per
    batch, so it fills at most ``min(groups[c], B)`` of the ``B * P`` slots. ``f(B) =
    sum(min(g, B)) - B P`` is concave with ``f(0) = 0``, so ``{B : f(B) >= 0}`` is an interval
    from 0 and a binary search finds its end.
    """
    lo, hi = 0, int(groups.sum()) // classes_per_batch
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(groups, mid).sum() >= mid * classes_per_batch:
            lo = mid
        else:
            hi = mid - 1
    return lo


class PKBatchSampler(BatchSampler):
    """Batches of ``P = classes_per_batch`` distinct classes x ``K = samples_per_class`` samples.

    An epoch, a deterministic function of ``(seed, epoch)``:

    1. the samples of each class are shuffled and cut into groups of K (a class with at least K
       samples gives ``n_c // K`` groups, drawn without replacement; its ``n_c mod K`` left-over
       samples change from epoch to epoch); a class with ``2 <= n_c < K`` samples gives one
       group holding all of them, filled up to K by drawing from them with replacement;
       classes with one sample can form no positive pair and are never drawn;
    2. the classes are put in a random order and their groups laid end to end, each class
       contributing at most ``B`` groups (``B`` = batches per epoch, the largest number for
       which ``B * P`` groups are available that way, about ``N / (P K)``); group ``t`` of
       that list goes to batch ``t mod B``: a class's groups are consecutive and at most B, so
       they land in distinct batches, and every batch receives exactly P distinct classes;
    3. the batches are shuffled; rank ``r`` of ``W`` processes takes batches ``r, r + W, ...``
       of the first ``(B // W) W``: disjoint shares of equal length (DDP needs equal steps).

    Within a batch the samples come class by class (K consecutive indices per class).

    Under Lightning, ``SplitDataModule.train_dataloader`` builds it; Lightning calls
    ``loader.batch_sampler.sampler.set_epoch(epoch)`` at each epoch start (also after a
    resume, with the restored epoch, so a resumed run sees the same batches), and under DDP
    with ``use_distributed_sampler`` (the default) it re-creates this batch sampler from its
    saved arguments with a ``DistributedSampler`` as ``sampler``: its ``num_replicas``,
    ``rank`` and ``epoch`` are then used (never its order).

    Args:
        labels: ``(N,)`` class label of each sample (integers >= 0).
        classes_per_batch: P >= 2.
        samples_per_class: K >= 2.
        seed: seed of every epoch's draws (the same on every rank).
        num_replicas, rank: this process's share under distributed training; default: from
            ``sampler`` when it has them (Lightning's DistributedSampler), else from
            ``torch.distributed`` when initialised, else one process.
        sampler: carries the epoch (see above); default: a fresh :class:`EpochCounter`.

    >>> s = PKBatchSampler([0, 0, 1, 1, 2, 2, 2, 2], classes_per_batch=2, samples_per_class=2)
    >>> len(s), [len(b) for b in s]
    (2, [4, 4])
    """

    def __init__(
        self,
        labels: np.ndarray | Iterable[int],
        classes_per_batch: int,
        samples_per_class: int = 2,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
            raise DataError(
                f"PK sampling: labels must be a 1-D integer array, got {labels.dtype} "
                f"{labels.shape}"
            )
        if labels.size and labels.min() < 0:
            raise DataError(f"PK sampling: labels must be >= 0, got {labels.min()}")
        p, k = classes_per_batch, samples_per_class
        if not isinstance(p, int) or p < 2:
            raise ConfigError(f"data.loader.classes_per_batch must be >= 2, got {p}")
        if not isinstance(k, int) or k < 2:
            raise ConfigError(f"data.loader.samples_per_class must be >= 2, got {k}")
        super().__init__(sampler if sampler is not None else EpochCounter(len(labels)), p * k, True)
        self.labels = labels.astype(np.int64)
        self.classes_per_batch, self.samples_per_class = p, k
        self.seed = int(seed) % 2**64
        self._epoch = 0
        if num_replicas is None:
            num_replicas, rank = self._distributed(rank)
        self.num_replicas, self.rank = int(num_replicas), int(rank or 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ConfigError(
                f"PK sampling: rank {self.rank} is not in [0, {self.num_replicas}) processes"
            )
        # Classes in sorted order; a class's samples are contiguous in a stable sort by label.
        _, self._counts = np.unique(self.labels, return_counts=True)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)
        self._eligible = np.flatnonzero(self._counts >= 2)
        c = self._counts[self._eligible]
        self._groups = np.where(c >= k, c // k, 1)
        self.num_batches = pk_batches_per_epoch(self._groups, p)
        if len(self._eligible) < p:
            raise ConfigError(
                f"data.loader.classes_per_batch {p}: the training split has "
                f"{len(self._eligible)} classes with >= 2 samples; need at least {p}"
            )
        if self.num_batches // self.num_replicas == 0:
            raise ConfigError(
                f"data.loader.classes_per_batch {p} x samples_per_class {k}: the training split "
                f"makes {self.num_batches} P x K batches per epoch, fewer than the "
                f"{self.num_replicas} processes"
            )

    def _distributed(self, rank: int | None) -> tuple[int, int | None]:
        s = self.sampler
        if hasattr(s, "num_replicas") and hasattr(s, "rank"):
            return s.num_replicas, s.rank if rank is None else rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank() if rank is None else rank
        return 1, rank

    @property
    def epoch(self) -> int:
        """The epoch the next iteration draws (the sampler's, when it carries one)."""
        return int(getattr(self.sampler, "epoch", self._epoch))

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` from now on (Lightning calls the sampler's)."""
        self._epoch = int(epoch)
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this process."""
        return self.num_batches // self.num_replicas

    def epoch_batches(self, epoch: int | None = None) -> np.ndarray:
        """All processes' batches of an epoch, ``(B, P * K)`` sample indices, in their order."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        p, k, b = self.classes_per_batch, self.samples_per_class, self.num_batches
        # Samples grouped by class (sorted labels), in a random order within each class.
        order = np.lexsort((rng.random(len(self.labels)), self.labels))
        perm = rng.permutation(len(self._eligible))
        taken = np.minimum(self._groups[perm], b)
        run_start = np.cumsum(taken) - taken
        entry = np.repeat(perm, taken)[: b * p]  # the class (eligible id) of each group
        group = np.arange(b * p) - np.repeat(run_start, taken)[: b * p]
        cls = self._eligible[entry]
        pos = group[:, None] * k + np.arange(k)  # position of each sample within its class
        count = np.broadcast_to(self._counts[cls][:, None], pos.shape)
        short = pos >= count  # classes with fewer than K samples: fill with replacement
        pos[short] = (rng.random(int(short.sum())) * count[short]).astype(np.int64)
        idx = order[self._starts[cls][:, None] + pos]  # (B * P, K)
        batches = idx.reshape(p, b, k).transpose(1, 0, 2).reshape(b, p * k)
        return batches[rng.permutation(b)]

    def __iter__(self) -> Iterator[list[int]]:
        w = self.num_replicas
        mine = self.epoch_batches()[self.rank : len(self) * w : w]
        yield from mine.tolist()
