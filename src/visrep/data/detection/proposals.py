"""Region proposals as data: a ``proposals`` key on detection samples, computed once per image.

R-CNN and Fast R-CNN (``needs_proposals`` detectors) read class-independent region proposals
from the sample: ``proposals`` is a ``tv_tensors.BoundingBoxes`` ``(P, 4)`` XYXY in the image's
pixels, ranked best first, so the v2 transforms (rescale, flip) move it with the image and its
boxes. :class:`ProposalDataset` wraps a :class:`~visrep.data.detection.base.DetectionDataset`:
it adds the key to the untransformed sample, then applies the dataset's transform.

Proposals are :mod:`selective search <visrep.data.detection.selective_search>`'s (the
:class:`ProposalConfig` options), computed on the stored image (before any augmentation) and
cached as ``<cache_dir>/<key>.npy`` float32 ``(P, 4)``: the key hashes the image file's
absolute path, modification time and size, and the search options, so an edited image or other
options give a new entry. ``cache_dir`` defaults to ``$XDG_CACHE_HOME/visrep/proposals`` (else
``~/.cache/visrep/proposals``), never the data folder. Files are written atomically (a
temporary file renamed), so loader workers computing the same image at once are harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.detection.selective_search import SelectiveSearch, selective_search
from visrep.data.samples import IMAGE, PROPOSALS
from visrep.errors import ConfigError, DataError

__all__ = [
    "PROPOSALS",
    "ProposalConfig",
    "ProposalDataset",
    "default_cache_dir",
    "precompute_proposals",
    "with_proposals",
]

_VERSION = 2  # bump when the algorithm's output changes: old cache entries are then unused


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/visrep/proposals``, else ``~/.cache/visrep/proposals``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "visrep" / "proposals"


@dataclass(frozen=True)
class ProposalConfig(SelectiveSearch):
    """Selective-search proposals for every image (``--data.proposals.strategy fast``) and their
    cache; the search options are :class:`~visrep.data.detection.selective_search.SelectiveSearch`'s.

    Attributes:
        cache_dir: where the ``.npy`` files go; None: :func:`default_cache_dir`.
    """

    cache_dir: str | None = None

    def search(self) -> SelectiveSearch:
        """The search options alone (what the cache key hashes)."""
        names = {f.name for f in fields(SelectiveSearch)}
        return SelectiveSearch(**{k: v for k, v in asdict(self).items() if k in names})

    def folder(self) -> Path:
        """The cache folder."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def cache_path(self, image_file: str | Path, tag: str = "") -> Path:
        """The cache file of an image: ``folder / <sha256 of the file's absolute path, mtime,
        size, the search options and tag>.npy`` (``tag`` tells apart images embedded in one
        annotation file)."""
        path = Path(image_file).resolve()
        try:
            st = path.stat()
        except OSError as e:
            raise DataError(f"cannot read image {str(path)!r} for its proposals: {e}") from None
        options = {k: _plain(v) for k, v in asdict(self.search()).items()}
        key = json.dumps(
            [_VERSION, str(path), st.st_mtime_ns, st.st_size, tag, options], sort_keys=True
        )
        return self.folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"

    def load(self, target: Path) -> np.ndarray:
        """A cache file's proposals, float32 ``(P, 4)``."""
        try:
            boxes = np.load(target, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(
                f"proposal cache file {str(target)!r} is unreadable ({e}); delete it"
            ) from None
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataError(
                f"proposal cache file {str(target)!r} holds shape {boxes.shape}, not (P, 4); "
                "delete it"
            )
        return boxes.astype(np.float32, copy=False)

    def compute(self, target: Path, image: np.ndarray) -> np.ndarray:
        """Selective search on ``image`` (uint8 ``(H, W, C)``), saved (atomically) as
        ``target``: float32 ``(P, 4)``."""
        boxes = selective_search(image, self.search())
        _save_atomic(target, boxes)
        return boxes

    def proposals(self, image_file: str | Path, image: np.ndarray) -> np.ndarray:
        """An image file's proposals from the cache, or computed from ``image`` (its pixels,
        uint8 ``(H, W, C)``) and cached: float32 ``(P, 4)``."""
        target = self.cache_path(image_file)
        return self.load(target) if target.is_file() else self.compute(target, image)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _save_atomic(target: Path, boxes: np.ndarray) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(boxes, dtype=np.float32))
        os.replace(tmp, target)
    except OSError as e:
        raise ConfigError(
            f"cannot write region proposals into the cache folder {str(target.parent)!r} "
            f"(data.proposals.cache_dir): {e}"
        ) from None


