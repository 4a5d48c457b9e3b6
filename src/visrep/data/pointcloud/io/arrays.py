"""Point clouds stored as numpy arrays: ``.npy`` (one ``(N, D)`` cloud, or a stack ``(S, N, D)``
with ``index``) and ``.npz`` (one cloud: ``points`` / ``xyz`` with optional ``point_labels``; or
a data set in the ModelNet layout ``x_<split>`` ``(S, N, D)``, ``y_<split>``, ``classes``,
``names_<split>`` with ``split`` and ``index``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrep.data.pointcloud.io.types import NonFinite, PointCloud, check_finite
from visrep.errors import DataError

__all__ = ["NpzArchive", "describe_npz", "npz_splits", "read_npy", "read_npz"]


def _load(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such array file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # BadZipFile, ValueError (pickled objects), EOFError ...
        raise DataError(f"{path}: cannot read as a numpy array file: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class NpzArchive:
    """An ``.npz`` archive opened for reading (a context manager): ``files`` (the member names)
    and ``archive[key]`` (a member's array), every read error - a file that is not a zip, a
    truncated member, a pickled object array - a one-line :class:`~visrep.errors.DataError`
    naming the file and the member.

    Args:
        path: the ``.npz`` file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._z = _load(self.path)
        if not isinstance(self._z, np.lib.npyio.NpzFile):
            raise DataError(f"{self.path}: not an .npz archive (a single array: use .npy)")
        self.files: list[str] = list(self._z.files)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._z[key]
        except Exception as e:  # ValueError (object arrays), BadZipFile, EOFError, zlib.error
            raise DataError(f"{self.path}: cannot read array {key!r}: {_reason(e)}") from None

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def close(self) -> None:
        self._z.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cloud(
    arr: np.ndarray,
    path: Path,
    what: str,
    columns: Sequence[str] | None,
    labels: np.ndarray | None = None,
    **meta: Any,
) -> PointCloud:
    if arr.ndim != 2 or arr.shape[1] < 3 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(
            f"{path}: {what} must be a numeric (N, D >= 3) array, got {arr.shape} {arr.dtype}"
        )
    d = arr.shape[1]
    names = (
        tuple(columns) if columns is not None else ("x", "y", "z", *(f"f{i}" for i in range(3, d)))
    )
    if len(names) != d or names[:3] != ("x", "y", "z"):
        raise DataError(
            f"{path}: columns {names} do not name the {d} columns of {what} (x, y, z first)"
        )
    if labels is not None and (
        labels.shape != (len(arr),) or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise DataError(
            f"{path}: per-point labels must be integer ({len(arr)},), got {labels.shape} {labels.dtype}"
        )
    feats = arr[:, 3:] if d > 3 else None
    return PointCloud(arr[:, :3], feats, names[3:], labels, meta={"file": str(path), **meta})


def _index(index: int | None, count: int, path: Path, what: str) -> int:
    if index is None:
        raise DataError(
            f"{path}: {what} holds {count} clouds; choose one with index (0..{count - 1})"
        )
    if not -count <= index < count:
        raise DataError(f"{path}: index {index} is out of range for the {count} clouds of {what}")
    return index % count


def read_npy(
    path: str | Path,
    index: int | None = None,
    columns: Sequence[str] | None = None,
    nonfinite: NonFinite = "error",
) -> PointCloud:
    """Read an ``.npy`` array: ``(N, D >= 3)`` is one cloud, ``(S, N, D)`` needs ``index``.

    Args:
        path: the ``.npy`` file.
        index: which cloud of a stack.
        columns: names of the ``D`` columns (x, y, z first); None: ``x, y, z, f3, f4 ...``.
        nonfinite: points with a NaN / infinite coordinate: ``"error"``, ``"drop"``, ``"keep"``.
    """
    path = Path(path)
    arr = _load(path)
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DataError(f"{path}: an .npz archive, not a single array: use the .npz suffix")
    fmt = "npy"
    if arr.ndim == 3:
        i = _index(index, len(arr), path, f"the array {arr.shape}")
        arr, fmt = arr[i], f"npy (cloud {i} of {len(arr)})"
    return check_finite(
        _cloud(np.asarray(arr), path, "the array", columns, format=fmt), nonfinite, str(path)
    )


def npz_splits(files: Sequence[str]) -> list[str]:
    """The splits of a ModelNet-layout archive: every ``x_<split>`` with its ``y_<split>``."""
    return [k[2:] for k in files if k.startswith("x_") and f"y_{k[2:]}" in files]


def read_npz(
    path: str | Path,
    index: int | None = None,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    nonfinite: NonFinite = "error",
) -> PointCloud:
    """Read one cloud from an ``.npz`` archive.

    A single cloud: ``points`` (or ``xyz``) ``(N, D)``, optional ``point_labels`` (or
    ``labels``) ``(N,)`` and ``feature_names``. A data set in the ModelNet layout: cloud
    ``index`` of ``split`` (default: the first split, ``train`` if present), with its class as
    ``label`` and its class name and source name in ``meta``.
    """
    path = Path(path)
    with NpzArchive(path) as z:
        files = z.files
        key = next((k for k in ("points", "xyz") if k in files), None)
        if key is not None:
            lab_key = next((k for k in ("point_labels", "labels") if k in files), None)
            labels = z[lab_key] if lab_key else None
            if columns is None and "feature_names" in files:
                columns = ("x", "y", "z", *(str(n) for n in z["feature_names"]))
            cloud = _cloud(z[key], path, f"array {key!r}", columns, labels, format="npz")
            return check_finite(cloud, nonfinite, str(path))
        splits = npz_splits(files)
        if not splits:
            raise DataError(
                f"{path}: expected an array 'points' (one cloud) or x_<split> / y_<split> (a data "
                f"set), found {', '.join(files) or 'no arrays'}"
            )
        split = split if split is not None else ("train" if "train" in splits else splits[0])
        if split not in splits:
            raise DataError(f"{path}: no split {split!r}; it has {', '.join(splits)}")
        x = z[f"x_{split}"]
        if x.ndim != 3:
            raise DataError(f"{path}: x_{split} must be (S, N, D), got {x.shape}")
        i = _index(index, len(x), path, f"split {split!r}")
        y = z[f"y_{split}"]
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"{path}: y_{split} must be integer ({len(x)},) like x_{split}, got {y.shape} {y.dtype}"
            )
        label = int(y[i])
        meta: dict[str, Any] = {"format": f"npz data set (split {split}, cloud {i} of {len(x)})"}
        if "classes" in files and 0 <= label < len(z["classes"]):
            meta["class_name"] = str(z["classes"][label])
        if f"names_{split}" in files:
            meta["name"] = str(z[f"names_{split}"][i])
        cloud = _cloud(x[i], path, f"x_{split}[{i}]", columns, **meta)
    cloud = PointCloud(cloud.xyz, cloud.features, cloud.feature_names, None, label, cloud.meta)
    return check_finite(cloud, nonfinite, str(path))


def describe_npz(path: str | Path) -> dict[str, Any]:
    """What a ModelNet-layout archive holds: per split the number of clouds, points per cloud,
    columns and clouds per class; the class names."""
    path = Path(path)
    with NpzArchive(path) as z:
        files = z.files
        splits = npz_splits(files)
        if not splits:
            raise DataError(
                f"{path}: not a data set archive (no x_<split> / y_<split> arrays; found {', '.join(files)})"
            )
        classes = [str(c) for c in z["classes"]] if "classes" in files else []
        out: dict[str, Any] = {"format": "npz data set", "classes": classes, "splits": {}}
        for s in splits:
            x, y = z[f"x_{s}"], z[f"y_{s}"]
            if not np.issubdtype(x.dtype, np.number) or x.ndim < 1:
                raise DataError(f"{path}: x_{s} must be a numeric array, got {x.shape} {x.dtype}")
            if y.shape != x.shape[:1] or not np.issubdtype(y.dtype, np.integer):
                raise DataError(
                    f"{path}: y_{s} must be integer ({len(x)},) like x_{s}, got {y.shape} {y.dtype}"
                )
            values, counts = np.unique(y, return_counts=True)
            per_class = {
                (classes[v] if 0 <= v < len(classes) else int(v)): int(c)
                for v, c in zip(values.tolist(), counts.tolist(), strict=True)
            }
            finite = (
                np.isfinite(x).all(axis=tuple(range(1, x.ndim))) if x.size else np.ones(0, bool)
            )
            out["splits"][s] = {
                "clouds": len(x),
                "shape": list(x.shape),
                "dtype": str(x.dtype),
                "non_finite_clouds": int((~finite).sum()),
                "per_class": per_class,
            }
    return out
