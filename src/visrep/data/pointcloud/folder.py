"""Point clouds in the class-per-folder layout of the original ModelNet archives:
``<root>/<class>/{train,test}/*.(off|pcd|ply|npy)``.

Meshes (``.off``) are sampled to ``num_points`` on their surface once, when loaded (PointNet's
ModelNet clouds: "uniformly sample 1024 points on mesh faces according to face area", Qi et al.
2017, sec. 5.1), and kept in memory with the other clouds; everything after reading - unit-sphere
normalisation, the validation split, the test subsets, the training augmentation and the
:class:`~visrep.data.base.DataSpec` - is :class:`~visrep.data.pointcloud.ModelNetDataModule`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from visrep.data.base import LoaderConfig, SplitConfig, Splits, stratified_split
from visrep.data.pointcloud.io import read_points
from visrep.data.pointcloud.modelnet import (
    ModelNetDataModule,
    PointAugmentConfig,
    normalize_unit_sphere,
)
from visrep.errors import ConfigError, DataError

__all__ = ["FOLDER_SUFFIXES", "PointCloudFolderDataModule", "scan_class_folders"]

FOLDER_SUFFIXES = (".off", ".pcd", ".ply", ".npy")


def scan_class_folders(
    root: Path, suffixes: tuple[str, ...] = FOLDER_SUFFIXES
) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names (sorted folder names) and, per split (``train``, ``test``), the files with
    their class index, in sorted order.

    Raises:
        DataError: ``root`` is missing, or holds no ``<class>/train`` folder with point files.
    """
    if not root.is_dir():
        raise DataError(
            f"data.root {str(root)!r} is not a folder (expected <class>/train/*.off ...)"
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "train").is_dir())
    if not classes:
        raise DataError(
            f"data.root {str(root)!r} has no <class>/train folders (the ModelNet layout "
            f"<class>/{{train,test}}/*{'|'.join(suffixes)})"
        )
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for c, name in enumerate(classes):
        for split in files:
            folder = root / name / split
            if folder.is_dir():
                found = sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes)
                files[split] += [(f, c) for f in found]
    if not files["train"]:
        raise DataError(f"data.root {str(root)!r}: no {'/'.join(suffixes)} files in <class>/train")
    return classes, files


class PointCloudFolderDataModule(ModelNetDataModule):
    """Classified point clouds from ``<root>/<class>/{train,test}/*.(off|pcd|ply|npy)``.

    The ``test`` folders are the test set (without any, ``split.test_fraction`` of the training
    files is held out); validation is a seeded, stratified share of the training clouds
    (``split.val_fraction``). Clouds are centred and scaled to the unit sphere when loaded.

    Args:
        root: the folder holding one folder per class.
        num_points: points per cloud. Meshes are sampled to this many points once (seeded by
            ``split.seed``); a cloud with another size gets a fresh random subset (or random
            repeats) per training draw and one seeded subset for validation and test. None
            keeps every cloud as read (then every ``.off`` mesh needs ``num_points``).
        augment: training augmentation.
        nonfinite: points with a NaN / infinite coordinate: ``"error"`` or ``"drop"``.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        root: str = "data/ModelNet10",
        num_points: int | None = 1024,
        augment: PointAugmentConfig | None = None,
        nonfinite: Literal["error", "drop"] = "error",
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(root, num_points, augment, loader, split)
        if nonfinite not in ("error", "drop"):
            raise ConfigError(f"data.nonfinite must be 'error' or 'drop', got {nonfinite!r}")
        self.nonfinite = nonfinite

    def _read_all(self, files: list[tuple[Path, int]], g: torch.Generator) -> list[Tensor]:
        clouds = []
        for path, _ in files:
            opts: dict = {"nonfinite": self.nonfinite}
            if path.suffix.lower() == ".off":
                if self.num_points is None:
                    raise ConfigError(
                        f"data.num_points must be set to sample the mesh {str(path)!r}"
                    )
                opts.update(num_points=self.num_points, generator=g)
            cloud = read_points(path, **opts)
            if len(cloud) == 0:
                raise DataError(f"{path}: the cloud has no points")
            clouds.append(torch.from_numpy(cloud.points.copy()))
        return clouds

    def load(self) -> Splits:
        classes, files = scan_class_folders(self.root)
        g = torch.Generator().manual_seed(self.split.seed)  # mesh sampling, eval subsets
        train = self._read_all(files["train"], g)
        test = self._read_all(files["test"], g)
        dims = {c.shape[1] for c in train + test}
        if len(dims) > 1:
            first = {}
            for (path, _), c in zip(files["train"] + files["test"], train + test, strict=True):
                first.setdefault(c.shape[1], path)
            raise DataError(
                f"data.root {str(self.root)!r}: clouds have different columns: "
                + ", ".join(f"{d} ({first[d].name})" for d in sorted(first))
            )
        train = [normalize_unit_sphere(c) for c in train]
        test = [normalize_unit_sphere(c) for c in test]
        self.point_dim = train[0].shape[1]
        y_train = torch.tensor([c for _, c in files["train"]], dtype=torch.int64)
        y_test = torch.tensor([c for _, c in files["test"]], dtype=torch.int64)
        if not test:  # no test folders: hold out a seeded, stratified share, evaluated as such
            y = y_train.numpy() if self.split.stratify else np.zeros(len(train), np.int64)
            keep, held = stratified_split(
                y, self.split.test_fraction, self.split.seed, "data.split.test_fraction"
            )
            if len(held) == 0:
                raise ConfigError(
                    f"data.root {str(self.root)!r} has no <class>/test folders: "
                    "data.split.test_fraction must be > 0"
                )
            test, y_test = [train[i] for i in held], y_train[held]
            train, y_train = [train[i] for i in keep], y_train[keep]
        return self._splits(train, y_train, test, y_test, classes, g)