class ProposalDataset(Dataset):
    """A detection dataset whose samples also carry ``proposals`` (module docstring), added
    before the dataset's transform so that it moves them.

    It wraps a :class:`~visrep.data.detection.base.DetectionDataset` (or any dataset with its
    ``annotations``, ``channels``, ``raw(i)`` and ``with_transform(t)``) and answers the same
    calls, so a data module treats it as the dataset it wraps.

    Args:
        dataset: the detection dataset (its transform is applied after the proposals are added).
        config: the proposal options and cache.
    """

    def __init__(self, dataset: Any, config: ProposalConfig | None = None) -> None:
        if isinstance(dataset, ProposalDataset):
            dataset = dataset.dataset
        self.dataset = dataset
        self.config = config or ProposalConfig()
        self.transform = dataset.transform
        self._plain = dataset.with_transform(None)  # samples before the transform

    @property
    def annotations(self) -> list[Any]:
        return self.dataset.annotations

    @property
    def channels(self) -> int:
        return self.dataset.channels

    def __getattr__(self, name: str) -> Any:
        # everything else (e.g. has_masks) is the wrapped dataset's
        if name.startswith("_") or name in ("dataset", "config", "transform"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def raw(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 ``(H, W, C)`` (the wrapped dataset's)."""
        return self.dataset.raw(i)

    def with_transform(self, transform: v2.Transform | None) -> ProposalDataset:
        """The same images and proposals with another transform."""
        return ProposalDataset(self.dataset.with_transform(transform), self.config)

    def cache_path(self, i: int) -> Path:
        """The cache file of image ``i``: keyed on the image file, or on the annotation file for
        an image embedded in it."""
        a = self.annotations[i]
        channels = f"channels {getattr(self.dataset, 'channels', 3)}"  # grey and RGB differ
        if isinstance(a.image, str | Path):
            return self.config.cache_path(a.image, channels)
        return self.config.cache_path(a.source, f"embedded {tuple(a.size)} {channels}")

    def proposals(self, i: int, image: np.ndarray | None = None) -> np.ndarray:
        """Image ``i``'s proposals, float32 ``(P, 4)`` (``image``: its pixels, if read)."""
        target = self.cache_path(i)
        if target.is_file():
            return self.config.load(target)
        return self.config.compute(target, self.raw(i) if image is None else image)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self._plain[i]
        target = self.cache_path(i)
        if target.is_file():  # the usual case: no pixels needed
            boxes = self.config.load(target)
        else:
            pixels = (sample[IMAGE] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            boxes = self.config.compute(target, pixels)
        sample[PROPOSALS] = tv_tensors.BoundingBoxes(
            torch.from_numpy(boxes).reshape(-1, 4),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=tuple(self.annotations[i].size),
        )
        return self.transform(sample) if self.transform is not None else sample


def with_proposals(ds: Dataset | None, config: ProposalConfig | None) -> Dataset | None:
    """``ds`` with ``proposals`` in its samples: a detection dataset becomes a
    :class:`ProposalDataset`, a ``Subset`` of one keeps its indices; None and a None config
    pass through.

    Raises:
        ConfigError: ``ds`` is not a detection dataset of annotated images.
    """
    if ds is None or config is None:
        return ds
    if isinstance(ds, ProposalDataset):
        return ProposalDataset(ds.dataset, config)
    if isinstance(ds, Subset):
        return Subset(with_proposals(ds.dataset, config), list(ds.indices))
    if all(hasattr(ds, n) for n in ("annotations", "raw", "with_transform", "transform")):
        return ProposalDataset(ds, config)
    raise ConfigError(
        f"data.proposals needs a detection dataset of annotated images, got {type(ds).__name__}"
    )


def precompute_proposals(ds: Dataset) -> int:
    """Compute (and cache) the proposals of every image of a :class:`ProposalDataset` (or a
    ``Subset`` of one) that is not cached yet; returns how many were computed."""
    base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))
    if not isinstance(base, ProposalDataset):
        raise ConfigError(
            f"precompute_proposals takes a ProposalDataset, got {type(base).__name__}"
        )
    done = 0
    for i in idx:  # one selective search per image: the work itself, not a hot loop
        if not base.cache_path(i).is_file():
            base.proposals(i)
            done += 1
    return done
