"""Bag of visual words: a k-means codebook and histograms of word assignments (seed 002).

Seed 002 ("Bag of Visual Words"): local descriptors (dense SIFT at 3 scales) are quantised
against "1000 codewords running k-means on 1 million randomly selected SIFT descriptors", and
an image becomes "a histogram of codeword frequencies" fed to a linear classifier (Csurka et
al., ECCV 2004 workshop; Sivic and Zisserman, ICCV 2003).

* Hard assignment: each descriptor votes for its nearest word (Csurka et al. 2004, Sec. 2).
* Soft assignment, the kernel codebook's "codeword uncertainty" (van Gemert et al., "Visual
  word ambiguity", TPAMI 2010, "UNC"): descriptor ``r`` gives word ``w`` the weight
  ``K_sigma(||w - r||) / sum_j K_sigma(||w_j - r||)`` with a Gaussian kernel ``K_sigma``.
* Spatial pyramid (Lazebnik et al., CVPR 2006, Sec. 3): histograms over the cells of 1 x 1,
  2 x 2, 4 x 4 grids, concatenated, optionally weighted per level as the pyramid match kernel
  (Eq. 3: ``1 / 2^L`` for level 0, ``1 / 2^(L - l + 1)`` for level ``l``).
* Normalisation: a power ``sign(h) |h|^alpha`` (alpha = 0.5 with L2 is the Hellinger map), then
  L1 or L2 over the whole vector.

Everything after k-means runs in torch, batched over images: one matmul (distances to all words)
per chunk of images, no loop over descriptors. Images with different numbers of descriptors are
padded and masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.utils.embedding import subsample as subsample_indices

Grid = int | tuple[int, int]
Descriptors = Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


# -- inputs -------------------------------------------------------------------------------------
def _as_tensor(x: Tensor | np.ndarray, what: str, dtype: torch.dtype | None = None) -> Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.float()
    if dtype is not None:
        t = t.to(dtype)
    # one sum is cheap; it is non-finite if any entry is (or on overflow: then look closer)
    if t.numel() and not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
        raise DataError(f"{what}: descriptors contain NaN or infinite values")
    return t


def pad_descriptors(
    descriptors: Descriptors,
    positions: Tensor | np.ndarray | Sequence[Tensor | np.ndarray] | None = None,
    what: str = "encode",
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-image descriptor sets as one padded batch.

    Args:
        descriptors: (N, K, D), or a list of N arrays (n_i, D).
        positions: None, (K, 2) shared by all images, (N, K, 2), or a list of (n_i, 2); ``(x, y)``
            in pixels.
        what: the caller's name, for error messages.

    Returns:
        ``x`` (N, K_max, D), ``positions`` (N, K_max, 2) or None, and ``mask`` (N, K_max) bool
        (None when nothing is padded).
    """
    if isinstance(descriptors, (Tensor, np.ndarray)):
        x = _as_tensor(descriptors, what)
        if x.dim() != 3:
            raise ShapeError(
                f"{what}: descriptors must be (N, K, D) or a list of (n_i, D), got {tuple(x.shape)}"
            )
        sets, mask = None, None
    else:
        sets = [_as_tensor(d, what) for d in descriptors]
        if any(d.dim() != 2 for d in sets) or len({d.shape[1] for d in sets}) > 1:
            raise ShapeError(
                f"{what}: each image's descriptors must be (n_i, D) with one D, got "
                f"{[tuple(d.shape) for d in sets][:4]}"
            )
        device = sets[0].device if sets else None
        lengths = torch.tensor([len(d) for d in sets], device=device)
        k = int(lengths.max()) if len(sets) else 0
        dim = sets[0].shape[1] if sets else 0
        x = sets[0].new_zeros(len(sets), k, dim) if sets else torch.zeros(0, 0, 0)
        mask = torch.arange(k, device=device) < lengths[:, None]
        if sets:
            x[mask] = torch.cat(sets)
        if bool(mask.all()):
            mask = None
    if positions is None:
        return x, None, mask
    if isinstance(positions, (Tensor, np.ndarray)):
        p = torch.as_tensor(positions, dtype=torch.float32)
        if p.dim() == 2:
            p = p.expand(len(x), *p.shape)
    else:
        parts = [torch.as_tensor(q, dtype=torch.float32) for q in positions]
        if sets is None or [len(q) for q in parts] != [len(d) for d in sets]:
            raise ShapeError(f"{what}: one (n_i, 2) position array per image's descriptors")
        p = torch.zeros(len(parts), x.shape[1], 2)
        if parts:
            p[torch.arange(x.shape[1]) < torch.tensor([len(q) for q in parts])[:, None]] = (
                torch.cat(parts)
            )
    if p.shape != (*x.shape[:2], 2):
        raise ShapeError(
            f"{what}: positions must be (K, 2) or (N, K, 2) matching descriptors "
            f"{tuple(x.shape)}, got {tuple(p.shape)}"
        )
    return x, p, mask


