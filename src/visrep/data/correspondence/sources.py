"""Real photographs to make pairs from, and their split by source image.

A source is a folder of photographs (``root`` with a glob ``pattern``) or one of the photo sets
that ship inside packages visrep depends on (``builtin``): scikit-learn's two sample images and
the photographs of ``skimage.data`` (no download). Photographs are grouped (a group never
straddles two splits): each file alone, or by folder (a video sequence: DAVIS), or by the file
name's prefix before ``_`` (a CamVid sequence). Groups are assigned to train / val / test per
source with a seeded permutation, so held-out pairs come from photographs, and sequences, that
training never saw.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from visrep.data.correspondence.sift import opencv
from visrep.errors import ConfigError, DataError

__all__ = [
    "BUILTIN_PHOTOS",
    "Photo",
    "PhotoSource",
    "load_photo",
    "scan_source",
    "split_photos",
]

# skimage.data's photographs (real pictures that ship in the wheel; synthetic images, masks and
# the 102 px microaneurysms crop are left out)
SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
    "text",
)  # fmt: skip
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
BUILTIN_PHOTOS = {"sklearn": SKLEARN_PHOTOS, "skimage": SKIMAGE_PHOTOS}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass(frozen=True)
class PhotoSource:
    """One set of photographs (an item of ``--data.sources``).

    Attributes:
        root: a folder of photographs (relative paths are from the working directory).
        builtin: ``sklearn`` or ``skimage`` instead of a folder.
        pattern: glob of the photographs under ``root`` (e.g. ``train/*.png``).
        group: what stays in one split: each ``file``, each ``folder`` (a sequence of
            frames), or each file-name ``prefix`` before the first ``_`` (in any folder: CamVid's
            ``0016E5_*`` frames of ``train/`` and ``val/`` are one sequence).
        every: keep every ``every``-th photograph (sorted by path), to thin out video frames.
        limit: keep at most this many photographs (after ``every``).
        name: the source's name in photo keys (default: the builtin's name or the root
            folder's name).
    """

    root: str | None = None
    builtin: Literal["sklearn", "skimage"] | None = None
    pattern: str = "**/*.jpg"
    group: Literal["file", "folder", "prefix"] = "file"
    every: int = 1
    limit: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.root is None) == (self.builtin is None):
            raise ConfigError(
                f"data.sources: each source needs exactly one of root or builtin, got root="
                f"{self.root!r}, builtin={self.builtin!r}"
            )
        if self.builtin is not None and self.builtin not in BUILTIN_PHOTOS:
            raise ConfigError(
                f"data.sources: builtin must be one of {', '.join(BUILTIN_PHOTOS)}, got "
                f"{self.builtin!r}"
            )
        if self.group not in ("file", "folder", "prefix"):
            raise ConfigError(
                f"data.sources: group must be file, folder or prefix, got {self.group!r}"
            )
        if self.every < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError(
                f"data.sources: every must be >= 1 and limit >= 1 or null, got {self.every} and "
                f"{self.limit}"
            )

    @property
    def label(self) -> str:
        """The source's name in photo keys: ``name``, else the builtin's or the root folder's."""
        return self.name or self.builtin or Path(self.root).name


@dataclass(frozen=True)
class Photo:
    """One photograph: ``key`` (``<source>:<relative path or name>``), its ``group`` and where it
    comes from (``path`` of a file, or ``builtin`` and ``name``)."""

    key: str
    group: str
    path: str | None = None
    builtin: str | None = None
    name: str | None = None


def scan_source(source: PhotoSource) -> list[Photo]:
    """The photographs of a source, sorted by key (``DataError`` when a folder is missing or
    holds none)."""
    label = source.label
    if source.builtin is not None:
        names = BUILTIN_PHOTOS[source.builtin]
        photos = [
            Photo(f"{label}:{n}", f"{label}:{n}", builtin=source.builtin, name=n) for n in names
        ]
    else:
        root = Path(source.root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.sources: photo folder {str(root)!r} does not exist")
        files = sorted(
            p
            for p in root.glob(source.pattern)
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not files:
            raise DataError(
                f"data.sources: no photographs match {source.pattern!r} under {str(root)!r}"
            )
        photos = []
        for p in files:
            rel = p.relative_to(root)
            if source.group == "folder":
                group = str(rel.parent)
            elif source.group == "prefix":  # whatever folder the file is in (train/, val/)
                group = p.name.split("_", 1)[0]
            else:
                group = str(rel)
            photos.append(Photo(f"{label}:{rel}", f"{label}:{group}", path=str(p)))
    photos = photos[:: source.every]
    return photos[: source.limit] if source.limit is not None else photos


def load_photo(photo: Photo) -> np.ndarray:
    """The photograph as grey uint8 ``(H, W)`` (``DataError`` when a file cannot be read)."""
    cv2 = opencv()
    if photo.path is not None:
        image = cv2.imread(photo.path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataError(f"cannot read photograph {photo.path!r} (not an image OpenCV reads)")
        return image
    if photo.builtin == "sklearn":
        from sklearn.datasets import load_sample_image

        image = load_sample_image(photo.name)
    else:
        import skimage.data

        image = getattr(skimage.data, photo.name)()
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image.astype(np.uint8))


def split_photos(
    photos: list[Photo], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[Photo]]:
    """Train / val / test photographs, split by group within each source (seeded).

    Per source (the part of ``key`` before ``:``), its ``G`` groups are permuted with a
    generator seeded by ``seed`` and the source's name; the first ``round(G test_fraction)``
    go to test, the next ``round(G val_fraction)`` to val, the rest (at least one) to train.
    """
    out: dict[str, list[Photo]] = {"train": [], "val": [], "test": []}
    by_source: dict[str, dict[str, list[Photo]]] = {}
    for p in photos:
        by_source.setdefault(p.key.split(":", 1)[0], {}).setdefault(p.group, []).append(p)
    for label in sorted(by_source):
        groups = sorted(by_source[label])
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_test = round(len(groups) * test_fraction)
        n_val = min(round(len(groups) * val_fraction), max(len(groups) - n_test - 1, 0))
        n_test = min(n_test, max(len(groups) - n_val - 1, 0))
        for i, g in enumerate(order):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[split].extend(by_source[label][g])
    return {k: sorted(v, key=lambda p: p.key) for k, v in out.items()}
