"""Unpaired images of two domains: CycleGAN's ``trainA/ trainB/ testA/ testB/`` layout.

Zhu et al. 2017 (CycleGAN) learn a translation between two sets of images that are not in
correspondence; their unaligned data set pairs image ``i`` of domain A with a random image of
domain B, drawn again every epoch. A sample here is ``{"image": A image, "image_b": B image}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision import tv_tensors

from visrep.data.augment import AugmentConfig, augment_batch
from visrep.data.base import (
    DataSpec,
    LoaderConfig,
    SplitConfig,
    SplitDataModule,
    channel_stats,
    stratified_split,
)
from visrep.data.classification.folder import _decode_all
from visrep.data.datasets import (
    IMAGE_EXTENSIONS,
    ArrayImageDataset,
    ImageFileDataset,
    probe_image,
)
from visrep.data.samples import IMAGE, IMAGE_B, collate
from visrep.errors import ConfigError, DataError

__all__ = ["DOMAINS", "UnpairedDataset", "UnpairedImageDataModule", "UnpairedSampler"]

DOMAINS = ("A", "B")
CACHE_BYTES = 2**31  # cache=None decodes both domains into memory when they fit in 2 GiB


def domain_files(folder: Path) -> list[str]:
    """The image files below ``folder`` (searched recursively), sorted."""
    files = sorted(
        str(f)
        for f in folder.rglob("*")
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() and not f.name.startswith(".")
    )
    if not files:
        raise DataError(f"domain folder {str(folder)!r} holds no image files")
    return files


class UnpairedDataset(Dataset):
    """Two domains side by side: item ``i`` is ``{"image": a[i % len(a)], "image_b": b[j]}``.

    ``j`` is ``i % len(b)`` for an int index (validation, test: a fixed pairing); a training
    sampler (:class:`UnpairedSampler`) gives ``(i, j)`` tuples with a random ``j`` instead
    (CycleGAN's unaligned data set). The length is ``max(len(a), len(b))``: every image of the
    larger domain is seen once per epoch.

    Args:
        a, b: data sets of sample dicts with an ``image`` each.
    """

    def __init__(self, a: Dataset, b: Dataset) -> None:
        self.a, self.b = a, b
        self.len_a, self.len_b = len(a), len(b)

    def __len__(self) -> int:
        return max(self.len_a, self.len_b)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        i, j = index if isinstance(index, tuple) else (index, index % self.len_b)
        return {
            IMAGE: self.a[i % self.len_a][IMAGE],
            IMAGE_B: tv_tensors.Image(self.b[j][IMAGE]),
        }


class UnpairedSampler(Sampler[tuple[int, int]]):
    """A shuffled order of ``max(n_a, n_b)`` indices, each with a random domain-B index.

    Yields ``(i, j)``: ``i`` a permutation, ``j`` uniform in ``[0, n_b)``, both a function of
    ``(seed, epoch)`` only (so a resumed run sees the same pairs; Lightning calls
    :meth:`set_epoch`, and under DDP shards this sampler's output through its wrapper).
    """

    def __init__(self, n_a: int, n_b: int, seed: int = 0) -> None:
        self.n_a, self.n_b = n_a, n_b
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(self.n_a, self.n_b)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        order = torch.randperm(len(self), generator=g)
        partner = torch.randint(self.n_b, (len(self),), generator=g)
        yield from zip(order.tolist(), partner.tolist(), strict=True)


class UnpairedImageDataModule(SplitDataModule):
    """Two unpaired image domains in CycleGAN's layout.

    ``root/trainA`` and ``root/trainB`` are required; ``testA``/``testB`` and ``valA``/``valB``
    are used when present (both of a pair or neither), otherwise held out of each training
    domain with ``split.test_fraction`` / ``split.val_fraction`` (seeded with ``split.seed``;
    ``split.train_samples`` then caps each training domain). Images may sit flat or nested in
    the domain folders, in any format :func:`~visrep.data.load_image` reads.

    Samples are ``{"image": A image, "image_b": B image}`` in [0, 1]; training pairs each A
    image with a random B image, drawn again every epoch (Zhu et al. 2017's unaligned data);
    validation and test pair ``A[i % len(A)]`` with ``B[i % len(B)]``. Each split has
    ``max(len(A), len(B))`` samples.

    Args:
        root: the folder holding ``trainA/``, ``trainB/`` ...
        image_size: resize every image to this (int: square, or ``(H, W)``); None: all images
            must have one size (else a ``DataError`` naming the first that differs).
        channels: 1 (grey) or 3 (RGB) for both domains; default: 3 if the first training image
            of either domain is colour, else 1.
        cache: decode every image once into uint8 arrays; None: when both domains fit in 2 GiB.
        augment: training augmentation, applied to each domain's batch independently.
        loader, split: batches and held-out fractions (``split.stratify`` does not apply).

    A config::

        data:
          class_path: visrep.data.UnpairedImageDataModule
          init_args: {root: data/horse2zebra, image_size: 128, loader: {batch_size: 1}}
    """

    def __init__(
        self,
        root: str,
        image_size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        cache: bool | None = None,
        augment: AugmentConfig = AugmentConfig(),
        loader: LoaderConfig = LoaderConfig(),
        split: SplitConfig = SplitConfig(),
    ) -> None:
        super().__init__(loader, split)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root {root!r} is not a folder")
        if channels not in (None, 1, 3):
            raise ConfigError(f"data.channels must be 1 or 3 (or null), got {channels!r}")
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ConfigError(f"data.image_size must be > 0 (or (H, W)), got {image_size!r}")
        if loader.classes_per_batch is not None:
            raise ConfigError(
                "data.loader.classes_per_batch: unpaired images have no classes (P x K batches "
                "need them); leave it null"
            )
        self.size: tuple[int, int] | None = None if size is None else tuple(size)
        self.channels = channels
        self.cache = cache
        self.augment = augment
        self.mean: list[float] = []
        self.std: list[float] = []
        self.files: dict[str, dict[str, list[str]]] = {}

    # -- reading ---------------------------------------------------------------------------------
    def _layout(self) -> dict[str, dict[str, list[str]]]:
        """``{split: {domain: files}}`` of the splits present on disk (train always)."""
        found: dict[str, dict[str, list[str]]] = {}
        for name in ("train", "val", "test"):
            dirs = {d: self.root / f"{name}{d}" for d in DOMAINS}
            present = [d for d in DOMAINS if dirs[d].is_dir()]
            if name == "train" and len(present) < 2:
                missing = next(str(dirs[d]) for d in DOMAINS if d not in present)
                raise DataError(
                    f"data.root {str(self.root)!r} has no folder {missing!r}; expected "
                    "CycleGAN's layout trainA/ trainB/ (testA/ testB/, valA/ valB/ optional)"
                )
            if len(present) == 1:
                other = "B" if present[0] == "A" else "A"
                raise DataError(
                    f"{str(dirs[present[0]])!r} has no partner folder {str(dirs[other])!r}; "
                    f"{name}A/ and {name}B/ go together"
                )
            if present:
                found[name] = {d: domain_files(dirs[d]) for d in DOMAINS}
        return found

    def _check_sizes(self, layout: dict[str, dict[str, list[str]]]) -> tuple[int, int]:
        """The one size every image has (read from the headers), else a DataError naming a file."""
        files = [f for domains in layout.values() for fs in domains.values() for f in fs]
        size = probe_image(files[0])[1]
        for f in files[1:]:
            other = probe_image(f)[1]
            if other != size:
                raise DataError(
                    f"image {f!r} is {other[0]}x{other[1]} but {files[0]!r} is "
                    f"{size[0]}x{size[1]}; set data.image_size to resize them all"
                )
        return size

    def _domain(self, files: Sequence[str]) -> ImageFileDataset | ArrayImageDataset:
        ds = ImageFileDataset(files, [-1] * len(files), self.channels, self.size)
        if self.cache:
            return ArrayImageDataset(
                _decode_all(ds, self.loader.num_workers), np.zeros(len(files), np.int64)
            )
        return ds

    def _hold_out(self, n: int, fraction: float, seed: int, option: str) -> tuple[list, list]:
        keep, held = stratified_split(np.zeros(n, dtype=np.int64), fraction, seed, option)
        if len(held) == 0:
            raise ConfigError(f"{option} must be > 0: the data has no folders of that split")
        return keep.tolist(), held.tolist()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        layout = self._layout()
        if self.channels is None:
            grey = all(probe_image(layout["train"][d][0])[0] == 1 for d in DOMAINS)
            self.channels = 1 if grey else 3
        size = self.size or self._check_sizes(layout)
        if self.cache is None:
            n = sum(len(f) for domains in layout.values() for f in domains.values())
            self.cache = n * self.channels * size[0] * size[1] <= CACHE_BYTES
        cfg = self.split
        parts: dict[str, dict[str, Dataset]] = {"train": {}, "val": {}, "test": {}}
        files: dict[str, dict[str, list[str]]] = {"train": {}, "val": {}, "test": {}}
        for d in DOMAINS:
            paths = layout["train"][d]
            full = self._domain(paths)
            keep = list(range(len(paths)))
            for name, fraction, seed in (
                ("test", cfg.test_fraction, cfg.seed),
                ("val", cfg.val_fraction, cfg.seed + 1),
            ):
                if name in layout:
                    parts[name][d], files[name][d] = self._domain(layout[name][d]), layout[name][d]
                    continue
                if name == "val" and fraction == 0:
                    continue
                kept, held = self._hold_out(
                    len(keep), fraction, seed, f"data.split.{name}_fraction"
                )
                held_idx = [keep[i] for i in held]
                parts[name][d] = Subset(full, held_idx)
                files[name][d] = [paths[i] for i in held_idx]
                keep = [keep[i] for i in kept]
            if cfg.train_samples is not None and cfg.train_samples < len(keep):
                rng = np.random.default_rng(cfg.seed + 2)
                keep = sorted(rng.choice(keep, cfg.train_samples, replace=False).tolist())
            parts["train"][d] = Subset(full, keep)
            files["train"][d] = [paths[i] for i in keep]
        self.train_set = UnpairedDataset(parts["train"]["A"], parts["train"]["B"])
        self.test_set = UnpairedDataset(parts["test"]["A"], parts["test"]["B"])
        if parts["val"]:
            self.val_set = UnpairedDataset(parts["val"]["A"], parts["val"]["B"])
        self.files = {k: v for k, v in files.items() if v}
        self.class_names = list(DOMAINS)
        self.size = size
        self.mean, self.std = channel_stats(parts["train"]["A"], seed=cfg.seed)

    # -- loading ---------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        ds = self.train_set
        if ds is None:
            raise ConfigError(f"{type(self).__name__}.train_dataloader(): call setup() first")
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        seed = torch.initial_seed()  # as SplitDataModule: the same again when a run resumes
        cfg = self.loader
        return DataLoader(
            ds,
            batch_size=cfg.batch_size,
            sampler=UnpairedSampler(ds.len_a, ds.len_b, seed),
            drop_last=len(ds) > cfg.batch_size,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=on_gpu,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
        )

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if self.trainer is not None and self.trainer.training and self.augment.enabled:
            return {
                **batch,
                IMAGE: augment_batch(batch[IMAGE], self.augment),
                IMAGE_B: augment_batch(batch[IMAGE_B], self.augment),
            }
        return batch

    def sample_names(self, split: str = "test", domain: str = "A") -> list[str]:
        """The files of one domain of a split (``train`` / ``val`` / ``test``), in data set order
        (after :meth:`setup`); sample ``i`` of the split shows file ``i % len(files)``."""
        if split not in ("train", "val", "test") or domain not in DOMAINS:
            raise ConfigError(
                f"split must be train, val or test and domain A or B, got {split!r}, {domain!r}"
            )
        return list(self.files.get(split, {}).get(domain, []))

    def spec(self) -> DataSpec:
        """Family ``unpaired``: the domains ``("A", "B")`` as the two classes; mean and std of
        the training A images."""
        return DataSpec(
            family="unpaired",
            keys=(IMAGE, IMAGE_B),
            in_chans=self.channels,
            image_size=self.size,
            num_classes=len(DOMAINS),
            class_names=DOMAINS,
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