def flatten_descriptors(descriptors: Descriptors, what: str = "fit") -> np.ndarray:
    """All descriptors of all images as one (M, D) float32 array (for k-means / GMM fitting)."""
    if isinstance(descriptors, (Tensor, np.ndarray)):
        x = _as_tensor(descriptors, what, torch.float32)
        if x.dim() not in (2, 3):
            raise ShapeError(
                f"{what}: descriptors must be (M, D), (N, K, D) or a list of (n_i, D), got "
                f"{tuple(x.shape)}"
            )
        return x.reshape(-1, x.shape[-1]).cpu().numpy()
    x, _, mask = pad_descriptors(descriptors, None, what)
    x = x.float() if mask is None else x[mask].float()
    return x.reshape(-1, x.shape[-1]).cpu().numpy()


def subsample(x: np.ndarray, max_count: int | None, seed: int) -> np.ndarray:
    """At most ``max_count`` rows of ``x``, drawn without replacement (seeded; the draw of
    :func:`visrep.utils.embedding.subsample`)."""
    if max_count is None:
        return x
    return x[subsample_indices(len(x), max_count, seed)]


# -- spatial pyramid ----------------------------------------------------------------------------
def pyramid_grids(pyramid: Sequence[Grid]) -> list[tuple[int, int]]:
    """``(rows, cols)`` of each pyramid level; an int ``g`` means a ``g x g`` grid."""
    grids = [(g, g) if isinstance(g, int) else (int(g[0]), int(g[1])) for g in pyramid]
    if not grids or any(r < 1 or c < 1 for r, c in grids):
        raise ConfigError(f"pyramid: levels must be grids of >= 1 x 1 cells, got {pyramid}")
    return grids


def lazebnik_weights(num_levels: int) -> list[float]:
    """Level weights of the pyramid match kernel (Lazebnik et al. 2006, Eq. 3).

    >>> lazebnik_weights(3)
    [0.25, 0.25, 0.5]
    """
    top = num_levels - 1
    return [1 / 2**top] + [1 / 2 ** (top - lvl + 1) for lvl in range(1, num_levels)]


def pyramid_cells(
    positions: Tensor, image_size: tuple[int, int], pyramid: Sequence[Grid]
) -> tuple[Tensor, int]:
    """The cell of every descriptor at every pyramid level, numbered across levels.

    A ``rows x cols`` grid splits the ``H x W`` image into equal cells; pixel ``x`` covers
    ``[x - 0.5, x + 0.5)``. Levels are numbered one after the other, cells row by row.

    Args:
        positions: (..., K, 2) ``(x, y)`` in pixels.
        image_size: ``(H, W)``.
        pyramid: grids, e.g. ``(1, 2, 4)`` or ``[(1, 1), (2, 2), (3, 1)]``.

    Returns:
        ``cells`` (..., K, L) long, and the total number of cells.

    >>> pyramid_cells(torch.tensor([[0.0, 0.0], [3.0, 3.0]]), (4, 4), (1, 2))[0].tolist()
    [[0, 1], [0, 4]]
    """
    h, w = image_size
    if h < 1 or w < 1:
        raise ConfigError(f"pyramid: image_size must be (H, W) >= 1, got {image_size}")
    out, offset = [], 0
    for rows, cols in pyramid_grids(pyramid):
        c = ((positions[..., 0] + 0.5) * cols / w).floor().long().clamp(0, cols - 1)
        r = ((positions[..., 1] + 0.5) * rows / h).floor().long().clamp(0, rows - 1)
        out.append(offset + r * cols + c)
        offset += rows * cols
    return torch.stack(out, -1), offset


