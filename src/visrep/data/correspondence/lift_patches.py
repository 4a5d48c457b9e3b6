"""LIFT's training quadruplets (Yi et al., ECCV 2016, Sec. 4) from real photographs seen through
known random homographies.

A quadruplet is ``P1, P2`` (the same scene point in image 1 and image 2 of a pair), ``P3``
(another point of image 1) and ``P4`` (a patch of image 1 where no keypoint is detected). LIFT
takes its points from SfM reconstructions and keeps "only points with SfM correspondences";
here the correspondence is the pair's true homography ``H`` (:mod:`~visrep.data.correspondence.
homography`): a SIFT (DoG) detection ``p`` of image 1 is kept when ``H p`` lies within
``match_radius`` pixels of a SIFT detection of image 2 (a repeatable point). ``P2`` is cropped
around ``H p`` at the local scale of ``H`` (``sqrt |det J_H(p)|``) but NOT rotated: the sample's
``angle`` is the local rotation of ``H`` at ``p`` (what the orientation estimator must find,
used as the ground truth of the descriptor stage as LIFT uses SfM orientations).

Crops are one batched ``grid_sample`` per image (:func:`crop_patches`) on the affine matrices of
:func:`crop_theta`, which ``visrep.models.correspondence.lift`` also uses (through visrep's
spatial transformer) to crop inside the network.

Sample keys: ``patches`` float ``(4, 1, S, S)`` in [0, 1] (P1..P4), ``angle`` float ``()``
(radians), ``point`` int64 ``()`` (the scene point's id, unique over the data set), ``meta``.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.correspondence.homography import PairConfig, render_pair
from visrep.data.correspondence.sift import opencv
from visrep.data.correspondence.sources import (
    Photo,
    PhotoSource,
    load_photo,
    scan_source,
    split_photos,
)
from visrep.data.samples import META
from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "ANGLE",
    "PATCHES",
    "POINT",
    "LiftPatchDataModule",
    "Quadruplets",
    "crop_patches",
    "crop_theta",
    "local_affine",
    "make_quadruplets",
]

# sample keys of this family (proposed for ``visrep.data.samples``)
PATCHES, ANGLE, POINT = "patches", "angle", "point"
DEFAULT_SOURCES = (PhotoSource(builtin="sklearn"), PhotoSource(builtin="skimage"))


def crop_theta(
    centres: Tensor, radius: Tensor | float, angle: Tensor | float, size: tuple[int, int]
) -> Tensor:
    """Affine matrices (torch's normalised convention, ``align_corners=False``) of square crops.

    The output point ``u`` in ``[-1, 1]^2`` samples the image pixel ``c + r R(angle) u``:
    a crop of half side ``r`` pixels around ``c``, its axes turned by ``angle`` (x right, y
    down, so a positive angle turns clockwise on screen). An image rotated by ``angle`` about
    ``c`` therefore comes back upright (LIFT's ``Rot(P, angle)``).

    Args:
        centres: ``(..., 2)`` x, y pixel-index coordinates (pixel centres at integers).
        radius: half side in pixels, broadcast to ``(...)``.
        angle: radians, broadcast to ``(...)``.
        size: ``(H, W)`` of the image cropped.

    Returns:
        ``(..., 2, 3)``, differentiable in ``centres``, ``radius`` and ``angle``.

    >>> torch.equal(crop_theta(torch.tensor([1.5, 1.5]), 2.0, 0.0, (4, 4)), torch.eye(2, 3))
    True
    """
    if centres.shape[-1:] != (2,):
        raise ShapeError(f"crop_theta: centres must be (..., 2), got {tuple(centres.shape)}")
    h, w = size
    r = torch.as_tensor(radius, dtype=centres.dtype, device=centres.device).expand(
        centres.shape[:-1]
    )
    a = torch.as_tensor(angle, dtype=centres.dtype, device=centres.device).expand(
        centres.shape[:-1]
    )
    c, s = torch.cos(a), torch.sin(a)
    sx, sy = 2 * r / w, 2 * r / h
    tx = (2 * centres[..., 0] + 1) / w - 1
    ty = (2 * centres[..., 1] + 1) / h - 1
    row_x = torch.stack([sx * c, -sx * s, tx], -1)
    row_y = torch.stack([sy * s, sy * c, ty], -1)
    return torch.stack([row_x, row_y], -2)


def crop_patches(
    images: Tensor, centres: Tensor, radius: Tensor | float, angle: Tensor | float, out: int
) -> Tensor:
    """``K`` crops of each image in one ``grid_sample`` call (zeros outside the image).

    The data stage cannot import ``visrep.models`` (DESIGN.md's flow), so it calls torch's
    ``affine_grid`` / ``grid_sample`` itself; the network crops with the same
    :func:`crop_theta` through visrep's spatial transformer.

    Shape: images ``(B, C, H, W)``, centres ``(B, K, 2)`` -> ``(B, K, C, out, out)``.
    """
    if images.dim() != 4 or centres.dim() != 3 or centres.shape[0] != images.shape[0]:
        raise ShapeError(
            f"crop_patches: images (B, C, H, W) and centres (B, K, 2) expected, got "
            f"{tuple(images.shape)} and {tuple(centres.shape)}"
        )
    b, k = centres.shape[:2]
    theta = crop_theta(centres.to(images.dtype), radius, angle, tuple(images.shape[-2:]))
    grid = F.affine_grid(theta.reshape(b * k, 2, 3), [b * k, 1, out, out], align_corners=False)
    # one image, K grids stacked along the height: no copy of the image per crop
    grid = grid.reshape(b, k * out, out, 2)
    crops = F.grid_sample(images, grid, "bilinear", "zeros", align_corners=False)
    return crops.reshape(b, images.shape[1], k, out, out).transpose(1, 2)


def local_affine(H: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where ``H`` maps ``points`` ``(N, 2)``, its local scale ``sqrt |det J|`` and local rotation
    ``atan2(J10 - J01, J00 + J11)`` (the rotation closest to the Jacobian ``J`` of ``H`` there).
    """
    x = np.concatenate([points, np.ones((len(points), 1))], 1) @ H.T
    w = x[:, 2:]
    q = x[:, :2] / w
    # J = (H[:2, :2] - q H[2, :2]) / w, per point
    J = (H[None, :2, :2] - q[:, :, None] * H[None, 2:, :2]) / w[:, :, None]
    det = np.abs(J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0])
    angle = np.arctan2(J[:, 1, 0] - J[:, 0, 1], J[:, 0, 0] + J[:, 1, 1])
    return q, np.sqrt(det), angle


@dataclass
class Quadruplets:
    """Quadruplets of one or more pairs: ``patches`` uint8 ``(M, 4, S, S)``, ``angle`` float32
    ``(M,)``, ``point`` int64 ``(M,)`` and the name of each quadruplet's pair."""

    patches: np.ndarray
    angle: np.ndarray
    point: np.ndarray
    names: list[str]

    @staticmethod
    def concat(parts: list[Quadruplets], size: int) -> Quadruplets:
        if not parts:
            return Quadruplets(np.zeros((0, 4, size, size), np.uint8), np.zeros(0, np.float32),
                               np.zeros(0, np.int64), [])  # fmt: skip
        return Quadruplets(
            np.concatenate([p.patches for p in parts]), np.concatenate([p.angle for p in parts]),
            np.concatenate([p.point for p in parts]), [n for p in parts for n in p.names],
        )  # fmt: skip


def _dist_below(a: np.ndarray, b: np.ndarray, distance: float) -> np.ndarray:
    """bool ``(N, M)``: ``||a_i - b_j|| <= distance``."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) <= distance**2


def _far_from(candidates: np.ndarray, points: np.ndarray, distance: float) -> np.ndarray:
    """bool ``(len(candidates),)``: farther than ``distance`` from every one of ``points``."""
    if len(points) == 0 or len(candidates) == 0:
        return np.ones(len(candidates), bool)
    return ~_dist_below(candidates, points, distance).any(1)


def _spread(points: np.ndarray, distance: float) -> np.ndarray:
    """bool ``(N,)``: points with no EARLIER point within ``distance`` (a conservative greedy
    thinning: two scene points this close would give near-identical patches with different
    labels, contradictory negatives for hard mining)."""
    close = _dist_below(points, points, distance)
    return ~np.tril(close, -1).any(1)


def make_quadruplets(
    image1: np.ndarray,
    image2: np.ndarray,
    H: np.ndarray,
    num: int,
    patch_size: int,
    rng: np.random.Generator,
    max_keypoints: int = 500,
    match_radius: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``num`` quadruplets of a pair (grey uint8 images, ``H`` image 1 -> 2 pixels).

    Returns:
        patches uint8 ``(n, 4, S, S)``, the local rotation of ``H`` at each point ``(n,)`` and
        the points of image 1 ``(n, 2)``; ``n = 0`` when the pair has no repeatable point.
    """
    cv2 = opencv()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        sift = cv2.SIFT_create(nfeatures=max_keypoints)
        k1, k2 = sift.detect(image1, None), sift.detect(image2, None)
    finally:
        cv2.setNumThreads(threads)
    h, w = image1.shape
    r = patch_size / 2
    empty = (np.zeros((0, 4, patch_size, patch_size), np.uint8), np.zeros(0), np.zeros((0, 2)))
    if len(k1) < 2 or len(k2) < 1:
        return empty
    # SIFT repeats a location once per dominant orientation: one point per location
    p1 = np.unique(np.round(np.float64([k.pt for k in k1]), 1), axis=0)
    p2 = np.float64([k.pt for k in k2])
    q, scale, angle = local_affine(H, p1)
    inside1 = (p1[:, 0] >= r) & (p1[:, 0] <= w - 1 - r) & (p1[:, 1] >= r) & (p1[:, 1] <= h - 1 - r)
    r2 = r * scale
    inside2 = (q[:, 0] >= r2) & (q[:, 0] <= w - 1 - r2) & (q[:, 1] >= r2) & (q[:, 1] <= h - 1 - r2)
    repeat = ~_far_from(q, p2, match_radius)
    good = np.flatnonzero(inside1 & inside2 & repeat)
    if len(good) == 0:
        return empty
    good = rng.permutation(good)
    chosen = good[_spread(p1[good], r / 4)][:num]
    n = len(chosen)
    # P3: other detections of image 1, away from every chosen point; filled with random
    # positions when there are too few
    rest = np.setdiff1d(np.arange(len(p1)), chosen)
    others = rng.permutation(p1[rest][_far_from(p1[rest], p1[chosen], r / 2) & inside1[rest]])
    others = others[_spread(others, r / 4)][:n]

    def random_far(count: int, avoid: np.ndarray) -> np.ndarray:
        cand = rng.uniform([r, r], [w - 1 - r, h - 1 - r], (max(8 * count, 64), 2))
        cand = cand[_far_from(cand, avoid, r / 2)]
        if len(cand) < count:  # a texture-dense image: the farthest random positions
            cand = rng.uniform([r, r], [w - 1 - r, h - 1 - r], (count, 2))
        return cand[:count]

    all1 = np.float64([k.pt for k in k1])
    if len(others) < n:
        others = np.concatenate([others, random_far(n - len(others), p1[chosen])])
    negatives = random_far(n, all1)  # P4: no detection near
    t1 = torch.from_numpy(image1).float()[None, None]
    t2 = torch.from_numpy(image2).float()[None, None]
    c1 = torch.from_numpy(np.stack([p1[chosen], others, negatives], 0).reshape(1, 3 * n, 2))
    crops1 = crop_patches(t1, c1.float(), r, 0.0, patch_size)[0, :, 0].reshape(
        3, n, patch_size, patch_size
    )
    crops2 = crop_patches(
        t2, torch.from_numpy(q[chosen]).float()[None], torch.from_numpy(r2[chosen]).float()[None],
        0.0, patch_size,
    )[0, :, 0]  # fmt: skip
    patches = torch.stack([crops1[0], crops2, crops1[1], crops1[2]], 1)
    patches = patches.round().clamp(0, 255).to(torch.uint8).numpy()
    return patches, angle[chosen], p1[chosen]


class QuadrupletDataset(Dataset):
    """Samples of :class:`Quadruplets` (module docstring)."""

    def __init__(self, quads: Quadruplets) -> None:
        self.quads = quads

    def __len__(self) -> int:
        return len(self.quads.point)

    def __getitem__(self, i: int) -> dict[str, Any]:
        q = self.quads
        return {
            PATCHES: torch.from_numpy(q.patches[i]).float().div_(255.0)[:, None],
            ANGLE: torch.tensor(float(q.angle[i])),
            POINT: torch.tensor(int(q.point[i])),
            META: {"file": q.names[i]},
        }


class LiftPatchDataModule(SplitDataModule):
    """LIFT quadruplets (module docstring) from pairs rendered from real photographs with known
    random homographies, split by photograph (train / val / test), seeded.

    Args:
        sources: the photographs (default: scikit-learn's and scikit-image's sample photos).
        pairs_per_photo: pairs rendered from each photograph (each with its own homography).
        pair: size, homography sampler and photometric changes of a pair.
        points_per_pair: at most this many quadruplets per pair.
        patch_size: side ``S`` of the patches in pixels of image 1 (the detector's input).
        max_keypoints: SIFT keypoints detected per image.
        match_radius: a point is repeatable when ``H p`` is this close (pixels) to a detection
            of image 2.
        val_fraction, test_fraction: share of each source's photographs held out.
        seed: seed of the split and of every pair.
        loader: batch sizes and workers (a batch is a number of quadruplets).
    """

    def __init__(
        self,
        sources: list[PhotoSource] | None = None,
        pairs_per_photo: int = 4,
        pair: PairConfig = PairConfig(),
        points_per_pair: int = 48,
        patch_size: int = 48,
        max_keypoints: int = 500,
        match_radius: float = 2.0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
    ) -> None:
        super().__init__(loader, SplitConfig(val_fraction=0.0, seed=seed, stratify=False))
        self.sources = list(DEFAULT_SOURCES if sources is None else sources)
        checks = {
            "sources": (len(self.sources), len(self.sources) >= 1, "at least one source"),
            "pairs_per_photo": (pairs_per_photo, pairs_per_photo >= 1, ">= 1"),
            "points_per_pair": (points_per_pair, points_per_pair >= 2, ">= 2"),
            "patch_size": (patch_size, patch_size >= 16, ">= 16 (pixels)"),
            "max_keypoints": (max_keypoints, max_keypoints >= 2, ">= 2"),
            "match_radius": (match_radius, match_radius > 0, "> 0 (pixels)"),
            "val_fraction": (val_fraction, 0 <= val_fraction < 1, "in [0, 1)"),
            "test_fraction": (test_fraction, 0 < test_fraction < 1, "in (0, 1)"),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"data.{name} must be {expected}, got {value!r}")
        self.pairs_per_photo, self.pair = pairs_per_photo, pair
        self.points_per_pair, self.patch_size = points_per_pair, patch_size
        self.max_keypoints, self.match_radius = max_keypoints, float(match_radius)
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def _make(self, split: str, photos: list[Photo], first_id: int) -> Quadruplets:
        parts = []
        next_id = first_id
        for photo in photos:  # OpenCV per image pair
            image = load_photo(photo)
            for k in range(self.pairs_per_photo):
                rng = np.random.default_rng(zlib.crc32(f"{photo.key}#{k}#{self.seed}".encode()))
                im1, im2, H = render_pair(image, self.pair, rng)
                patches, angle, _ = make_quadruplets(
                    im1, im2, H, self.points_per_pair, self.patch_size, rng,
                    self.max_keypoints, self.match_radius,
                )  # fmt: skip
                n = len(patches)
                ids = np.arange(next_id, next_id + n, dtype=np.int64)
                next_id += n
                parts.append(Quadruplets(patches, angle.astype(np.float32), ids,
                                         [f"{photo.key}#{k}"] * n))  # fmt: skip
        quads = Quadruplets.concat(parts, self.patch_size)
        print(
            f"lift {split}: {len(quads.point)} quadruplets from {len(photos)} photographs",
            file=sys.stderr,
        )
        return quads

    def load(self) -> Splits:
        photos = [p for s in self.sources for p in scan_source(s)]
        split = split_photos(photos, self.val_fraction, self.test_fraction, self.seed)
        sets: dict[str, QuadrupletDataset] = {}
        first = 0
        for name in ("train", "val", "test"):
            quads = self._make(name, split[name], first)
            first += len(quads.point)
            sets[name] = QuadrupletDataset(quads)
        for name in ("train", "test"):
            if len(sets[name]) < 2:
                raise DataError(
                    f"the {name} split has {len(sets[name])} LIFT quadruplets: add photographs "
                    "(data.sources), pairs (data.pairs_per_photo) or lower data.test_fraction"
                )
        val = sets["val"] if len(sets["val"]) >= 2 else None
        return Splits(sets["train"], None, [], test=sets["test"], val=val)

    def spec(self) -> DataSpec:
        """Family ``lift``: grey ``S x S`` patches."""
        return DataSpec(
            family="lift", keys=(PATCHES, ANGLE, POINT), in_chans=1,
            image_size=(self.patch_size, self.patch_size),
        )  # fmt: skip

    def sample_names(self) -> list[str]:
        """The test quadruplets' pair names (``<source>:<photo>#<pair>``), in loader order."""
        self.setup("test")
        ds = self.test_set
        return list(ds.quads.names) if isinstance(ds, QuadrupletDataset) else []
