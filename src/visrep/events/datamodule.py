"""LightningDataModules of event-camera classification: ``{"events": EventBatch, "label": ...}`` batches.

Samples are ``{"events": EventStream, "label": int}``; batches hold one ``EventBatch``.
Splits follow :class:`visrep.data.base.SplitDataModule`: the source's test split if it has one
(else a stratified ``split.test_fraction``), and a validation split always carved from the
training data. :meth:`EventDataModule.spec` gives the model what it needs (classes, sensor size).

Augmentation: ``train_transforms`` (random :mod:`visrep.events.transforms`) run on training
batches in the main process before they move to the device, drawing from a generator seeded by
``(split.seed, epoch, batch)``, so they are reproducible whatever the number of loader workers;
``transforms`` (deterministic) run on every sample of every split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits
from torch.utils.data import Subset

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import EVENTS
from visrep.errors import ConfigError, DataError
from visrep.events.datasets import (
    EventFileDataset,
    EventStreamDataset,
    find_layout,
)
from visrep.events.io import read_events
from visrep.events.simulate import saccade_frames, simulate_batch
from visrep.events.transforms import EventTransform, apply_transforms, check_transforms
from visrep.events.types import EventBatch, collate_events

__all__ = [
    "DigitsEventsDataModule",
    "EventDataModule",
    "EventFolderDataModule",
    "NCaltech101DataModule",
    "NCarsDataModule",
    "NMNISTDataModule",
]


class EventDataModule(SplitDataModule):
    """Seeded splits and loaders of an event classification source (subclasses implement
    :meth:`load`).

    Args:
        loader: Batch sizes and workers (:class:`~visrep.data.base.LoaderConfig`).
        split: Fractions, seed and subset of the splits (:class:`~visrep.data.base.SplitConfig`);
            its seed also seeds the training augmentation.
        transforms: Deterministic event transforms for every sample (e.g. ``Denoise``,
            ``MaxEvents``).
        train_transforms: Random event transforms for training batches.
    """

    def __init__(
        self,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
        split: SplitConfig = SplitConfig(),
        transforms: list[EventTransform] | None = None,
        train_transforms: list[EventTransform] | None = None,
    ) -> None:
        super().__init__(loader, split)
        self.transforms = check_transforms(transforms, "data.transforms")
        self.train_transforms = check_transforms(train_transforms, "data.train_transforms")
        self.sensor_size: tuple[int, int] = (0, 0)
        self._aug_epoch, self._aug_batch = -1, 0

    collate_fn = staticmethod(collate_events)

    def on_splits_ready(self) -> None:
        # what the model sees: the source's sensor, or what data.transforms made of it (a crop)
        self.sensor_size = self.train_set[0][EVENTS].sensor_size

    def augment(self, batch: EventBatch, rng: np.random.Generator) -> EventBatch:
        """``train_transforms`` applied to each sample of ``batch`` with one generator."""
        streams = [
            apply_transforms(batch.stream(b), self.train_transforms, rng) for b in range(len(batch))
        ]
        sizes = {s.sensor_size for s in streams}
        if sizes != {batch.sensor_size}:
            raise ConfigError(
                f"train_transforms must keep the sensor size {batch.sensor_size} (the model is "
                f"built for it), got {sorted(sizes)}; crop in data.transforms instead"
            )
        return EventBatch.from_streams(streams)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self.train_transforms or self.trainer is None or not self.trainer.training:
            return batch
        epoch = self.trainer.current_epoch
        if epoch != self._aug_epoch:
            self._aug_epoch, self._aug_batch = epoch, 0
        rng = np.random.default_rng([self.split.seed, epoch, self._aug_batch])
        self._aug_batch += 1
        return {**batch, EVENTS: self.augment(batch[EVENTS], rng)}

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        w, h = self.sensor_size
        return DataSpec(
            family="events",
            keys=("events", "label"),
            image_size=(int(h), int(w)),
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            sensor_size=(int(w), int(h)),
        )

    def sample_names(self) -> list[str]:
        """Names of the test (= predict) samples, in loader order: file paths where known."""
        ds = self.test_set
        idx = list(range(len(ds))) if ds is not None else []
        if isinstance(ds, Subset):
            ds, idx = ds.dataset, list(ds.indices)
        files = getattr(ds, "files", None)
        return [files[i] if files else f"sample_{i}" for i in idx]


class EventFolderDataModule(EventDataModule):
    """Event files on disk in any layout :func:`~visrep.events.datasets.find_layout` knows.

    Args:
        root: The data set's folder (or a folder above it).
        sensor_size: ``(W, H)`` for every sample; default the data set's own
            (:attr:`default_sensor_size`), else what the first training file says.
        cache_dir: Keep decoded streams there as ``.npz`` (useful for slow formats).
        loader, split, transforms, train_transforms: see :class:`EventDataModule`.
    """

    default_sensor_size: tuple[int, int] | None = None

    def __init__(
        self,
        root: str,
        sensor_size: tuple[int, int] | None = None,
        cache_dir: str | None = None,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
        split: SplitConfig = SplitConfig(),
        transforms: list[EventTransform] | None = None,
        train_transforms: list[EventTransform] | None = None,
    ) -> None:
        super().__init__(loader, split, transforms, train_transforms)
        self.root = Path(root)
        self.requested_sensor_size = sensor_size or self.default_sensor_size
        self.cache_dir = cache_dir

    def load(self) -> Splits:
        layout = find_layout(self.root)
        names = layout.class_names()
        index = {n: i for i, n in enumerate(names)}
        train_items = layout.splits["train"]
        if not train_items:
            raise DataError(f"{layout.root}: the training split ({layout.kind}) has no files")
        size = self.requested_sensor_size or read_events(train_items[0][0]).sensor_size

        def dataset(items: list[tuple[str, str]]) -> EventFileDataset:
            files = [f for f, _ in items]
            targets = [index[lab] for _, lab in items]
            return EventFileDataset(files, targets, size, self.cache_dir, self.transforms)

        train = dataset(train_items)
        parts = {s: dataset(v) for s, v in layout.splits.items() if s != "train" and v}
        return Splits(train, train.targets, names, parts.get("test"), parts.get("val"))


class NMNISTDataModule(EventFolderDataModule):
    """N-MNIST (Orchard et al. 2015): ``Train/<digit>/*.bin`` + ``Test/<digit>/*.bin``, or the
    ``train*.txt`` / ``test*.txt`` list layout of SLAYER's subset; 34x34 sensor."""

    default_sensor_size = (34, 34)


class NCarsDataModule(EventFolderDataModule):
    """N-Cars (Sironi et al. 2018): ``<split>/{cars,background}/*.dat``; 120x100 sensor."""

    default_sensor_size = (120, 100)


class NCaltech101DataModule(EventFolderDataModule):
    """N-Caltech101 (Orchard et al. 2015): ``<class>/*.bin`` (no official split: test and val
    are held out with ``split.seed``); recordings fit a 240x180 sensor."""

    default_sensor_size = (240, 180)


class DigitsEventsDataModule(EventDataModule):
    """scikit-learn's digits turned into N-MNIST-like event recordings; no files needed.

    Each 8x8 digit is upscaled by ``scale`` (bilinear), moved along N-MNIST's three saccades
    (:func:`~visrep.events.simulate.saccade_frames`) and recorded by the simulator
    (:func:`~visrep.events.simulate.simulate_batch`) with thresholds mismatched per pixel.
    Everything is computed once, in memory, from ``seed``: with the defaults 1,797 recordings on
    a 20x20 sensor, about 1,800 events each.

    Args:
        scale: Upscaling factor of the 8x8 digits.
        amplitude: Saccade amplitude in pixels (the sensor is ``8 scale + 2 ceil(amplitude)``).
        frames_per_saccade: Rendered frames per saccade.
        threshold: Mean ON and OFF contrast threshold (log units).
        threshold_sigma: Per-pixel threshold mismatch.
        log_eps: ``log(I + eps)`` offset (digits are in ``[0, 1]``).
        max_samples: Use only the first ``max_samples`` digits (quick runs).
        seed: Seed of the simulated threshold mismatch.
        loader, split, transforms, train_transforms: see :class:`EventDataModule`.
    """

    def __init__(
        self,
        scale: int = 2,
        amplitude: float = 2.0,
        frames_per_saccade: int = 10,
        threshold: float = 0.3,
        threshold_sigma: float = 0.03,
        log_eps: float = 0.2,
        max_samples: int | None = None,
        seed: int = 0,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
        split: SplitConfig = SplitConfig(),
        transforms: list[EventTransform] | None = None,
        train_transforms: list[EventTransform] | None = None,
    ) -> None:
        super().__init__(loader, split, transforms, train_transforms)
        if scale < 1 or (max_samples is not None and max_samples < 10):
            raise ConfigError(
                f"data.scale must be >= 1 and data.max_samples >= 10, got {scale}, {max_samples}"
            )
        self.scale = scale
        self.amplitude = amplitude
        self.frames_per_saccade = frames_per_saccade
        self.threshold = threshold
        self.threshold_sigma = threshold_sigma
        self.log_eps = log_eps
        self.max_samples = max_samples
        self.seed = seed

    def load(self) -> Splits:
        d = load_digits()
        images, targets = d.images[: self.max_samples] / 16.0, d.target[: self.max_samples]
        if self.scale > 1:
            images = ndimage.zoom(images, (1, self.scale, self.scale), order=1).clip(0, 1)
        frames, t = saccade_frames(images, self.amplitude, 300_000, self.frames_per_saccade)
        streams = simulate_batch(
            frames,
            t,
            pos_threshold=self.threshold,
            neg_threshold=self.threshold,
            threshold_sigma=self.threshold_sigma,
            log_eps=self.log_eps,
            rng=self.seed,
        )
        ds = EventStreamDataset(streams, targets, self.transforms)
        return Splits(ds, ds.targets, [str(c) for c in range(10)])
