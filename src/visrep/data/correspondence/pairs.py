"""Putative matches of image pairs with known geometry, their samples, labels and batches.

A pair's sample (keys below; proposed for ``visrep.data.samples``):

* ``matches``: float32 ``(N, 4)`` ``(u1, v1, u2, v2)`` in normalised coordinates ``K^-1 p``
  (Yi et al. 2018 feed intrinsics-removed coordinates). Homography pairs have no camera: their
  ``K`` is ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]`` with ``f`` half the long side and ``c`` the
  image centre, so the coordinates lie in about ``[-1, 1]``.
* ``inliers``: bool ``(N,)``: the transfer error ``||H p1 - p2||`` under the true homography is
  below ``inlier_threshold`` pixels (homographies), or the squared symmetric epipolar distance
  of the normalised points under the true ``E`` is below ``epipolar_threshold`` (essential; Yi
  et al.'s 1e-4).
* ``homography`` or ``essential``: float32 ``(3, 3)``, the true geometry in normalised
  coordinates, unit Frobenius norm (``H_n = K2^-1 H K1``).
* ``intrinsics``: float32 ``(2, 3, 3)``, ``K1`` and ``K2`` (pixels = ``K`` normalised).
* ``pose`` (:data:`POSE`; essential pairs only): float32 ``(3, 4)`` ``[R | t]``, the true
  relative pose ``X2 = R X1 + t`` with unit ``t`` (``E = [t]_x R``), the truth of the pose
  error; all NaN when the pair's :attr:`MatchPair.pose` is unknown.
* ``meta``: ``{"name", "size": (w, h)}`` of image 1.

A batch pads the matches to the largest ``N`` of the batch and adds ``match_mask`` ``(B, N)``
(:func:`collate_matches`); Yi et al.'s code instead cuts every pair of a batch to the smallest
``N``, which drops matches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.correspondence.homography import PairConfig, render_pair
from visrep.data.correspondence.sift import SiftConfig, sift_matches
from visrep.data.correspondence.sources import Photo, load_photo
from visrep.data.samples import (
    ESSENTIAL,
    HOMOGRAPHY,
    INLIERS,
    INTRINSICS,
    MATCH_MASK,
    MATCHES,
    META,
    POSE,
)
from visrep.errors import ConfigError, ShapeError
from visrep.runs import atomic_write_bytes

# The sample key of the true relative pose of essential pairs (module docstring); proposed for
# ``visrep.data.samples`` (import it from there once it is added).

__all__ = [
    "ESSENTIAL",
    "HOMOGRAPHY",
    "INLIERS",
    "INTRINSICS",
    "MATCHES",
    "MATCH_MASK",
    "POSE",
    "MatchPair",
    "MatchPairDataset",
    "collate_matches",
    "default_cache_dir",
    "homography_pair",
    "intrinsics_of_size",
    "label_inliers",
]


_VERSION = 1  # bump when pair generation changes: old cache entries are then unused


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/visrep/correspondences``, else ``~/.cache/visrep/correspondences``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "visrep" / "correspondences"


def intrinsics_of_size(width: int, height: int) -> np.ndarray:
    """The pseudo-intrinsics of an uncalibrated image: focal half the long side, principal point
    at the centre of the pixel grid (pixel centres at integers)."""
    f = max(width, height) / 2.0
    return np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1.0]])


@dataclass
class MatchPair:
    """One image pair: putative matches in pixels and the true geometry.

    Attributes:
        name: ``<photo key>#<pair index>`` (or the pair's own name).
        pixels: float32 ``(N, 4)`` ``(x1, y1, x2, y2)`` pixels.
        geometry: float64 ``(3, 3)``: ``H`` in pixels (image 1 -> image 2) for ``kind
            homography``, ``E`` in normalised coordinates for ``essential``.
        kind: ``homography`` or ``essential``.
        K1, K2: float64 ``(3, 3)`` intrinsics (pseudo-intrinsics for homography pairs).
        size: ``(w, h)`` of image 1.
        photo, seed: the photograph and seed the pair was rendered from (to show it again).
        files: the two image files of a pair read from disk.
        labels: bool ``(N,)`` inlier labels known otherwise (e.g. from ground-truth disparity),
            used instead of the geometric test of :func:`label_inliers`; None: geometric.
        pose: float64 ``(3, 4)`` ``[R | t]`` of an essential pair, ``X2 = R X1 + t`` (``t``
            any scale; ``E = [t]_x R``): the truth of the pose error; None: unknown.
    """

    name: str
    pixels: np.ndarray
    geometry: np.ndarray
    kind: Literal["homography", "essential"]
    K1: np.ndarray
    K2: np.ndarray
    size: tuple[int, int]
    photo: Photo | None = None
    seed: int | None = None
    files: tuple[str, str] | None = None
    labels: np.ndarray | None = None
    pose: np.ndarray | None = None


def _pair_seed(photo: Photo, index: int, seed: int) -> int:
    return zlib.crc32(f"{photo.key}#{index}#{seed}".encode())


def _cache_key(photo: Photo, index: int, seed: int, pair: PairConfig, sift: SiftConfig) -> str:
    stamp: Any = [photo.builtin, photo.name]
    if photo.path is not None:
        st = Path(photo.path).stat()
        stamp = [str(Path(photo.path).resolve()), st.st_mtime_ns, st.st_size]
    key = json.dumps(
        [_VERSION, photo.key, stamp, index, seed, asdict(pair), asdict(sift)], sort_keys=True
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def homography_pair(
    photo: Photo,
    index: int,
    pair: PairConfig,
    sift: SiftConfig,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> tuple[MatchPair, bool]:
    """Pair ``index`` of a photograph (rendered with :func:`render_pair`, matched with
    :func:`sift_matches`), from the cache when it holds it; returns ``(pair, from_cache)``.

    The cache file (``cache_dir/<sha256 of the photo, index, seed and options>.npz``) holds the
    pixel matches, ``H`` and the size; labels are computed when a sample is read, so another
    ``inlier_threshold`` needs no new cache. An unreadable entry (e.g. truncated by a killed
    run: ``zipfile.BadZipFile``) is treated as missing: the pair is regenerated and the entry
    rewritten (atomically).
    """
    s = _pair_seed(photo, index, seed)
    name = f"{photo.key}#{index}"
    target = (
        None
        if cache_dir is None
        else cache_dir / f"{_cache_key(photo, index, seed, pair, sift)}.npz"
    )
    if target is not None and target.is_file():
        try:
            with np.load(target, allow_pickle=False) as z:
                pixels, H, size = z["pixels"], z["H"], tuple(int(v) for v in z["size"])
            K = intrinsics_of_size(*size)
            return MatchPair(name, pixels, H, "homography", K, K, size, photo, s), True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # truncated or foreign cache entry: treated as missing, regenerated below
    image1, image2, H = render_pair(load_photo(photo), pair, np.random.default_rng(s))
    pixels = sift_matches(image1, image2, sift)
    size = (image1.shape[1], image1.shape[0])
    if target is not None:
        buf = io.BytesIO()
        np.savez(buf, pixels=pixels, H=H, size=np.asarray(size))
        try:
            atomic_write_bytes(target, lambda f: f.write(buf.getvalue()))
        except OSError as e:
            raise ConfigError(
                f"cannot write into the correspondence cache folder {str(target.parent)!r} "
                f"(data.cache_dir): {e}"
            ) from None
    K = intrinsics_of_size(*size)
    return MatchPair(name, pixels, H, "homography", K, K, size, photo, s), False


def _normalise(pixels: np.ndarray, K1: np.ndarray, K2: np.ndarray) -> np.ndarray:
    out = np.empty_like(pixels, dtype=np.float64)
    for k, K in ((0, K1), (2, K2)):
        out[:, k : k + 2] = (pixels[:, k : k + 2] - K[:2, 2]) / np.diag(K)[:2]
    return out


def label_inliers(
    pair: MatchPair, inlier_threshold: float, epipolar_threshold: float
) -> np.ndarray:
    """bool ``(N,)``: transfer error below ``inlier_threshold`` px (homography), or squared
    symmetric epipolar distance of the normalised points below ``epipolar_threshold``; a
    pair's own ``labels`` when it has them."""
    if pair.labels is not None:
        return np.asarray(pair.labels, bool)
    p = pair.pixels.astype(np.float64)
    if pair.kind == "homography":
        q = np.concatenate([p[:, :2], np.ones((len(p), 1))], 1) @ pair.geometry.T
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.linalg.norm(q[:, :2] / q[:, 2:] - p[:, 2:], axis=1)
        return np.nan_to_num(err, nan=np.inf) < inlier_threshold
    x = _normalise(p, pair.K1, pair.K2)
    a = np.concatenate([x[:, :2], np.ones((len(x), 1))], 1)
    b = np.concatenate([x[:, 2:], np.ones((len(x), 1))], 1)
    l2, l1 = a @ pair.geometry.T, b @ pair.geometry
    r = (b * l2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = r**2 * (1 / (l2[:, :2] ** 2).sum(1) + 1 / (l1[:, :2] ** 2).sum(1))
    return np.nan_to_num(d, nan=np.inf) < epipolar_threshold


class MatchPairDataset(Dataset):
    """Samples (module docstring) of :class:`MatchPair` s, labelled at the given thresholds."""

    def __init__(
        self,
        pairs: list[MatchPair],
        inlier_threshold: float = 3.0,
        epipolar_threshold: float = 1e-4,
    ) -> None:
        self.pairs = pairs
        self.inlier_threshold = inlier_threshold
        self.epipolar_threshold = epipolar_threshold

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        if p.pixels.ndim != 2 or p.pixels.shape[1] != 4:
            raise ShapeError(f"pair {p.name!r}: matches must be (N, 4), got {p.pixels.shape}")
        G = p.geometry
        if p.kind == "homography":
            G = np.linalg.inv(p.K2) @ G @ p.K1
        G = G / np.linalg.norm(G)
        sample = {
            MATCHES: torch.from_numpy(_normalise(p.pixels, p.K1, p.K2).astype(np.float32)),
            INLIERS: torch.from_numpy(
                label_inliers(p, self.inlier_threshold, self.epipolar_threshold)
            ),
            p.kind: torch.from_numpy(G.astype(np.float32)),
            INTRINSICS: torch.from_numpy(np.stack([p.K1, p.K2]).astype(np.float32)),
            META: {"name": p.name, "size": tuple(p.size)},
        }
        if p.kind == "essential":
            pose = np.full((3, 4), np.nan)
            if p.pose is not None:
                pose = np.asarray(p.pose, np.float64)
                if pose.shape != (3, 4):
                    raise ShapeError(
                        f"pair {p.name!r}: pose must be (3, 4) [R | t], got {pose.shape}"
                    )
                pose = np.concatenate([pose[:, :3], pose[:, 3:] / np.linalg.norm(pose[:, 3])], 1)
            sample[POSE] = torch.from_numpy(pose.astype(np.float32))
        return sample


def collate_matches(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of pair samples: matches ``(B, N_max, 4)`` and inliers ``(B, N_max)`` padded
    with zeros / False, ``match_mask`` ``(B, N_max)``, geometry and intrinsics stacked, ``meta``
    a list.

    >>> s = lambda n: {"matches": torch.ones(n, 4), "inliers": torch.ones(n, dtype=torch.bool)}
    >>> b = collate_matches([s(3), s(5)])
    >>> b["matches"].shape, b["match_mask"].sum(1).tolist()
    (torch.Size([2, 5, 4]), [3, 5])
    """
    if not samples:
        return {}
    n = max(len(s[MATCHES]) for s in samples)
    B = len(samples)
    first: Tensor = samples[0][MATCHES]
    matches = first.new_zeros(B, n, first.shape[-1])
    inliers = torch.zeros(B, n, dtype=torch.bool)
    mask = torch.zeros(B, n, dtype=torch.bool)
    for i, s in enumerate(samples):  # copies per pair; the arithmetic is in the model
        k = len(s[MATCHES])
        matches[i, :k] = s[MATCHES]
        inliers[i, :k] = s[INLIERS]
        mask[i, :k] = True
    out: dict[str, Any] = {MATCHES: matches, INLIERS: inliers, MATCH_MASK: mask}
    for key in samples[0]:
        if key in out:
            continue
        values = [s[key] for s in samples]
        out[key] = torch.stack(values) if isinstance(values[0], Tensor) else values
    return out
