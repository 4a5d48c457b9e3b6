"""Event-camera classification data sets on disk: layouts, file lists and map-style datasets.

Three layouts are recognised under a root folder (or the first folder below it that holds one):

* **list files** (SLAYER's N-MNIST subset): ``train*.txt`` / ``test*.txt`` / ``val*.txt`` with
  ``id label`` lines (``#`` comments), next to event files ``<id>.<ext>``;
* **split folders**: ``<split>/<class>/*.<ext>`` with split names such as ``Train``, ``test``,
  ``n-cars_train`` (N-MNIST ``Train/<digit>/*.bin``, N-Cars ``<split>/<class>/*.dat``);
* **class folders**: ``<class>/*.<ext>`` with at least two classes (N-Caltech101).

Samples are ``(EventStream, class index)``; decoded streams can be cached as ``.npz`` files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visrep.data.samples import EVENTS, LABEL
from visrep.errors import DataError
from visrep.events.io import read_events, read_npz, write_npz
from visrep.events.transforms import EventTransform, apply_transforms
from visrep.events.types import EventStream

__all__ = [
    "EVENT_EXTENSIONS",
    "EventFileDataset",
    "EventLayout",
    "EventStreamDataset",
    "find_layout",
]

EVENT_EXTENSIONS = (".bin", ".bs2", ".dat", ".raw", ".aedat4", ".es", ".npz", ".h5", ".hdf5")
SPLITS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_MAX_DEPTH = 4


def _split_name(name: str) -> str | None:
    low = name.lower()
    for split, words in SPLITS.items():
        for w in words:
            if low == w or re.search(rf"[_\-. ]{w}$", low):
                return split
    return None


def _event_files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.suffix.lower() in EVENT_EXTENSIONS and f.is_file()
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


@dataclass
class EventLayout:
    """The labelled event files of a data set, per split (``train``, and ``val`` / ``test`` if
    the source has them), as ``(path, label)`` pairs; ``kind`` names the layout found."""

    root: Path
    kind: str
    splits: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def class_names(self) -> list[str]:
        """All labels, sorted numerically when they are all integers."""
        labels = {lab for items in self.splits.values() for _, lab in items}
        if all(re.fullmatch(r"-?\d+", lab) for lab in labels):
            return sorted(labels, key=int)
        return sorted(labels)


def _read_list(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"[\s,]+", line)
        if len(parts) != 2:
            raise DataError(f"{path}:{i}: expected 'id label', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def _list_layout(folder: Path) -> EventLayout | None:
    lists = {}
    for f in sorted(folder.glob("*.txt")):
        split = next(
            (s for s, words in SPLITS.items() if f.stem.lower().startswith(words[0])), None
        )
        if split is not None and split not in lists:
            lists[split] = f
    if "train" not in lists:
        return None
    by_stem = {f.stem: f for f in _event_files(folder)}
    layout = EventLayout(folder, "list files")
    for split, f in lists.items():
        items = []
        for sid, label in _read_list(f):
            if sid not in by_stem:
                raise DataError(
                    f"{f}: sample {sid!r} has no event file {folder}/{sid}.<{'|'.join(e[1:] for e in EVENT_EXTENSIONS)}>"
                )
            items.append((str(by_stem[sid]), label))
        layout.splits[split] = items
    return layout


def _class_items(folder: Path) -> list[tuple[str, str]]:
    return [(str(f), d.name) for d in _subdirs(folder) for f in _event_files(d)]


def _folder_layout(folder: Path) -> EventLayout | None:
    subdirs = _subdirs(folder)
    split_dirs = {}
    for d in subdirs:
        s = _split_name(d.name)
        if s is not None and s not in split_dirs:
            split_dirs[s] = d
    if "train" in split_dirs:
        layout = EventLayout(folder, "split folders")
        for s, d in split_dirs.items():
            layout.splits[s] = _class_items(d)
        if layout.splits["train"] and len(layout.class_names()) >= 2:
            return layout
    items = _class_items(folder)
    if len({lab for _, lab in items}) >= 2:
        return EventLayout(folder, "class folders", {"train": items})
    return None


def find_layout(root: str | Path) -> EventLayout:
    """Find the layout at ``root`` or in the shallowest folder below it that has one.

    Raises:
        DataError: ``root`` is missing, or no folder below it holds a known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"event data folder {str(root)!r} does not exist")
    level = [root]
    for _ in range(_MAX_DEPTH + 1):
        for folder in level:
            layout = _list_layout(folder) or _folder_layout(folder)
            if layout is not None:
                return layout
        level = [d for f in level for d in _subdirs(f)]
        if not level:
            break
    raise DataError(
        f"{root}: no event data set found; expected train*.txt / test*.txt id-label lists beside "
        f"<id>.<ext> files, <split>/<class>/*.<ext>, or <class>/*.<ext> (ext: "
        f"{', '.join(EVENT_EXTENSIONS)})"
    )


class EventFileDataset(Dataset):
    """Event files with class indices; ``dataset[i] -> (EventStream, target)``.

    Args:
        files: Event file paths.
        targets: Class index of each file.
        sensor_size: ``(W, H)`` given to the reader (all samples of a batch must share it).
        cache_dir: If set, decoded streams are kept there as ``.npz`` (keyed by path, size,
            modification time and sensor size) and read back from there.
        transforms: Deterministic transforms applied to every sample.
    """

    def __init__(
        self,
        files: Sequence[str],
        targets: Sequence[int],
        sensor_size: tuple[int, int] | None = None,
        cache_dir: str | Path | None = None,
        transforms: Sequence[EventTransform] = (),
    ) -> None:
        if len(files) != len(targets):
            raise DataError(f"{len(files)} files but {len(targets)} targets")
        self.files = [str(f) for f in files]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.sensor_size = None if sensor_size is None else tuple(int(v) for v in sensor_size)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.transforms = tuple(transforms)

    def __len__(self) -> int:
        return len(self.files)

    def _cache_path(self, path: Path) -> Path:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.sensor_size}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.cache_dir / f"{path.stem}-{digest}.npz"

    def read(self, i: int) -> EventStream:
        """Sample ``i``'s stream, decoded (or from the cache), before transforms."""
        path = Path(self.files[i])
        if self.cache_dir is None:
            return read_events(path, self.sensor_size)
        cached = self._cache_path(path)
        if cached.is_file():
            return read_npz(cached, self.sensor_size)
        stream = read_events(path, self.sensor_size)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz.tmp")
        os.close(fd)
        try:
            write_npz(stream, tmp)
            os.replace(tmp, cached)  # atomic: concurrent workers never see half a file
        finally:
            Path(tmp).unlink(missing_ok=True)
        return stream

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            EVENTS: apply_transforms(self.read(i), self.transforms),
            LABEL: int(self.targets[i]),
        }


class EventStreamDataset(Dataset):
    """Streams held in memory (e.g. simulated), with class indices and deterministic transforms."""

    def __init__(
        self,
        streams: Sequence[EventStream],
        targets: Sequence[int],
        transforms: Sequence[EventTransform] = (),
    ) -> None:
        if len(streams) != len(targets):
            raise DataError(f"{len(streams)} streams but {len(targets)} targets")
        self.streams = list(streams)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transforms = tuple(transforms)

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            EVENTS: apply_transforms(self.streams[i], self.transforms),
            LABEL: int(self.targets[i]),
        }
