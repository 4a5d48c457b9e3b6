"""Identity folders: ``root/<identity>/*.pgm|png|jpg``, one folder of images per person.

The data of face verification and metric learning (seed 001, "Deep embeddings": Siamese
networks trained on pairs of one person or two). The splits are by identity: verification on
val / test measures how the embedding generalises to people never seen in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visrep.data.augment import AugmentConfig
from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, Splits
from visrep.data.classification.folder import ImageFolderDataModule
from visrep.data.datasets import IMAGE_EXTENSIONS, probe_image
from visrep.data.embedding.pairs import natural_key, read_pairs
from visrep.errors import ConfigError, DataError


def scan_identity_folders(root: str | Path) -> dict[str, list[str]]:
    """The image files of each ``root/<identity>/`` folder (searched recursively), in natural
    sort order (image number i of a pair list is the i-th), identities in natural sort order of
    their names (ORL: ``s1, s2, ..., s40``).

    Raises:
        DataError: ``root`` is not a folder, holds no identity folders, or an identity folder
            holds fewer than two images (verification needs a same pair of every identity; so
            LFW's one-image people must be removed from the tree first).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root {str(root)!r} is not a folder")
    folders = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    names = sorted(folders, key=natural_key)
    if not names:
        raise DataError(f"data.root {str(root)!r} has no identity folders; expected root/<id>/*")
    out: dict[str, list[str]] = {}
    for name in names:
        files = [
            f
            for f in (root / name).rglob("*")
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
        ]
        if len(files) < 2:
            raise DataError(
                f"identity folder {str(root / name)!r} has {len(files)} image(s); verification "
                "needs at least 2 per identity"
            )
        rel = sorted((str(f.relative_to(root / name)) for f in files), key=natural_key)
        out[name] = [str(root / name / r) for r in rel]
    return out


@dataclass(frozen=True)
class IdentitySplit:
    """Which identities go to val and test (``--data.identities.test 10`` etc.).

    Every identity is in exactly one split. The ORL protocol of the issue (train on 30 people,
    verify on the 10 others) is the default: 10 test identities and, carved from the other 30,
    5 validation identities, so that validation also verifies on people unseen in training.

    Attributes:
        val: validation identities: a count (int) or a fraction of all identities (float in
            [0, 1), rounded up); 0 for no validation split, else at least 2.
        test: test identities, likewise (at least 2: verification needs different pairs).
        seed: seed of the random choice of the val and test identities.
        val_identities: explicit validation identity names (then ``val`` is not used).
        test_identities: explicit test identity names (then ``test`` is not used).
    """

    val: int | float = 5
    test: int | float = 10
    seed: int = 0
    val_identities: tuple[str, ...] | None = None
    test_identities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("val", "test"):
            v = getattr(self, name)
            ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (
                isinstance(v, float) and 0 <= v < 1
            )
            if not ok:
                raise ConfigError(
                    f"data.identities.{name} must be a count >= 0 or a fraction in [0, 1), got {v!r}"
                )
            given = getattr(self, f"{name}_identities")
            if given is not None:
                object.__setattr__(self, f"{name}_identities", tuple(str(x) for x in given))


def _count(v: int | float, n: int) -> int:
    return v if isinstance(v, int) else math.ceil(v * n)


def split_identities(
    names: Sequence[str], split: IdentitySplit
) -> tuple[list[str], list[str], list[str]]:
    """Disjoint ``(train, val, test)`` identity names, each in natural sort order: explicit
    lists first, then the counts drawn at random (``split.seed``) from the rest, test first.

    >>> train, val, test = split_identities([f"s{i}" for i in range(10)], IdentitySplit(2, 0.3))
    >>> len(train), len(val), len(test), set(train) & set(val + test)
    (5, 2, 3, set())
    """
    names = sorted(names, key=natural_key)
    known = set(names)
    fixed: dict[str, list[str]] = {}
    for which in ("test", "val"):
        given = getattr(split, f"{which}_identities")
        if given is None:
            continue
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(
                f"data.identities.{which}_identities: {unknown} are not identity folders"
            )
        fixed[which] = sorted(set(given), key=natural_key)
    both = sorted(set(fixed.get("test", [])) & set(fixed.get("val", [])))
    if both:
        raise ConfigError(f"data.identities: {both} are in both val_identities and test_identities")
    taken = set(fixed.get("test", [])) | set(fixed.get("val", []))
    rest = [n for n in names if n not in taken]
    rest = [rest[i] for i in np.random.default_rng(split.seed).permutation(len(rest))]
    out: dict[str, list[str]] = {}
    for which in ("test", "val"):
        if which in fixed:
            out[which] = fixed[which]
            continue
        k = _count(getattr(split, which), len(names))
        out[which], rest = sorted(rest[:k], key=natural_key), rest[k:]
    train = sorted(rest, key=natural_key)
    if len(out["test"]) < 2:
        raise ConfigError(
            f"data.identities.test: {len(out['test'])} test identities; verification needs at "
            "least 2 (for different pairs)"
        )
    if len(out["val"]) == 1:
        raise ConfigError(
            "data.identities.val: 1 validation identity; use 0 (no validation) or at least 2 "
            "(verification needs different pairs)"
        )
    if len(train) < 2:
        raise ConfigError(
            f"data.identities: {len(names)} identities leave {len(train)} for training after "
            f"{len(out['val'])} val and {len(out['test'])} test; need at least 2"
        )
    return train, out["val"], out["test"]


class IdentityFolderDataModule(ImageFolderDataModule):
    """People's images in one folder each, split by identity (no identity in two splits).

    Samples are ``{"image": Image, "label": int}``; the label is the identity's index among
    ALL identities (``spec().class_names``, in natural sort order: ORL's ``s1`` is 0, ``s2``
    is 1), whatever the split. Mean and std come from
    the training identities' images. Within each split the samples are ordered by identity
    name, then by natural file order (what :attr:`test_pairs` indexes).

    With ``--data.loader.classes_per_batch P`` (and ``samples_per_class K``) training batches
    hold P identities x K images each (:class:`~visrep.data.embedding.PKBatchSampler`).

    Args:
        root: the folder of identity folders (ORL: ``sN/M.pgm``; LFW: ``Name/Name_0001.jpg``).
        channels: 1 (grey) or 3 (RGB); default: 1 if the first image is grey, else 3.
        image_size: resize every image to this (int or (H, W)); default: the first image's.
        identities: which identities are val and test (:class:`IdentitySplit`).
        pairs: an LFW ``pairs.txt``-layout file of test pairs (see
            :mod:`visrep.data.embedding.pairs`) -> :attr:`test_pairs`; its identities must all
            be test identities (set ``identities.test_identities`` to match).
        cache: decode all images once into memory instead of reading files every epoch.
        loader, augment: batches and training augmentation (see
            :class:`~visrep.data.base.ImageDataModule`).

    Attributes:
        test_pairs: ``(n, 3)`` int64 rows ``(i, j, same)`` indexing ``test_set`` in loader
            order, from ``pairs``; None without a pair file (tasks then use all pairs).
        val_pairs: always None (validation uses all pairs of its identities).
        identity_splits: ``{"train" | "val" | "test": identity names}``.
    """

    def __init__(
        self,
        root: str,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        identities: IdentitySplit = IdentitySplit(),
        pairs: str | None = None,
        cache: bool = False,
        loader: LoaderConfig = LoaderConfig(),
        augment: AugmentConfig = AugmentConfig(),
    ) -> None:
        # Validation is a split of identities made in load(): no sample-level val split.
        split = SplitConfig(val_fraction=0.0, seed=identities.seed)
        super().__init__(root, channels, image_size, cache, loader, split, augment)
        if pairs is not None and not Path(pairs).is_file():
            raise DataError(f"data.pairs {pairs!r} is not a file")
        self.identities = identities
        self.pairs = pairs
        self.test_pairs: Tensor | None = None
        self.val_pairs: Tensor | None = None
        self.identity_splits: dict[str, list[str]] = {}
        self._files: dict[str, list[str]] = {}
        self._test_index: dict[str, list[int]] = {}

    def load(self) -> Splits:
        files = scan_identity_folders(self.root)
        names = list(files)
        train, val, test = split_identities(names, self.identities)
        self.identity_splits = {"train": train, "val": val, "test": test}
        if self.channels is None or self.size is None:
            channels, size = probe_image(files[names[0]][0])
            self.channels = self.channels or channels
            self.size = self.size or size
        label = {n: i for i, n in enumerate(names)}
        data = {}
        for which, ids in self.identity_splits.items():
            if not ids:  # no validation identities
                continue
            paths = [f for n in ids for f in files[n]]
            targets = [label[n] for n in ids for _ in files[n]]
            self._files[which] = paths
            data[which] = (self._dataset(paths, targets), np.asarray(targets, dtype=np.int64))
        starts = np.cumsum([0] + [len(files[n]) for n in test])
        self._test_index = {n: list(range(starts[i], starts[i + 1])) for i, n in enumerate(test)}
        return Splits(
            train=data["train"][0],
            train_targets=data["train"][1],
            class_names=names,
            test=data["test"][0],
            val=data["val"][0] if "val" in data else None,
        )

    def on_splits_ready(self) -> None:
        super().on_splits_ready()
        if self.pairs is not None:
            self.test_pairs = torch.from_numpy(read_pairs(self.pairs, self._test_index))

    def sample_names(self, split: str = "test") -> list[str]:
        """The image file of each sample of ``split`` (train / val / test), in loader order
        (train: before PK or shuffled sampling)."""
        if split not in ("train", "val", "test"):
            raise ConfigError(f"split must be train, val or test, got {split!r}")
        return list(self._files.get(split, []))

    def spec(self) -> DataSpec:
        """What the model needs (after :meth:`setup`): family ``identity``, every identity a
        class."""
        return replace(super().spec(), family="identity")
