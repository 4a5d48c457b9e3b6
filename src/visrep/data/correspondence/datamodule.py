"""The DataModule of learned correspondences on homography pairs made from real photographs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.correspondence.homography import PairConfig, render_pair
from visrep.data.correspondence.opencv_samples import graf_pair
from visrep.data.correspondence.pairs import (
    HOMOGRAPHY,
    INLIERS,
    INTRINSICS,
    MATCHES,
    MatchPair,
    MatchPairDataset,
    collate_matches,
    default_cache_dir,
    homography_pair,
)
from visrep.data.correspondence.sift import SiftConfig, opencv
from visrep.data.correspondence.sources import PhotoSource, load_photo, scan_source, split_photos
from visrep.errors import ConfigError, DataError

__all__ = ["HomographyPairsDataModule"]

DEFAULT_SOURCES = (PhotoSource(builtin="sklearn"), PhotoSource(builtin="skimage"))


class HomographyPairsDataModule(SplitDataModule):
    """Putative SIFT matches of image pairs with a known homography, made from real photographs
    (:mod:`visrep.data.correspondence.homography`), split by source photograph.

    Samples are ``{"matches", "inliers", "homography", "intrinsics", "meta"}``
    (:mod:`visrep.data.correspondence.pairs`); batches are padded, with ``match_mask``. Pairs
    are made once, in :meth:`setup`, and cached (``cache_dir``); a pair with fewer than
    ``min_matches`` putative matches is left out (and counted in :attr:`dropped`).

    Args:
        sources: the photographs (:class:`~visrep.data.correspondence.sources.PhotoSource`);
            default: scikit-learn's and scikit-image's sample photographs.
        pairs_per_photo: pairs made from each photograph (each with its own homography).
        pair: how a pair is rendered (size, homography sampler, photometric changes).
        sift: keypoints and matching.
        inlier_threshold: a match is an inlier when its transfer error under the true ``H`` is
            below this many pixels (of image 2).
        min_matches: pairs with fewer putative matches are left out.
        val_fraction, test_fraction: share of each source's photo groups held out.
        seed: seed of the split and of every pair's homography and photometric draw.
        cache_dir: folder of the cached pairs; None: ``~/.cache/visrep/correspondences``.
        cache: read and write the cache.
        opencv_samples: the OpenCV sample data folder (``/usr/share/doc/opencv-doc/examples/
            data``): adds the real ``graf1`` -> ``graf3`` pair (true ``H1to3p``) to the test
            split; None: not.
        loader: batch sizes and workers.

    Attributes:
        dropped: ``{split: number of pairs left out for too few matches}``.
    """

    collate_fn = staticmethod(collate_matches)

    def __init__(
        self,
        sources: list[PhotoSource] | None = None,
        pairs_per_photo: int = 4,
        pair: PairConfig = PairConfig(),
        sift: SiftConfig = SiftConfig(),
        inlier_threshold: float = 3.0,
        min_matches: int = 16,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        cache_dir: str | None = None,
        cache: bool = True,
        opencv_samples: str | None = None,
        loader: LoaderConfig = LoaderConfig(batch_size=16),
    ) -> None:
        # the splits are by photograph (load()): the base class must not carve a val split
        super().__init__(loader, SplitConfig(val_fraction=0.0, seed=seed, stratify=False))
        self.sources = list(DEFAULT_SOURCES if sources is None else sources)
        if not self.sources:
            raise ConfigError("data.sources must name at least one source of photographs")
        checks = {
            "pairs_per_photo": (pairs_per_photo, pairs_per_photo >= 1, ">= 1"),
            "inlier_threshold": (inlier_threshold, inlier_threshold > 0, "> 0 (pixels)"),
            "min_matches": (min_matches, min_matches >= 8, ">= 8 (the eight-point algorithm)"),
            "val_fraction": (val_fraction, 0 <= val_fraction < 1, "in [0, 1)"),
            "test_fraction": (test_fraction, 0 < test_fraction < 1, "in (0, 1)"),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"data.{name} must be {expected}, got {value!r}")
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.pairs_per_photo = pairs_per_photo
        self.pair, self.sift = pair, sift
        self.inlier_threshold = float(inlier_threshold)
        self.min_matches = min_matches
        self.seed = seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.cache = cache
        self.opencv_samples = opencv_samples
        self.dropped: dict[str, int] = {}

    def _make(self, split: str, photos: list) -> list[MatchPair]:
        pairs, cached, dropped = [], 0, 0
        cache = self.cache_dir if self.cache else None
        for photo in photos:  # OpenCV per image pair
            for k in range(self.pairs_per_photo):
                p, hit = homography_pair(photo, k, self.pair, self.sift, self.seed, cache)
                cached += hit
                if len(p.pixels) < self.min_matches:
                    dropped += 1
                    continue
                pairs.append(p)
        if split == "test" and self.opencv_samples is not None:
            p = graf_pair(self.opencv_samples, self.pair.image_size, self.sift)
            if len(p.pixels) >= self.min_matches:
                pairs.append(p)
        self.dropped[split] = dropped
        print(
            f"correspondences {split}: {len(pairs)} pairs from {len(photos)} photographs "
            f"({cached} from the cache, {dropped} left out with < {self.min_matches} matches)",
            file=sys.stderr,
        )
        return pairs

    def load(self) -> Splits:
        photos = [p for s in self.sources for p in scan_source(s)]
        keys = [p.key for p in photos]
        if len(set(keys)) != len(keys):
            raise ConfigError("data.sources: two sources give the same photographs (same names)")
        split = split_photos(photos, self.val_fraction, self.test_fraction, self.seed)
        for name in ("train", "test"):
            if not split[name]:
                raise DataError(
                    f"no photograph group left for the {name} split ({len(photos)} photographs): "
                    "add sources or lower data.val_fraction / data.test_fraction"
                )
        sets = {name: MatchPairDataset(self._make(name, split[name]), self.inlier_threshold)
                for name in ("train", "val", "test")}  # fmt: skip
        for name in ("train", "test"):
            if len(sets[name]) == 0:
                raise DataError(
                    f"every {name} pair has fewer than data.min_matches {self.min_matches} "
                    "putative matches: lower it or check the photographs"
                )
        self.photos = split
        val = sets["val"] if len(sets["val"]) else None
        return Splits(sets["train"], None, [], test=sets["test"], val=val)

    def spec(self) -> DataSpec:
        """Family ``correspondence``; the geometry key (``homography``) says which geometry."""
        return DataSpec(
            family="correspondence", keys=(MATCHES, INLIERS, HOMOGRAPHY, INTRINSICS), point_dim=4
        )

    def sample_names(self) -> list[str]:
        """The test pairs' names (``<source>:<photo>#<index>``), in loader order."""
        self.setup("test")
        return [p.name for p in self._pairs(self.test_set)]

    @staticmethod
    def _pairs(ds) -> list[MatchPair]:
        base, idx = ds, None
        if hasattr(ds, "indices"):
            base, idx = ds.dataset, list(ds.indices)
        pairs = base.pairs
        return pairs if idx is None else [pairs[i] for i in idx]

    def pair_images(self, index: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Images 1 and 2 (grey uint8) of a pair of a split, rendered again from its photograph."""
        cv2 = opencv()
        ds = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        p = self._pairs(ds)[index]
        if p.files is not None:
            ims = [cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in p.files]
            w, h = p.size
            s2 = (round(p.K2[0, 2] * 2 + 1), round(p.K2[1, 2] * 2 + 1))
            return (cv2.resize(ims[0], (w, h), interpolation=cv2.INTER_AREA),
                    cv2.resize(ims[1], s2, interpolation=cv2.INTER_AREA))  # fmt: skip
        image1, image2, _ = render_pair(
            load_photo(p.photo), self.pair, np.random.default_rng(p.seed)
        )
        return image1, image2
