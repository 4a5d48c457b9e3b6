"""The base of every image DataModule: seeded splits, training-split statistics, loaders, augmentation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from dataclasses import asdict, dataclass, fields
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from visrep.data.augment import AugmentConfig, augment_batch
from visrep.data.datasets import ArrayImageDataset, collate_samples
from visrep.data.samples import IMAGE, collate
from visrep.errors import ConfigError, DataError


def _lists(v: Any) -> Any:
    return [_lists(x) for x in v] if isinstance(v, tuple | list) else v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, tuple | list) else v


@dataclass(frozen=True)
class DataSpec:
    """What a data module yields, as the task needs it to build its model (``configure_model``).

    Stored in every checkpoint, so a trained task rebuilds its model without the data.

    Attributes:
        family: the task family the samples are made for (``classification``, ``events``, ...).
        keys: the sample keys present (``image``, ``label``, ``events``, ``mask`` ...).
        in_chans: image channels (``None`` for inputs that are not images, e.g. events).
        image_size: ``(H, W)`` of the images (or of the event sensor's frames).
        num_classes: number of classes (0 when there are none).
        class_names: one name per class.
        mean, std: per-channel statistics of the training images (the model normalises).
        sensor_size: ``(W, H)`` of an event sensor.
        ignore_index: the label of pixels (or samples) that count in no loss or metric
            (dense tasks: 255 by default, CamVid's void is 11); None when there is none.
        class_colors: one ``(R, G, B)`` per class, for palette masks and overlays.
        class_weights: per-class loss weights from the training split (e.g. SegNet's median
            frequency balancing), or None.
        point_dim: the dimension ``D`` of vector samples (``point``, ``(D,)``) or of the points
            of a point set (``points``, ``(N, D)``); None for other data.
        num_frames: the frames ``T`` of a video clip (``video``, ``(T, C, H, W)``); None for
            data that is not video.
        future_frames: the frames a forecasting sample asks to predict (``future``,
            ``(T_out, C, H, W)``); None for other data.
        flow_frames: the flow fields of a clip's ``flow`` (``(L, 2, H, W)``, two-stream
            models); None when the data gives no flow.
    """

    family: str
    keys: tuple[str, ...] = ("image", "label")
    in_chans: int | None = None
    image_size: tuple[int, int] | None = None
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    sensor_size: tuple[int, int] | None = None
    ignore_index: int | None = None
    class_colors: tuple[tuple[int, int, int], ...] = ()
    class_weights: tuple[float, ...] | None = None
    point_dim: int | None = None
    num_frames: int | None = None
    future_frames: int | None = None
    flow_frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings): what a checkpoint stores."""
        return {k: _lists(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """The inverse of :meth:`to_dict`; unknown keys are refused (``ConfigError``)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown or "family" not in d:
            raise ConfigError(f"data spec: unknown keys {unknown} or no family in {sorted(d)}")
        return cls(**{k: _tuples(v) for k, v in d.items()})


@dataclass
class Splits:
    """What a concrete DataModule loads: a training set and, where the source has them, val/test.

    ``train_targets`` (one class per training sample) stratifies the splits; None (dense tasks,
    regression) splits at random.
    """

    train: Dataset
    train_targets: np.ndarray | None
    class_names: list[str]
    test: Dataset | None = None
    val: Dataset | None = None


def stratified_split(
    targets: np.ndarray, held_out: float | int, seed: int, option: str = "data.split"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded sorted (kept, held-out) index split, stratified by class when possible.

    ``held_out`` is a fraction of the samples (float) or a number of samples (int); ``option``
    names it in the error raised when nothing would be left to keep.
    """
    idx = np.arange(len(targets))
    if held_out <= 0:
        return idx, idx[:0]
    counts = np.bincount(targets)
    classes = int((counts > 0).sum())
    n_held = held_out if isinstance(held_out, int) else int(np.ceil(held_out * len(targets)))
    if n_held >= len(targets):
        raise ConfigError(
            f"{option} {held_out} holds out {n_held} of the {len(targets)} samples left, "
            "leaving none: use a smaller value or more data"
        )
    # Stratify when every class can appear on both sides; tiny sets fall back to a plain split.
    can = counts[counts > 0].min() >= 2 and classes <= n_held <= len(targets) - classes
    stratify = targets if can else None
    keep, held = train_test_split(idx, test_size=held_out, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


def channel_stats(
    dataset: Dataset, max_samples: int = 10_000, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a dataset's images (a seeded subset of at most ``max_samples``)."""
    base, indices = dataset, np.arange(len(dataset))
    if isinstance(dataset, Subset):
        base, indices = dataset.dataset, np.asarray(dataset.indices)
    if isinstance(base, ArrayImageDataset):
        return base.channel_stats(indices)
    if len(indices) > max_samples:
        indices = np.random.default_rng(seed).choice(indices, max_samples, replace=False)
    loader = DataLoader(Subset(base, indices.tolist()), batch_size=256, collate_fn=collate)
    s = s2 = None
    n = 0
    for batch in loader:
        x = batch[IMAGE].double()
        bs, bs2 = x.sum((0, 2, 3)), (x**2).sum((0, 2, 3))
        s = bs if s is None else s + bs
        s2 = bs2 if s2 is None else s2 + bs2
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


class EpochShuffleSampler(RandomSampler):
    """A random order of the samples that is a function of ``(seed, epoch)`` only.

    torch's ``RandomSampler`` draws its seed from the global generator when an epoch starts, so a
    run resumed from a checkpoint sees other orders than the run it continues; this one does not.
    Lightning calls :meth:`set_epoch` before each epoch (and swaps in a ``DistributedSampler``,
    also epoch-seeded, under DDP: this is a ``RandomSampler``).
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        yield from torch.randperm(len(self.data_source), generator=g).tolist()


@dataclass(frozen=True)
class LoaderConfig:
    """How batches are loaded (``--data.loader.batch_size 256`` etc.).

    Attributes:
        batch_size: training batch size.
        eval_batch_size: validation / test / predict batch size (default: ``batch_size``).
        num_workers: loader worker processes.
        classes_per_batch: P of P x K metric-learning batches: when set, every training batch
            holds P distinct classes x ``samples_per_class`` samples each
            (:class:`~visrep.data.embedding.PKBatchSampler`) and ``batch_size`` is not used
            for training; None: shuffled batches of ``batch_size``.
        samples_per_class: K of P x K batches (>= 2: a class needs a positive pair).
    """

    batch_size: int = 128
    eval_batch_size: int | None = None
    num_workers: int = 0
    classes_per_batch: int | None = None
    samples_per_class: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.loader.batch_size must be >= 1, got {self.batch_size}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ConfigError(
                f"data.loader.eval_batch_size must be >= 1 or null, got {self.eval_batch_size}"
            )
        if self.num_workers < 0:
            raise ConfigError(f"data.loader.num_workers must be >= 0, got {self.num_workers}")
        if self.classes_per_batch is not None and self.classes_per_batch < 2:
            raise ConfigError(
                "data.loader.classes_per_batch must be >= 2 (P classes per batch) or null, got "
                f"{self.classes_per_batch}"
            )
        if self.samples_per_class < 2:
            raise ConfigError(
                "data.loader.samples_per_class must be >= 2 (K samples per class, for positive "
                f"pairs), got {self.samples_per_class}"
            )


@dataclass(frozen=True)
class SplitConfig:
    """How a source is split into train / val / test (``--data.split.seed 3`` etc.).

    Attributes:
        val_fraction: fraction of the training data held out for validation.
        test_fraction: fraction held out for testing when the source has no test split.
        seed: seed of the splits.
        train_samples: use a seeded subset of this many training samples (after the validation
            split is carved out); None (or more than there are) uses all.
        stratify: keep the class proportions in every split (when the samples have a class).
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    train_samples: int | None = None
    stratify: bool = True

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            f = getattr(self, name)
            if not 0 <= f < 1:
                raise ConfigError(f"data.split.{name} must be in [0, 1), got {f}")
        if self.train_samples is not None and self.train_samples < 1:
            raise ConfigError(
                f"data.split.train_samples must be >= 1 or null, got {self.train_samples}"
            )


class SplitDataModule(L.LightningDataModule):
    """Seeded train/val/test splits and loaders of a source, whatever its samples.

    Subclasses implement :meth:`load` (and may extend :meth:`on_splits_ready`) and
    :meth:`spec`. Sources without a test split get one (``split.test_fraction``); the
    validation split is always carved from the training data (``split.val_fraction``);
    ``split.train_samples`` then optionally shrinks what is left for training. Splits are
    stratified by class when the source gives classes and ``split.stratify`` is on. With
    ``loader.classes_per_batch`` set, training batches are P classes x K samples
    (:class:`~visrep.data.embedding.PKBatchSampler` over :meth:`train_labels`).

    Args:
        loader: batch sizes and workers.
        split: fractions, seed, subset size and stratification of the splits.
    """

    # how sample dicts become a batch (a batch gathered at once, SampleBatch, passes through)
    collate_fn: Callable = staticmethod(collate_samples)

    def __init__(
        self, loader: LoaderConfig | None = None, split: SplitConfig | None = None
    ) -> None:
        super().__init__()
        self.loader = loader or LoaderConfig()
        self.split = split or SplitConfig()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.class_names: list[str] = []
        self._train_labels: np.ndarray | None = None

    def load(self) -> Splits:
        """Read the source; implemented by each concrete DataModule."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        s = self.load()
        n = len(s.train)
        if n == 0:
            raise DataError(f"{type(self).__name__}: the training data is empty")
        cfg = self.split
        targets = np.zeros(n, dtype=np.int64)  # one class: a plain (unstratified) split
        if cfg.stratify and s.train_targets is not None:
            targets = np.asarray(s.train_targets, dtype=np.int64)
        train_idx = np.arange(n)
        test = s.test
        if test is None:
            train_idx, test_idx = self.split_indices(
                train_idx, targets, cfg.test_fraction, cfg.seed, "data.split.test_fraction"
            )
            if len(test_idx) == 0:
                raise ConfigError(
                    "the source has no test split: data.split.test_fraction must be > 0"
                )
            test = Subset(s.train, test_idx.tolist())
        val = s.val
        if val is None and cfg.val_fraction > 0:
            train_idx, held = self.split_indices(
                train_idx, targets, cfg.val_fraction, cfg.seed + 1, "data.split.val_fraction"
            )
            val = Subset(s.train, held.tolist())
        if cfg.train_samples is not None and cfg.train_samples < len(train_idx):
            surplus = len(train_idx) - cfg.train_samples
            train_idx, _ = self.split_indices(train_idx, targets, surplus, cfg.seed + 2)
        self.train_set = Subset(s.train, train_idx.tolist())
        self._train_labels = (
            None if s.train_targets is None else np.asarray(s.train_targets)[train_idx]
        )
        self.val_set, self.test_set = val, test
        self.class_names = list(s.class_names)
        self.on_splits_ready()

    def split_indices(
        self,
        idx: np.ndarray,
        targets: np.ndarray,
        held_out: float | int,
        seed: int,
        option: str = "data.split",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted (kept, held-out) parts of the training-source indices ``idx``.

        :func:`stratified_split` of ``targets[idx]``; a source whose samples are not
        independent (several clips of one recording) overrides it to keep each group whole.
        """
        keep, held = stratified_split(targets[idx], held_out, seed, option)
        return idx[keep], idx[held]

    def on_splits_ready(self) -> None:
        """Called once the splits exist: derive what the model needs from them."""

    def train_labels(self) -> np.ndarray:
        """The class of each training sample, int64 ``(N,)`` in ``train_set`` order (after
        :meth:`setup`): the source's training targets at the kept indices.

        Raises:
            ConfigError: the source gives no per-sample classes (P x K batches need them).
        """
        if self.train_set is None:
            raise ConfigError(f"{type(self).__name__}.train_labels(): call setup() first")
        if self._train_labels is None:
            raise ConfigError(
                f"{type(self).__name__} gives no class per training sample: "
                "data.loader.classes_per_batch (P x K batches) needs one"
            )
        return self._train_labels.astype(np.int64)

    def _loader(self, ds: Dataset | None, train: bool) -> DataLoader:
        if ds is None:
            raise ConfigError(f"{type(self).__name__} has no such split")
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        seed = torch.initial_seed()  # set by seed_everything, the same again when a run resumes
        cfg = self.loader
        batch = cfg.batch_size if train else cfg.eval_batch_size or cfg.batch_size
        batching: dict[str, Any] = {
            "batch_size": batch,
            "sampler": EpochShuffleSampler(ds, seed) if train else None,
            "drop_last": train and len(ds) > batch,
        }
        if train and cfg.classes_per_batch is not None:
            # Imported here: the embedding package imports this module.
            from visrep.data.embedding.sampler import PKBatchSampler

            # A BatchSampler subclass with a ``sampler`` argument: under DDP Lightning re-creates
            # it with its DistributedSampler (rank, world size, epoch); see PKBatchSampler.
            sampler = PKBatchSampler(
                self.train_labels(), cfg.classes_per_batch, cfg.samples_per_class, seed
            )
            batching = {"batch_sampler": sampler}
        return DataLoader(
            ds,
            **batching,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=on_gpu,
            collate_fn=type(self).collate_fn,
            # the loader's own seeds (for workers) never draw from the global generator
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)


class ImageDataModule(SplitDataModule):
    """Seeded splits of an image classification source (see :class:`SplitDataModule`);
    samples are ``{"image": Image, "label": int}``.

    Normalisation statistics come from the training split only, and the model keeps them
    (:class:`visrep.models.layers.Normalize`), so images stay in [0, 1] here.

    Args:
        loader, split: as in :class:`SplitDataModule`.
        augment: training augmentations, applied per batch on the device (see
            :mod:`visrep.data.augment` for why not per sample).
    """

    def __init__(
        self,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        self.augment = augment or AugmentConfig()
        self.mean: list[float] = []
        self.std: list[float] = []
        self.image_shape: tuple[int, int, int] = (0, 0, 0)

    def on_splits_ready(self) -> None:
        self.image_shape = tuple(self.train_set[0][IMAGE].shape)
        self.mean, self.std = channel_stats(self.train_set, seed=self.split.seed)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if self.trainer is not None and self.trainer.training and self.augment.enabled:
            return {**batch, IMAGE: augment_batch(batch[IMAGE], self.augment)}
        return batch

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="classification",
            keys=("image", "label"),
            in_chans=self.image_shape[0],
            image_size=tuple(self.image_shape[1:]),
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
