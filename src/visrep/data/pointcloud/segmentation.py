"""Point clouds with a class per point, from files: the data of point-cloud segmentation.

Layouts of ``root``:

* ``<root>/{train,val,test}/*.(npy|npz|ply|pcd|bin)``: one split per folder (without ``val``,
  ``split.val_fraction`` of the training FILES is held out when there are at least two);
* ``<root>/*.(...)`` or ``root`` a single file, with ``region``: every scan is cut into regions
  (:class:`RegionSplit`: points whose forward distance, side offset, height, range or azimuth
  falls in a given interval form the test or validation region, the rest is trained on), so
  train, validation and test points never overlap;
* ``<root>/*.(...)`` without ``region``: a seeded split of the files (``split``'s fractions).

Validation is always evaluated like the test set (every point of whole held-out files or of the
``region.val`` region, once, without augmentation), never carved from the training samples
(randomly drawn, augmented, and overlapping with other training blocks): with
``split.val_fraction > 0``, a region split needs ``region.val`` and a ``train/`` folder without
``val/`` needs two training files, else :class:`~visrep.errors.ConfigError` (or set
``split.val_fraction`` to 0: no validation). Class weights come from the training samples only.

Labels come from the file (a ``label`` field of a PLY / PCD, ``point_labels`` of an ``.npz``,
a ``label`` column of a ``.bin`` / ``.npy`` named by ``columns``) or from a ``.label`` file as
SemanticKITTI ships them (uint32 per point, the class in the lower 16 bits; next to the scan or
in a ``labels`` folder beside its ``velodyne`` folder), optionally through ``label_map``.

Large scans are cut into blocks (:class:`BlockConfig`, PointNet's recipe, Qi et al. 2017 sec.
5.1): training draws ``num_points`` points of a block at random each time it is read;
validation and test cover every point of their region exactly once (blocks that partition
it, cut into random chunks of at most ``eval_points``), so their metrics are over all points.
A block's points are centred on the block's x-y centre (z kept), as the authors' code does.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.pointcloud.blocks import chunk_indices, grid_blocks
from visrep.data.pointcloud.io import READERS, NpzArchive, read_points
from visrep.data.pointcloud.modelnet import PointAugmentConfig
from visrep.data.samples import META, POINT_LABELS, POINTS
from visrep.data.segmentation.base import median_frequency_weights
from visrep.errors import ConfigError, DataError

__all__ = [
    "BlockConfig",
    "PointSegmentationDataModule",
    "PointSegmentationDataset",
    "RegionSplit",
    "read_labelled_cloud",
    "region_values",
]

SEG_SUFFIXES = (".npy", ".npz", ".ply", ".pcd", ".bin")


@dataclass(frozen=True)
class BlockConfig:
    """Square x-y blocks of a scan (``--data.blocks.size 1 --data.blocks.num_points 4096``).

    Attributes:
        size: the side of a block (the paper: 1 m).
        stride: between training blocks' starts (the authors' data: 0.5, half-overlapping);
            evaluation always uses ``stride = size`` so each point is scored once.
        num_points: points drawn from a training block each time it is read (the paper: 4096;
            without replacement, or all points plus random repeats when it has fewer).
        min_points: training blocks with fewer points are skipped (the authors' code: 100).
        eval_points: evaluation chunks hold at most this many points (None: ``num_points``).
        location: append each point's x, y, z normalised to [0, 1] over its scan (the last
            three of the paper's 9-d input, "normalized location as to the room").
    """

    size: float = 1.0
    stride: float = 0.5
    num_points: int = 4096
    min_points: int = 100
    eval_points: int | None = None
    location: bool = False

    def __post_init__(self) -> None:
        if not (self.size > 0 and 0 < self.stride <= self.size):
            raise ConfigError(
                f"data.blocks: size must be > 0 and stride in (0, size], got {self.size}, {self.stride}"
            )
        if self.num_points < 1 or self.min_points < 1:
            raise ConfigError("data.blocks: num_points and min_points must be >= 1")
        if self.eval_points is not None and self.eval_points < 1:
            raise ConfigError(f"data.blocks.eval_points must be >= 1, got {self.eval_points}")


@dataclass(frozen=True)
class RegionSplit:
    """Held-out regions of every scan (``--data.region.by azimuth --data.region.test [-45,-15]``).

    A point belongs to the test region when its ``by`` value lies in ``[test[0], test[1])``,
    else to the validation region when it lies in ``val``, else to training.

    Attributes:
        by: ``x``, ``y``, ``z`` (the coordinate; for a KITTI scan x is forward and y left),
            ``range`` (``sqrt(x^2 + y^2)``) or ``azimuth`` (``atan2(y, x)`` in degrees, 0
            forward, positive to the left).
        test, val: the intervals; None holds out nothing for that split.
    """

    by: Literal["x", "y", "z", "range", "azimuth"] = "azimuth"
    test: tuple[float, float] | None = None
    val: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.by not in ("x", "y", "z", "range", "azimuth"):
            raise ConfigError(f"data.region.by must be x, y, z, range or azimuth, got {self.by!r}")
        for name in ("test", "val"):
            v = getattr(self, name)
            if v is not None and (len(v) != 2 or not v[0] < v[1]):
                raise ConfigError(
                    f"data.region.{name} must be [low, high) with low < high, got {v}"
                )

    def masks(self, xyz: np.ndarray) -> dict[str, np.ndarray]:
        """``{"train", "val", "test"}`` boolean masks over the points (disjoint, covering)."""
        v = region_values(xyz, self.by)
        out = {}
        taken = np.zeros(len(v), dtype=bool)
        for name in ("test", "val"):
            iv = getattr(self, name)
            m = np.zeros(len(v), dtype=bool) if iv is None else (v >= iv[0]) & (v < iv[1])
            out[name] = m & ~taken
            taken |= m
        out["train"] = ~taken
        return out


def region_values(xyz: np.ndarray, by: str) -> np.ndarray:
    """The per-point value a :class:`RegionSplit` compares: a coordinate, the x-y range or the
    azimuth in degrees.

    >>> region_values(np.array([[1.0, 1.0, 0.0]]), "azimuth").round(6).tolist()
    [45.0]
    """
    p = np.asarray(xyz, dtype=np.float64)
    if by in ("x", "y", "z"):
        return p[:, "xyz".index(by)]
    if by == "range":
        return np.hypot(p[:, 0], p[:, 1])
    return np.degrees(np.arctan2(p[:, 1], p[:, 0]))


def _label_file(path: Path) -> Path | None:
    """SemanticKITTI's ``.label`` of a scan: beside it, or ``../labels/<stem>.label``."""
    for c in (path.with_suffix(".label"), path.parent.parent / "labels" / f"{path.stem}.label"):
        if c.is_file():
            return c
    return None


def read_labelled_cloud(
    path: str | Path, label_field: str = "label", columns: list[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Points ``(N, 3 + F)`` float32, their feature names and raw labels ``(N,)`` int64.

    Raises:
        DataError: no labels, a ``.label`` file whose count differs from the points, bad files.
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None or path.suffix.lower() not in SEG_SUFFIXES:
        raise DataError(f"{path}: expected one of {', '.join(SEG_SUFFIXES)}")
    params = inspect.signature(reader).parameters
    opts: dict[str, Any] = {}
    if "label_field" in params:
        opts["label_field"] = label_field
    if columns is not None:
        if "columns" not in params:
            raise ConfigError(f"data.columns does not apply to {path.suffix} files ({path})")
        opts["columns"] = list(columns)
    cloud = read_points(path, **opts)
    labels, names, feats = cloud.labels, list(cloud.feature_names), cloud.features
    if labels is None and label_field in names:  # a label column read as a feature
        j = names.index(label_field)
        col = feats[:, j]
        if (col != np.round(col)).any():
            raise DataError(f"{path}: column {label_field!r}: labels must be integers")
        labels = col.astype(np.int64)
        feats = np.delete(feats, j, 1) if len(names) > 1 else None
        names.pop(j)
    lab_file = _label_file(path)
    if lab_file is not None:
        raw = np.fromfile(lab_file, dtype="<u4")
        if lab_file.stat().st_size % 4 or len(raw) != len(cloud):
            raise DataError(
                f"{lab_file}: {lab_file.stat().st_size / 4:g} labels for the {len(cloud)} points "
                f"of {path.name} (one uint32 per point expected)"
            )
        labels = (raw & 0xFFFF).astype(np.int64)  # upper 16 bits: the instance id
    if labels is None:
        raise DataError(
            f"{path}: no per-point labels (no {label_field!r} field or column, no .label file)"
        )
    xyz = cloud.xyz
    pts = xyz if feats is None else np.concatenate([xyz, feats], 1)
    return np.ascontiguousarray(pts, dtype=np.float32), tuple(names), labels


class PointSegmentationDataset(Dataset):
    """Samples of point clouds with per-point labels: whole clouds, or blocks of them.

    Items are ``{"points": (n, D), "point_labels": (n,), "meta": {"file", "index", "offset"}}``
    with ``index`` the points' indices in their file (what ``predict`` writes labels back to)
    and ``offset`` the ``(3,)`` shift subtracted from their x, y, z (the block's x-y centre).

    Args:
        clouds, labels: per file ``(N_f, D)`` float32 and ``(N_f,)`` int64.
        names: the file of each cloud.
        items: ``(file, point indices, x-y centre subtracted or None)`` per sample.
        num_points: draw this many points of an item per read (training), or None for all.
        transform: augmentation of the (centred) sample, or None.
    """

    def __init__(
        self,
        clouds: list[Tensor],
        labels: list[Tensor],
        names: list[str],
        items: list[tuple[int, np.ndarray, np.ndarray | None]],
        num_points: int | None = None,
        transform: Any = None,
    ) -> None:
        self.clouds, self.labels, self.names, self.items = clouds, labels, names, items
        self.num_points, self.transform = num_points, transform

    def __len__(self) -> int:
        return len(self.items)

    def item_names(self) -> list[str]:
        return [f"{Path(self.names[f]).name}#{i}" for i, (f, _, _) in enumerate(self.items)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        f, idx, centre = self.items[i]
        index = torch.from_numpy(idx)
        k = self.num_points
        if k is not None:  # PointNet's sample_data: a subset, or all points plus repeats
            n = len(index)
            pick = (
                torch.randperm(n)[:k]
                if n >= k
                else torch.cat([torch.arange(n), torch.randint(n, (k - n,))])
            )
            index = index[pick]
        pts = self.clouds[f][index]
        offset = torch.zeros(3, dtype=pts.dtype)
        if centre is not None:
            offset[:2] = torch.from_numpy(centre)
            pts[:, :3] -= offset
        sample = {
            POINTS: pts,
            POINT_LABELS: self.labels[f][index],
            META: {"file": self.names[f], "index": index, "offset": offset},
        }
        return self.transform(sample) if self.transform is not None else sample


class PointSegmentationDataModule(SplitDataModule):
    """Per-point labelled clouds from files, whole or cut into blocks (see the module docstring).

    Args:
        root: a folder (``train/val/test`` folders, or the files themselves) or one file.
        blocks: cut scans into blocks; None: every cloud (or region of one) is one sample.
        region: held-out regions of every scan (a root without split folders only).
        class_names: one name per class; None: an ``.npz``'s ``class_names`` array, else
            ``0 .. max label``.
        label_map: raw label -> class (labels not in it are ignored); None: labels are classes.
        ignore_index: the label that counts in no loss or metric (None: every label counts).
        label_field: the field / column holding the labels.
        columns: column names of ``.bin`` / ``.npy`` files (x, y, z first; e.g.
            ``[x,y,z,intensity,label]``).
        augment: training augmentation (after centring); None: none (PointNet's scene training).
        loader, split: as in :class:`~visrep.data.base.SplitDataModule` (``split.seed`` also
            seeds the evaluation chunks).
    """

    def __init__(
        self,
        root: str,
        blocks: BlockConfig | None = None,
        region: RegionSplit | None = None,
        class_names: list[str] | None = None,
        label_map: dict[int, int] | None = None,
        ignore_index: int | None = 255,
        label_field: str = "label",
        columns: list[str] | None = None,
        augment: PointAugmentConfig | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=16), split)
        self.root = Path(root)
        self.blocks, self.region = blocks, region
        self.given_names = list(class_names) if class_names else None
        self.label_map = dict(label_map) if label_map else None
        self.ignore_index, self.label_field, self.columns = ignore_index, label_field, columns
        self.augment = augment
        self.point_dim = 0
        self.class_weights: tuple[float, ...] | None = None

    # -- files ---------------------------------------------------------------------------------
    def _files(self) -> dict[str, list[Path]]:
        root = self.root
        if root.is_file():
            return {"all": [root]}
        if not root.is_dir():
            raise DataError(f"data.root {str(root)!r} does not exist")

        def listing(folder: Path) -> list[Path]:
            return sorted(f for f in folder.iterdir() if f.suffix.lower() in SEG_SUFFIXES)

        if (root / "train").is_dir():
            if self.region is not None:
                raise ConfigError(
                    f"data.region applies to a root without train/val/test folders ({root})"
                )
            out = {s: listing(root / s) for s in ("train", "val", "test") if (root / s).is_dir()}
            if not out["train"]:
                raise DataError(
                    f"data.root {str(root)!r}: no {'/'.join(SEG_SUFFIXES)} files in train/"
                )
            return out
        files = listing(root)
        if not files:
            raise DataError(f"data.root {str(root)!r}: no {'/'.join(SEG_SUFFIXES)} files")
        return {"all": files}

    def _read(
        self, files: list[Path]
    ) -> tuple[list[np.ndarray], list[np.ndarray], tuple[str, ...]]:
        points, labels, feature_names = [], [], None
        for f in files:
            pts, names, raw = read_labelled_cloud(f, self.label_field, self.columns)
            if feature_names is not None and names != feature_names:
                raise DataError(f"{f}: fields {names} differ from the first file's {feature_names}")
            feature_names = names
            points.append(pts)
            labels.append(raw)
        return points, labels, feature_names or ()

    def _classes(self, files: list[Path], labels: list[np.ndarray]) -> list[str]:
        if self.given_names:
            return self.given_names
        for f in files:
            if f.suffix.lower() == ".npz":
                with NpzArchive(f) as z:
                    if "class_names" in z.files:
                        return [str(n) for n in z["class_names"]]
        if self.label_map:
            return [str(c) for c in range(max(self.label_map.values()) + 1)]
        ign = self.ignore_index
        top = max(int(lab[lab != ign].max(initial=-1)) for lab in labels)
        return [str(c) for c in range(top + 1)]

    def _map(self, path: Path, raw: np.ndarray, k: int) -> np.ndarray:
        ign = self.ignore_index
        if self.label_map:
            if ign is None:
                raise ConfigError("data.label_map needs data.ignore_index for unmapped labels")
            keys = np.array(sorted(self.label_map), dtype=np.int64)
            vals = np.array([self.label_map[int(x)] for x in keys], dtype=np.int64)
            pos = np.clip(np.searchsorted(keys, raw), 0, len(keys) - 1)
            raw = np.where(keys[pos] == raw, vals[pos], ign)
        bad = ((raw < 0) | (raw >= k)) & (raw != (ign if ign is not None else -(2**62)))
        if bad.any():
            raise DataError(
                f"{path}: label {int(raw[bad][0])} out of range 0..{k - 1} ({int(bad.sum())} "
                f"points; {k} classes; set data.class_names, data.label_map or data.ignore_index)"
            )
        return raw

    # -- splits --------------------------------------------------------------------------------
    def load(self) -> Splits:
        found = self._files()
        order = [f for part in found.values() for f in part]
        points, raw, self.feature_names = self._read(order)
        names = self._classes(order, raw)
        labels = [self._map(f, r, len(names)) for f, r in zip(order, raw, strict=True)]
        dims = {p.shape[1] for p in points}
        if len(dims) != 1:
            raise DataError(
                f"data.root {str(self.root)!r}: files have different columns {sorted(dims)}"
            )
        feats = [self._features(p) for p in points]
        self.point_dim = feats[0].shape[1]
        parts = self._parts(found, points)
        clouds = [torch.from_numpy(p) for p in feats]
        tlabels = [torch.from_numpy(lab) for lab in labels]
        fnames = [str(f) for f in order]
        g = torch.Generator().manual_seed(self.split.seed)
        train_items = self._items(parts["train"], points, train=True, g=g)
        if not train_items:
            raise DataError(f"data.root {str(self.root)!r}: no training points (or blocks)")
        self.class_weights = self._weights(train_items, labels, len(names))
        aug = self.augment.transform() if self.augment is not None else None
        k = self.blocks.num_points if self.blocks is not None else None
        train = PointSegmentationDataset(clouds, tlabels, fnames, train_items, k, aug)

        def evaluation(key: str) -> PointSegmentationDataset | None:
            items = self._items(parts.get(key, []), points, train=False, g=g)
            return PointSegmentationDataset(clouds, tlabels, fnames, items) if items else None

        test, val = evaluation("test"), evaluation("val")
        if test is None:
            raise DataError(f"data.root {str(self.root)!r}: the test split has no points")
        if val is None and self.split.val_fraction > 0:
            raise ConfigError(self._no_val_reason(found))
        return Splits(train, None, names, test=test, val=val)

    def _no_val_reason(self, found: dict[str, list[Path]]) -> str:
        """Why there is no validation split (the base class would carve one from the randomly
        drawn, augmented and overlapping training samples, so it is refused instead)."""
        off = "or set data.split.val_fraction 0 (no validation)"
        if self.region is not None and self.region.val is None:
            return (
                f"data.region has no val interval: set data.region.val (a validation region) {off}"
            )
        if "all" not in found and "val" not in found:
            return (
                f"data.root {str(self.root)!r}: no val/ folder and {len(found['train'])} training "
                f"file(s), too few to hold one out: add val/ {off}"
            )
        return f"data.root {str(self.root)!r}: the validation split has no points: {off}"

    def _features(self, pts: np.ndarray) -> np.ndarray:
        if self.blocks is None or not self.blocks.location:
            return pts
        xyz = pts[:, :3].astype(np.float64)
        lo, hi = xyz.min(0), xyz.max(0)
        loc = (xyz - lo) / np.where(hi > lo, hi - lo, 1.0)
        return np.concatenate([pts, loc.astype(np.float32)], 1)

    def _parts(
        self, found: dict[str, list[Path]], points: list[np.ndarray]
    ) -> dict[str, list[tuple[int, np.ndarray]]]:
        """Per split: ``(file index, point indices)``."""
        parts: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "val": [], "test": []}
        if "all" not in found:
            i = 0
            for s, files in found.items():
                for _ in files:
                    parts[s].append((i, np.arange(len(points[i]))))
                    i += 1
            if not parts["val"] and self.split.val_fraction > 0 and len(parts["train"]) >= 2:
                n_val = max(1, math.floor(self.split.val_fraction * len(parts["train"])))
                perm = np.random.default_rng(self.split.seed + 1).permutation(len(parts["train"]))
                held = set(perm[:n_val].tolist())
                parts["val"] = [p for j, p in enumerate(parts["train"]) if j in held]
                parts["train"] = [p for j, p in enumerate(parts["train"]) if j not in held]
            return parts
        if self.region is not None:
            for i, p in enumerate(points):
                for s, m in self.region.masks(p[:, :3]).items():
                    if m.any():
                        parts[s].append((i, np.flatnonzero(m)))
            return parts
        n = len(points)
        n_test = math.ceil(self.split.test_fraction * n)
        n_val = math.ceil(self.split.val_fraction * n)
        if n - n_test - n_val < 1 or n_test < 1:
            raise ConfigError(
                f"data.root {str(self.root)!r} holds {n} file(s): too few to split by file "
                "(data.split fractions); set data.region to hold out a region of each scan"
            )
        perm = np.random.default_rng(self.split.seed).permutation(n)
        for j, i in enumerate(perm.tolist()):
            s = "test" if j < n_test else "val" if j < n_test + n_val else "train"
            parts[s].append((i, np.arange(len(points[i]))))
        return parts

    def _items(
        self,
        parts: list[tuple[int, np.ndarray]],
        points: list[np.ndarray],
        train: bool,
        g: torch.Generator,
    ) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        b = self.blocks
        if b is None:
            return [(f, idx, None) for f, idx in parts]
        items = []
        for f, idx in parts:  # per file: few
            stride, low = (b.stride, b.min_points) if train else (b.size, 1)
            blocks, origins = grid_blocks(points[f][idx, :2], b.size, stride, low)
            for sub, origin in zip(blocks, origins, strict=True):
                centre = (origin + b.size / 2).astype(np.float32)
                if train:
                    items.append((f, idx[sub], centre))
                else:
                    for c in chunk_indices(len(sub), b.eval_points or b.num_points, g):
                        items.append((f, idx[sub[c]], centre))
        return items

    def _weights(
        self,
        items: list[tuple[int, np.ndarray, np.ndarray | None]],
        labels: list[np.ndarray],
        k: int,
    ) -> tuple[float, ...]:
        """Median-frequency weights over the training samples' points (ignored labels left out)."""
        lab = np.concatenate([labels[f][idx] for f, idx, _ in items])
        owner = np.repeat(np.arange(len(items)), [len(idx) for _, idx, _ in items])
        ok = (lab >= 0) & (lab < k)
        per = np.bincount(owner[ok] * k + lab[ok], minlength=len(items) * k).reshape(-1, k)
        present_points = ((per > 0) * per.sum(1, keepdims=True)).sum(0)
        return tuple(float(w) for w in median_frequency_weights(per.sum(0), present_points))

    def sample_names(self) -> list[str]:
        """``<file>#<sample>`` of each test sample (the rows of ``predictions.csv``)."""
        return self.test_set.item_names() if self.test_set is not None else []

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="pointcloud_segmentation",
            keys=(POINTS, POINT_LABELS),
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            ignore_index=self.ignore_index,
            class_weights=self.class_weights,
            point_dim=self.point_dim,
        )
