"""Point clouds with one class each, from arrays: the ModelNet ``.npz`` layout (``x_train`` ``(S,
N, D)``, ``y_train``, ``x_test``, ``y_test``, ``classes``) of ``../shared/data/modelnet10``.

Clouds are centred and scaled to the unit sphere once, when loaded (PointNet, Sec. 5.1); the
training augmentation (:class:`PointAugmentConfig`) is drawn per sample, per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.base import (
    DataSpec,
    LoaderConfig,
    SplitConfig,
    SplitDataModule,
    Splits,
    stratified_split,
)
from visrep.data.pointcloud.transforms import (
    ComposePoints,
    FixedSize,
    Jitter,
    PointDropout,
    PointTransform,
    RandomRotateUp,
    RandomScale,
    RandomTranslate,
    normalize_unit_sphere,
)
from visrep.data.samples import LABEL, POINTS
from visrep.errors import ConfigError, DataError

__all__ = ["ModelNetDataModule", "PointAugmentConfig", "PointCloudDataset", "normalize_unit_sphere"]


@dataclass(frozen=True)
class PointAugmentConfig:
    """Training augmentation of point clouds (``--data.augment.rotate true`` ...), in this order.

    Attributes:
        rotate: a uniform random rotation about ``up_axis`` (PointNet's ModelNet training; off
            by default because ModelNet's shapes are aligned, so the test set is too).
        up_axis: 0, 1 or 2 (ModelNet: 2, z up).
        scale: anisotropic scaling, each axis by its own factor uniform in ``[scale_low,
            scale_high]``; 1 and 1 turn it off. The default range is PointNet++'s (its
            ``provider.random_scale_point_cloud``: 0.8 to 1.25, but ONE factor per cloud,
            isotropic); DGCNN scales each axis, by 2/3 to 3/2. So the default here is neither
            recipe exactly.
        translate: a random shift of the whole cloud, uniform in ``[-translate, translate]`` per
            axis; 0 turns it off.
        jitter: per-point Gaussian noise of this standard deviation, clipped at ``jitter_clip``
            (PointNet: 0.01 and 0.05); 0 turns it off.
        dropout: PointNet++'s random input dropout, up to this share of the points (each dropped
            point replaced by the first point, so the cloud keeps its size); 0 turns it off.
    """

    rotate: bool = False
    up_axis: int = 2
    scale_low: float = 0.8
    scale_high: float = 1.25
    translate: float = 0.1
    jitter: float = 0.01
    jitter_clip: float = 0.05
    dropout: float = 0.0

    def transform(self) -> PointTransform | None:
        """The transform chain these options describe (None when every part is off)."""
        parts: list[PointTransform] = []
        if self.rotate:
            parts.append(RandomRotateUp(self.up_axis))
        if (self.scale_low, self.scale_high) != (1.0, 1.0):
            parts.append(RandomScale(self.scale_low, self.scale_high, anisotropic=True))
        if self.translate:
            parts.append(RandomTranslate(self.translate))
        if self.jitter:
            parts.append(Jitter(self.jitter, self.jitter_clip))
        if self.dropout:
            parts.append(PointDropout(self.dropout))
        return ComposePoints(tuple(parts)) if parts else None


class PointCloudDataset(Dataset):
    """Clouds of one size in one tensor, with a class each.

    Items are ``{"points": (N, D), "label": int}``, after ``transform`` (drawn from torch's
    global generator, which ``seed_everything`` seeds).

    Args:
        points: ``(S, N, D)`` float32, or a list of ``(N_i, D)`` clouds of different sizes.
        labels: ``(S,)`` int64.
        transform: applied to each item, or None.
    """

    def __init__(
        self,
        points: Tensor | list[Tensor],
        labels: Tensor,
        transform: PointTransform | None = None,
    ) -> None:
        self.points, self.labels, self.transform = points, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = {POINTS: self.points[i], LABEL: int(self.labels[i])}
        return self.transform(sample) if self.transform is not None else sample


def _find_npz(root: Path) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"data.root {str(root)!r} does not exist")
    files = sorted(root.glob("*.npz"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise DataError(
            f"data.root {str(root)!r}: expected one .npz file (x_train, y_train, x_test, "
            f"y_test), found {found}; pass the file itself"
        )
    return files[0]


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, EOFError, ValueError (object arrays) ...
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise DataError(f"cannot read {str(path)!r}: {type(e).__name__}: {reason}") from None


def _split(arrays: dict[str, np.ndarray], path: Path, part: str) -> tuple[Tensor, Tensor]:
    xk, yk = f"x_{part}", f"y_{part}"
    for k in (xk, yk):
        if k not in arrays:
            raise DataError(f"{str(path)!r} has no array {k!r}; it holds {', '.join(arrays)}")
    x, y = arrays[xk], arrays[yk]
    if x.ndim == 3 and len(x) == 0:
        raise DataError(f"{str(path)!r}: {xk} holds no clouds ({x.shape})")
    if x.ndim != 3 or x.shape[2] < 3 or x.shape[1] < 1 or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"{str(path)!r}: {xk} must be numeric (S, N, D>=3), got {x.shape} {x.dtype}"
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{str(path)!r}: {yk} must be integer ({len(x)},), got {y.shape} {y.dtype}")
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raise DataError(
            f"{str(path)!r}: {xk} has {int(bad.sum())} clouds with non-finite coordinates "
            f"(first: index {int(np.flatnonzero(bad)[0])})"
        )
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


class ModelNetDataModule(SplitDataModule):
    """Classified point clouds from a ModelNet-layout ``.npz`` (``../shared/data/modelnet10``).

    The archive's test split is the test set; validation is a seeded, stratified share of the
    training clouds (``split.val_fraction``).

    Args:
        root: the ``.npz`` file, or a folder holding exactly one.
        num_points: points per cloud (at most the stored ``N``): a fresh random subset per
            training draw, one seeded subset for validation and test; None keeps all.
        augment: training augmentation.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        root: str = "../shared/data/modelnet10",
        num_points: int | None = None,
        augment: PointAugmentConfig | None = None,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader or LoaderConfig(batch_size=32), split)
        if num_points is not None and num_points < 1:
            raise ConfigError(f"data.num_points must be >= 1 or null, got {num_points}")
        self.root = Path(root)
        self.num_points = num_points
        self.augment = augment or PointAugmentConfig()
        self.point_dim = 0

    def load(self) -> Splits:
        path = _find_npz(self.root)
        arrays = _read(path)
        x_train, y_train = _split(arrays, path, "train")
        x_test, y_test = _split(arrays, path, "test")
        if x_train.shape[2] != x_test.shape[2]:
            raise DataError(
                f"{str(path)!r}: train points have {x_train.shape[2]} columns, test {x_test.shape[2]}"
            )
        k = int(max(y_train.max(), y_test.max())) + 1
        names = [str(c) for c in arrays.get("classes", np.array([f"class_{i}" for i in range(k)]))]
        if min(y_train.min(), y_test.min()) < 0 or k > len(names):
            raise DataError(
                f"{str(path)!r}: labels must be in 0..{len(names) - 1} (one per name in "
                f"'classes'), got {int(min(y_train.min(), y_test.min()))}..{k - 1}"
            )
        n = x_train.shape[1]
        if self.num_points is not None and self.num_points > min(n, x_test.shape[1]):
            raise ConfigError(
                f"data.num_points {self.num_points} exceeds the {n} points per cloud in {str(path)!r}"
            )
        x_train, x_test = normalize_unit_sphere(x_train), normalize_unit_sphere(x_test)
        self.point_dim = x_train.shape[2]
        g = torch.Generator().manual_seed(self.split.seed)
        return self._splits(x_train, y_train, x_test, y_test, names, g)

    def _splits(
        self,
        train: Tensor | list[Tensor],
        y_train: Tensor,
        test: Tensor | list[Tensor],
        y_test: Tensor,
        names: list[str],
        g: torch.Generator,
    ) -> Splits:
        """The splits of normalised clouds: a seeded, stratified validation share of ``train``
        (``split.val_fraction``) and ``test``, both drawn once by :meth:`_eval_set` (``g``);
        the rest of ``train`` with the fresh-per-draw size fix and augmentation.

        Args:
            train, test: ``(S, N, D)`` tensors, or lists of ``(N_i, D)`` clouds.
            y_train, y_test: ``(S,)`` int64 classes.
            names: class names.
            g: the generator of the evaluation subsets.
        """
        targets = y_train.numpy()
        keep, held = stratified_split(
            targets, self.split.val_fraction, self.split.seed + 1, "data.split.val_fraction"
        )
        val = self._eval_set(_take(train, held), y_train[held], g) if len(held) else None
        test_set = self._eval_set(test, y_test, g)
        sizes = {len(c) for c in train} if isinstance(train, list) else {train.shape[1]}
        fixed = self.num_points is not None and sizes != {self.num_points}
        parts = [FixedSize(self.num_points)] if fixed else []
        aug = self.augment.transform()
        parts += [aug] if aug is not None else []
        train_tf = ComposePoints(tuple(parts)) if parts else None
        train_set = PointCloudDataset(_stack(_take(train, keep)), y_train[keep], train_tf)
        return Splits(train_set, targets[keep], names, test=test_set, val=val)

    def _eval_set(
        self, x: Tensor | list[Tensor], y: Tensor, g: torch.Generator
    ) -> PointCloudDataset:
        """One seeded subset (or padding) per cloud, drawn once: the same every epoch."""
        k = self.num_points
        if isinstance(x, Tensor):
            if k is not None and k < x.shape[1]:
                idx = torch.rand(x.shape[:2], generator=g).argsort(1)[:, :k]
                x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))
            return PointCloudDataset(x, y)
        if k is not None:
            size = FixedSize(k)
            x = [c if len(c) == k else size({POINTS: c}, g)[POINTS] for c in x]
        return PointCloudDataset(_stack(x), y)

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="pointcloud",
            keys=(POINTS, LABEL),
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            point_dim=self.point_dim,
        )


def _take(clouds: Tensor | list[Tensor], idx: np.ndarray) -> Tensor | list[Tensor]:
    """The clouds at ``idx`` (sorted indices) of a tensor or a list."""
    if isinstance(clouds, Tensor):
        return clouds[torch.from_numpy(idx)]
    return [clouds[i] for i in idx]


def _stack(clouds: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
    """One ``(S, N, D)`` tensor when every cloud has ``N`` points, else the list."""
    if isinstance(clouds, Tensor):
        return clouds
    if clouds and len({len(c) for c in clouds}) == 1:
        return torch.stack(clouds)
    return clouds