# -- assignment and pooling ---------------------------------------------------------------------
def squared_distances(x: Tensor, centers: Tensor) -> Tensor:
    """``||x - c||^2`` for all descriptor / word pairs, as one matmul.

    Args:
        x: (..., K, D). centers: (V, D).

    Returns:
        (..., K, V), clamped at 0 (the expansion can round below it).
    """
    return (_centred_cross(x, centers) + x.square().sum(-1, keepdim=True)).clamp_min(0)


def _centred_cross(x: Tensor, centers: Tensor) -> Tensor:
    """``||c||^2 - 2 x . c``: (..., K, D) -> (..., K, V), as one 2-D ``addmm`` (a batched 3-D
    matmul is slower on CPU)."""
    flat = torch.addmm(centers.square().sum(-1), x.reshape(-1, x.shape[-1]), centers.T, alpha=-2)
    return flat.view(*x.shape[:-1], len(centers))


def hard_assign(x: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest word of every descriptor: (..., K, D) -> (..., K) long."""
    # ||x||^2 is the same for every word: leave it out of the argmin
    scores = _centred_cross(x, centers)
    if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64):
        # torch's CPU argmin over the last axis took 2.7 ms on (3072, 1000) float32, numpy's
        # 0.26 ms (one core); both return the first minimum
        return torch.from_numpy(scores.detach().numpy().argmin(-1))
    return scores.argmin(-1)


def soft_assign(x: Tensor, centers: Tensor, sigma: float) -> Tensor:
    """Codeword-uncertainty weights (van Gemert et al. 2010, UNC): (..., K, D) -> (..., K, V).

    ``softmax_w(-||x - w||^2 / (2 sigma^2))``: every descriptor spreads a unit vote over the
    words with a Gaussian kernel of width ``sigma``; ``sigma -> 0`` gives hard assignment.
    """
    if not sigma > 0:
        raise ConfigError(f"soft assignment: sigma must be > 0, got {sigma}")
    # -||x - c||^2 / (2 sigma^2) without ||x||^2, the same for every word (softmax ignores it)
    return torch.softmax(_centred_cross(x, centers) / (-2 * sigma**2), -1)


def normalise(v: Tensor, power: float = 1.0, norm: str = "l2", eps: float = 1e-12) -> Tensor:
    """``sign(v) |v|^power``, then L1 / L2 / no normalisation over the last axis.

    >>> normalise(torch.tensor([[1.0, 3.0]]), norm="l1").tolist()
    [[0.25, 0.75]]
    """
    if power != 1.0:
        v = v.sign() * v.abs().pow(power)
    if norm == "l1":
        return v / v.abs().sum(-1, keepdim=True).clamp_min(eps)
    if norm == "l2":
        return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)
    if norm != "none":
        raise ConfigError(f"normalisation: norm must be l1, l2 or none, got {norm!r}")
    return v


def bovw_histograms(
    x: Tensor,
    centers: Tensor,
    assignment: Literal["hard", "soft"] = "hard",
    sigma: float | None = None,
    mask: Tensor | None = None,
    cells: Tensor | None = None,
    num_cells: int = 1,
    level_weights: Sequence[float] | None = None,
) -> Tensor:
    """Un-normalised (spatial-pyramid) bag-of-words histograms of a batch of images.

    Args:
        x: (B, K, D) descriptors. centers: (V, D) words.
        assignment: ``hard`` (nearest word) or ``soft`` (:func:`soft_assign` with ``sigma``).
        mask: (B, K) bool, False for padding.
        cells: (B, K, L) pyramid cell of each descriptor per level (:func:`pyramid_cells`),
            or None for one histogram per image.
        num_cells: total number of cells over all levels.
        level_weights: a weight per level (default 1).

    Returns:
        (B, num_cells * V): per cell, the (soft) count of each word.
    """
    b, k, _ = x.shape
    v = len(centers)
    if cells is None:
        cells, num_cells = x.new_zeros(b, k, 1, dtype=torch.long), 1
    levels = cells.shape[-1]
    weights = [1.0] * levels if level_weights is None else list(level_weights)
    keep = x.new_ones(b, k) if mask is None else mask.to(x.dtype)
    out = x.new_zeros(b, num_cells * v)
    if assignment == "hard":
        words = hard_assign(x, centers)
        for lvl in range(levels):
            out.scatter_add_(1, cells[..., lvl] * v + words, keep * weights[lvl])
        return out
    if assignment != "soft" or sigma is None:
        raise ConfigError(f"assignment must be 'hard' or 'soft' with a sigma, got {assignment!r}")
    soft = soft_assign(x, centers, sigma)
    if mask is not None:
        soft = soft * keep[..., None]
    if num_cells == 1:
        return out + sum(weights) * soft.sum(1)
    out = out.view(b, num_cells, v)
    for lvl in range(levels):  # a few levels; each a batched (cells x K) @ (K x V) product
        onehot = nn.functional.one_hot(cells[..., lvl], num_cells).to(x.dtype)
        out += weights[lvl] * (onehot.transpose(1, 2) @ soft)
    return out.view(b, num_cells * v)


def gap_sigma(x: np.ndarray, centers: Tensor, chunk: int = 65536) -> float:
    """A kernel width for soft assignment: ``sqrt(median(d_2^2 - d_1^2))`` over descriptors
    ``x`` (M, D), with ``d_1, d_2`` the distances to the nearest and second-nearest word.

    With it the median descriptor gives its second word ``e^(-1/2)`` of its first word's weight;
    it scales with the descriptors. A heuristic (van Gemert et al. 2010 cross-validate sigma).
    Measured once (3,000 CIFAR-10 test images, 2,000 to fit and train, 1,000 to test; dense SIFT,
    200 words, square root + L2, LinearSVC): it gave 0.37 times the median nearest-word distance
    and 35.6 % accuracy; 0.25, 0.5 and 1.0 times that distance gave 35.9 %, 35.2 % and 26.2 %,
    hard assignment 33.4 %.
    """
    if len(centers) < 2:
        return 1.0
    gaps = []
    for c in np.array_split(x, max(1, len(x) // chunk)):
        d2 = squared_distances(torch.from_numpy(c).to(centers), centers)
        two = d2.topk(2, dim=-1, largest=False).values
        gaps.append(two[:, 1] - two[:, 0])
    return float(torch.cat(gaps).median().clamp_min(1e-12).sqrt())


# -- the codebook -------------------------------------------------------------------------------
class Codebook(nn.Module):
    """A visual-word codebook (MiniBatch k-means) and the bag-of-words encoder built on it.

    ``fit`` runs scikit-learn's ``MiniBatchKMeans`` on at most ``max_descriptors`` randomly
    drawn descriptors (seed 002: 1,000 words from 1 million descriptors); ``encode`` turns each
    image's descriptors into a normalised (spatial-pyramid) histogram in torch, on the device of
    the descriptors; ``save`` / ``load`` keep it in an ``.npz`` file (no pickle).

    Cost of ``fit`` (one busy CPU core, measured once): 1,000 words from 200,000 128-D
    descriptors in 11.9 s.

    Args:
        num_words: codebook size V.
        assignment: ``hard`` or ``soft`` (codeword uncertainty, van Gemert et al. 2010).
        sigma: kernel width of soft assignment; None: set by ``fit`` with :func:`gap_sigma`
            on the fitting descriptors (a heuristic; the paper cross-validates it).
        pyramid: grids of the spatial pyramid, e.g. ``(1, 2, 4)`` (Lazebnik et al. 2006);
            ``(1,)`` is the plain histogram.
        pyramid_weights: ``lazebnik`` (pyramid match kernel level weights) or ``none``.
        power: exponent of the power normalisation (1: none; 0.5: square root).
        norm: ``l1`` (word frequencies, the seed's histogram), ``l2`` or ``none``.
        max_descriptors: descriptors drawn for k-means.
        seed: seeds the draw and k-means.
        kmeans_batch_size: mini-batch size of k-means.
        batch_size: images per torch batch in ``encode`` (B x K x V floats at a time; on one
            CPU core 16 was 2.4x faster than 64 for 192 x 128 descriptors and 1,000 words: the
            working set stays in cache; on a GPU use more).
    """

    def __init__(
        self,
        num_words: int = 1000,
        assignment: Literal["hard", "soft"] = "hard",
        sigma: float | None = None,
        pyramid: Sequence[Grid] = (1,),
        pyramid_weights: Literal["none", "lazebnik"] = "none",
        power: float = 1.0,
        norm: Literal["l1", "l2", "none"] = "l1",
        max_descriptors: int | None = 1_000_000,
        seed: int = 0,
        kmeans_batch_size: int = 4096,
        batch_size: int = 16,
    ):
        super().__init__()
        if num_words < 1:
            raise ConfigError(f"codebook: num_words must be >= 1, got {num_words}")
        if assignment not in ("hard", "soft"):
            raise ConfigError(f"codebook: assignment must be hard or soft, got {assignment!r}")
        if sigma is not None and not sigma > 0:
            raise ConfigError(f"codebook: sigma must be > 0 or None, got {sigma}")
        if pyramid_weights not in ("none", "lazebnik"):
            raise ConfigError(
                f"codebook: pyramid_weights must be none or lazebnik, got {pyramid_weights!r}"
            )
        if norm not in ("l1", "l2", "none") or not power > 0:
            raise ConfigError(
                f"codebook: norm must be l1/l2/none and power > 0, got {norm}, {power}"
            )
        if batch_size < 1:
            raise ConfigError(f"codebook: batch_size must be >= 1, got {batch_size}")
        self.num_words, self.assignment, self.sigma = num_words, assignment, sigma
        self.pyramid = pyramid_grids(pyramid)
        self.pyramid_weights, self.power, self.norm = pyramid_weights, power, norm
        self.max_descriptors, self.seed = max_descriptors, seed
        self.kmeans_batch_size, self.batch_size = kmeans_batch_size, batch_size
        self.register_buffer("centers", torch.empty(0, 0))

    @property
    def fitted(self) -> bool:
        return self.centers.numel() > 0

    @property
    def num_cells(self) -> int:
        return sum(r * c for r, c in self.pyramid)

    @property
    def num_features(self) -> int:
        """Length of an encoding: ``num_words * num_cells``."""
        return self.num_words * self.num_cells

    def fit(self, descriptors: Descriptors) -> Codebook:
        """Learn the words by MiniBatch k-means.

        Args:
            descriptors: (M, D), (N, K, D) or a list of (n_i, D).

        Returns:
            self.
        """
        from sklearn.cluster import MiniBatchKMeans

        x = flatten_descriptors(descriptors, "Codebook.fit")
        if len(x) < self.num_words:
            raise ConfigError(
                f"Codebook.fit: num_words={self.num_words} is larger than the number of "
                f"descriptors ({len(x)}); use fewer words or more images"
            )
        x = subsample(x, self.max_descriptors, self.seed)
        km = MiniBatchKMeans(
            n_clusters=self.num_words,
            batch_size=self.kmeans_batch_size,
            random_state=self.seed,
            n_init=3,
            compute_labels=False,
        ).fit(x)
        self.centers = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
        if self.assignment == "soft" and self.sigma is None:
            self.sigma = gap_sigma(x, self.centers)
        return self

    def _check(self, dim: int) -> None:
        if not self.fitted:
            raise ConfigError("Codebook: encode before fit (or load a saved codebook)")
        if dim != self.centers.shape[1]:
            raise ShapeError(
                f"Codebook.encode: descriptors have {dim} dimensions, the codebook "
                f"{self.centers.shape[1]}"
            )

    def encode(
        self,
        descriptors: Descriptors,
        positions: Tensor | np.ndarray | Sequence[Tensor | np.ndarray] | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Bag-of-words vectors of N images.

        Args:
            descriptors: (N, K, D) or a list of N (n_i, D).
            positions: keypoint ``(x, y)``: (K, 2), (N, K, 2) or a list of (n_i, 2); needed
                with a spatial pyramid.
            image_size: ``(H, W)``; needed with a spatial pyramid.

        Returns:
            (N, num_features) on the descriptors' device, in the centers' dtype.
        """
        x, pos, mask = pad_descriptors(descriptors, positions, "Codebook.encode")
        if len(x) == 0:
            return self.centers.new_zeros(0, self.num_features)
        self._check(x.shape[-1])
        centers = self.centers.to(x.device)
        x = x.to(centers.dtype)
        pyramid = self.num_cells > 1
        if pyramid and (pos is None or image_size is None):
            raise ConfigError(
                f"Codebook.encode: the pyramid {self.pyramid} needs positions and image_size"
            )
        weights = None
        if self.pyramid_weights == "lazebnik":
            weights = lazebnik_weights(len(self.pyramid))
        out = []
        for i in range(0, len(x), self.batch_size):  # chunks of images bound the memory
            xb = x[i : i + self.batch_size]
            cells, n = None, 1
            if pyramid:
                pb = pos[i : i + self.batch_size].to(x.device)
                cells, n = pyramid_cells(pb, image_size, self.pyramid)
            mb = None if mask is None else mask[i : i + self.batch_size].to(x.device)
            h = bovw_histograms(xb, centers, self.assignment, self.sigma, mb, cells, n, weights)
            out.append(normalise(h, self.power, self.norm))
        return torch.cat(out)

    forward = encode

    def save(self, path: str | Path) -> Path:
        """Write the codebook and its options to ``path`` (.npz)."""
        self._check(self.centers.shape[1])
        path = Path(path)
        np.savez(
            path,
            kind=np.array("visrep.codebook"),
            centers=self.centers.cpu().numpy(),
            assignment=np.array(self.assignment),
            sigma=np.array(np.nan if self.sigma is None else self.sigma),
            pyramid=np.array(self.pyramid, dtype=np.int64),
            pyramid_weights=np.array(self.pyramid_weights),
            power=np.array(self.power),
            norm=np.array(self.norm),
            seed=np.array(self.seed),
        )
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 16) -> Codebook:
        """A codebook written by :meth:`save`."""
        z = load_npz(path, "visrep.codebook")
        sigma = float(z["sigma"])
        book = cls(
            num_words=len(z["centers"]),
            assignment=str(z["assignment"]),
            sigma=None if np.isnan(sigma) else sigma,
            pyramid=[tuple(g) for g in z["pyramid"].tolist()],
            pyramid_weights=str(z["pyramid_weights"]),
            power=float(z["power"]),
            norm=str(z["norm"]),
            seed=int(z["seed"]),
            batch_size=batch_size,
        )
        book.centers = torch.from_numpy(z["centers"])
        return book

    def extra_repr(self) -> str:
        return (
            f"num_words={self.num_words}, assignment={self.assignment}, sigma={self.sigma}, "
            f"pyramid={self.pyramid}, power={self.power}, norm={self.norm}"
        )


def load_npz(path: str | Path, kind: str) -> dict[str, np.ndarray]:
    """The arrays of a visrep ``.npz`` of ``kind``; DataError if missing or of another kind."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a {kind} .npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if "kind" not in arrays or str(arrays["kind"]) != kind:
        raise DataError(f"{path}: not a {kind} file (kind={arrays.get('kind', 'missing')})")
    return arrays
