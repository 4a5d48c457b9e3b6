"""Selective search region proposals (Uijlings, van de Sande, Gevers and Smeulders, "Selective
Search for Object Recognition", IJCV 2013): R-CNN's class-independent proposals (Girshick et
al. 2014; seed 001, seed 003 "1. Propose a bunch of potential boxes").

1. **Over-segmentation** (Sec. 3.1): Felzenszwalb and Huttenlocher's graph-based segmentation
   (IJCV 2004; scikit-image's :func:`skimage.segmentation.felzenszwalb`) of the image in the
   strategy's colour space, with threshold ``k`` and ``min_size = k``, ``sigma = 0.8`` (the
   authors' code).
2. **Hierarchical grouping** (Sec. 3.1, Algorithm 1): the two most similar neighbouring regions
   are merged, the new region's similarities to its neighbours computed, until one region (the
   whole image) is left; every region ever formed gives a box.
3. **Similarities** (Sec. 3.2), each in ``[0, 1]``, summed over the strategy's measures
   ``s = a_1 s_colour + a_2 s_texture + a_3 s_size + a_4 s_fill``:

   - colour: histogram intersection ``sum_k min(c_i^k, c_j^k)`` of 25-bin histograms per
     channel (L1-normalised over all channels);
   - texture: the same on SIFT-like histograms: Gaussian derivatives (``sigma = 1``) in 8
     orientations per channel (the positive and negative parts of the derivatives along 0, 45,
     90 and 135 degrees, as the authors' code), 10 bins each over ``[0, 0.43]`` (the code's
     maximum), so 240 bins for 3 channels;
   - size: ``1 - (size(r_i) + size(r_j)) / size(im)`` (small regions merge early);
   - fill: ``1 - (size(BB_ij) - size(r_i) - size(r_j)) / size(im)`` (regions that fit
     together merge early).

   A merged region's histograms are the size-weighted mean of its parts', its size the sum and
   its box the union, so no pixel is read again after the first histograms.
4. **Diversification** (Sec. 3.3): every combination of colour space (``hsv``, ``lab``,
   ``rgi`` = normalised r, g + intensity, ``h`` = hue, ``i`` = intensity, ``rgb``), threshold
   ``k`` and similarity set (``"ctsf"``, ``"tsf"``, ``"f"``, ``"s"``) gives one hierarchy.
   Presets (Sec. 5.2): ``single`` (HSV, k = 100, C+T+S+F), ``fast`` (HSV and Lab, k = 50 and 100,
   C+T+S+F and T+S+F: 8 strategies, R-CNN's setting) and ``quality`` (5 colour spaces, k = 50,
   100, 150, 300, 4 similarity sets: 80 strategies).
5. **Ranking** (Sec. 3.4): in each hierarchy the region made by the last merge (the whole image)
   has position 1, the one before 2 and so on; the initial regions share the last position.
   Each position is multiplied by a random number in ``[0, 1)`` (seeded), all hierarchies are
   sorted together by these values, and lower-ranked duplicate boxes are removed.

Feature computation is vectorised over pixels (``np.bincount`` on label images); the merge loop
(one iteration per merge, inherent to the greedy algorithm) works on arrays of region features
and neighbour pairs, reusing the pair slots that a merge frees.

Boxes are XYXY float in continuous pixel coordinates (:mod:`visrep.data.detection.base`): a
region covering pixel columns ``x0..x1`` (inclusive) spans ``[x0, x1 + 1)``.

Measured on the 87 BCCD validation images (640x480, 1,138 objects; ``ImageSets/Main/val.txt``),
one thread (``OMP_NUM_THREADS=1``) on a 2-core machine shared with other jobs (load ~5), so
the times are upper bounds. Recall: objects with a proposal at IoU >= 0.5 / 0.7; MABO: mean
best IoU per object.

- ``fast``, 2000 kept, full size: R@0.5 0.9754, R@0.7 0.7083, MABO 0.759, 1995.6 proposals
  per image (min 1694), 7.98 s per image;
- ``fast``, 2000 kept, ``image_width=500`` (R-CNN's demo setting): R@0.5 0.9631, R@0.7 0.7135,
  MABO 0.756, 1816.2 proposals per image (min 1157), 4.24 s per image;
- ``single`` (HSV, k = 100, C+T+S+F), full size: R@0.5 0.7733, R@0.7 0.3884, MABO 0.632,
  515.5 proposals per image (min 313), 1.27 s per image.

(Profile of one image in ``fast`` mode: 6.7 s in all, 4.5 s of it in the four segmentations,
0.56 s in the eight groupings.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy import ndimage

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "COLOUR_SPACES",
    "STRATEGIES",
    "Regions",
    "SelectiveSearch",
    "hierarchical_grouping",
    "neighbour_pairs",
    "oversegment",
    "region_features",
    "selective_search",
    "to_colour_space",
]

ColourSpace = Literal["rgb", "hsv", "lab", "rgi", "h", "i"]
COLOUR_SPACES: tuple[str, ...] = ("rgb", "hsv", "lab", "rgi", "h", "i")
# (colour spaces, ks, similarity sets) of the paper's presets (Sec. 5.2).
STRATEGIES: dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]] = {
    "single": (("hsv",), (100,), ("ctsf",)),
    "fast": (("hsv", "lab"), (50, 100), ("ctsf", "tsf")),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("ctsf", "tsf", "f", "s")),
}
COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_SIGMA = 1.0
TEXTURE_MAX = 0.43  # the authors' "maximum value of gradient" for the texture bins
_NEG = -np.inf


def to_colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """An RGB uint8 image in a selective-search colour space, every channel in ``[0, 1]``.

    Lab is scaled as the authors' code stores it (``L / 100``, ``(a + 128) / 255``,
    ``(b + 128) / 255``); ``rgi`` is ``(R, G) / (R + G + B)`` and the mean intensity.

    Shape: ``(H, W, 3)`` uint8 -> ``(H, W, C)`` float64, ``C`` = 1 for ``h`` and ``i``, else 3.

    >>> to_colour_space(np.full((1, 1, 3), 255, np.uint8), "rgi").round(3).tolist()
    [[[0.333, 0.333, 1.0]]]
    """
    from skimage import color  # imported on use: scikit-image loads slowly

    rgb = image.astype(np.float64) / 255.0
    if space == "rgb":
        return rgb
    if space in ("hsv", "h"):
        hsv = color.rgb2hsv(rgb)
        return hsv if space == "hsv" else hsv[..., :1]
    if space == "lab":
        lab = color.rgb2lab(rgb)
        offset, scale = np.array([0.0, 128.0, 128.0]), np.array([100.0, 255.0, 255.0])
        return np.clip((lab + offset) / scale, 0.0, 1.0)
    if space == "rgi":
        total = rgb.sum(-1, keepdims=True)
        rg = np.divide(rgb[..., :2], total, out=np.full_like(rgb[..., :2], 1 / 3), where=total > 0)
        return np.concatenate([rg, total / 3.0], axis=-1)
    if space == "i":
        return color.rgb2gray(rgb)[..., None]
    raise ConfigError(
        f"selective search colour space must be one of {COLOUR_SPACES}, got {space!r}"
    )


def oversegment(image: np.ndarray, k: float, sigma: float = 0.8) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation with threshold ``k`` and ``min_size = k``.

    ``image`` is ``(H, W, C)`` in ``[0, 1]``; one-channel images are segmented as three equal
    channels, as the authors' code does. scikit-image divides ``k`` by 255 for float images, so
    ``k`` means what it means on 0..255 images (the paper's values).

    Returns:
        int64 ``(H, W)`` region ids ``0..N-1``, every id present.
    """
    from skimage.segmentation import felzenszwalb

    seg = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    labels = felzenszwalb(seg, scale=float(k), sigma=sigma, min_size=max(1, int(k)))
    labels = labels.astype(np.int64)
    if not (np.bincount(labels.ravel()) > 0).all():  # make the ids contiguous
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    return labels


class Regions(NamedTuple):
    """Per-region features of a segmentation: sizes ``(N,)`` (pixels), boxes ``(N, 4)`` XYXY,
    colour ``(N, 25 C)`` and texture ``(N, 80 C)`` histograms (L1-normalised rows)."""

    sizes: np.ndarray
    boxes: np.ndarray
    colour: np.ndarray
    texture: np.ndarray


def colour_bins(image: np.ndarray) -> np.ndarray:
    """Per pixel and channel, the index of its bin in the concatenated colour histogram.

    Shape: ``(H, W, C)`` in ``[0, 1]`` -> int64 ``(H * W, C)``, values ``c * 25 + bin``.
    """
    bins = np.clip((image * COLOUR_BINS).astype(np.int64), 0, COLOUR_BINS - 1)
    return (bins + COLOUR_BINS * np.arange(image.shape[-1])).reshape(-1, image.shape[-1])


def texture_bins(image: np.ndarray) -> np.ndarray:
    """Per pixel, channel and orientation, the index of its bin in the texture histogram.

    The responses are the positive parts of ``+-`` the Gaussian derivative (``sigma = 1``)
    along 0, 45, 90 and 135 degrees, binned over ``[0, 0.43]`` into 10 bins.

    Shape: ``(H, W, C)`` -> int64 ``(H * W, 8 C)``, values ``(8 c + o) * 10 + bin``.
    """
    h, w, c = image.shape
    out = np.empty((h, w, c, 8), dtype=np.int64)
    scale = (TEXTURE_BINS - 1) / TEXTURE_MAX
    for ch in range(c):  # channels, not pixels: each filter is one vectorised call
        gx = ndimage.gaussian_filter(image[..., ch], TEXTURE_SIGMA, order=(0, 1))
        gy = ndimage.gaussian_filter(image[..., ch], TEXTURE_SIGMA, order=(1, 0))
        d = np.stack([gx, (gx + gy) / np.sqrt(2), gy, (gy - gx) / np.sqrt(2)], axis=-1)
        r = np.concatenate([np.maximum(d, 0), np.maximum(-d, 0)], axis=-1)
        out[:, :, ch] = np.clip(np.rint(r * scale), 0, TEXTURE_BINS - 1).astype(np.int64)
    out += TEXTURE_BINS * np.arange(8 * c).reshape(c, 8)
    return out.reshape(h * w, 8 * c)


def _histograms(labels: np.ndarray, bins: np.ndarray, n: int, width: int) -> np.ndarray:
    # One bincount over (region, bin) pairs, then L1-normalised rows.
    flat = (labels.reshape(-1, 1) * width + bins).ravel()
    hist = np.bincount(flat, minlength=n * width).reshape(n, width).astype(np.float32)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1e-12)


def region_features(
    labels: np.ndarray, colour: np.ndarray, texture: np.ndarray | None = None
) -> Regions:
    """Sizes, boxes and histograms of every region of a label image (vectorised over pixels).

    Args:
        labels: int ``(H, W)`` region ids ``0..N-1``.
        colour: :func:`colour_bins` of the image, ``(H * W, C)``.
        texture: :func:`texture_bins` of the image, ``(H * W, 8 C)`` (None: an empty histogram).

    >>> lab = np.array([[0, 0, 1], [0, 0, 1]])
    >>> r = region_features(lab, colour_bins(np.zeros((2, 3, 1))))
    >>> r.sizes.tolist(), r.boxes.tolist()
    ([4.0, 2.0], [[0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 3.0, 2.0]])
    """
    w = labels.shape[1]
    n = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n)
    if (sizes == 0).any():
        raise ShapeError("region_features: region ids must be 0..N-1 with every id present")
    order = np.argsort(flat, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ys, xs = np.divmod(order, w)
    boxes = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) + 1,
            np.maximum.reduceat(ys, starts) + 1,
        ],
        axis=1,
    ).astype(np.float64)
    c_hist = _histograms(labels, colour, n, COLOUR_BINS * colour.shape[1])
    if texture is None:
        t_hist = np.zeros((n, 0), np.float32)
    else:
        t_hist = _histograms(labels, texture, n, TEXTURE_BINS * texture.shape[1])
    return Regions(sizes.astype(np.float64), boxes, c_hist, t_hist)


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """The pairs of regions that touch (4-connectivity), each once, ``a < b``.

    Shape: ``(H, W)`` -> int64 ``(E, 2)``, sorted.

    >>> neighbour_pairs(np.array([[0, 1], [2, 2]])).tolist()
    [[0, 1], [0, 2], [1, 2]]
    """
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    keep = a != b
    pairs = np.stack([np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])], axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2).astype(np.int64)


def _check_measures(measures: str) -> None:
    if not measures or set(measures) - set("ctsf") or len(set(measures)) != len(measures):
        raise ConfigError(
            f"selective search similarity must combine the letters c, t, s, f (colour, texture, "
            f"size, fill) once each, e.g. 'ctsf' or 'tsf'; got {measures!r}"
        )


def _similarity(
    i: int | np.ndarray,
    j: np.ndarray,
    r: Regions,
    measures: str,
    area: float,
) -> np.ndarray:
    """``s(r_i, r_j)`` (Sec. 3.2) for region ``i`` (or an array aligned with ``j``) and ``j``."""
    s = np.zeros(len(j), dtype=np.float64)
    if "c" in measures:
        s += np.minimum(r.colour[i], r.colour[j]).sum(-1)
    if "t" in measures:
        s += np.minimum(r.texture[i], r.texture[j]).sum(-1)
    both = r.sizes[i] + r.sizes[j]
    if "s" in measures:
        s += 1.0 - both / area
    if "f" in measures:
        bi, bj = r.boxes[i], r.boxes[j]
        lo = np.minimum(bi[..., :2], bj[..., :2])
        hi = np.maximum(bi[..., 2:], bj[..., 2:])
        bb = (hi - lo).prod(-1)
        s += 1.0 - (bb - both) / area
    return s


def hierarchical_grouping(
    regions: Regions, pairs: np.ndarray, measures: str = "ctsf", area: float | None = None
) -> np.ndarray:
    """Algorithm 1 of the paper: greedily merge the most similar pair of neighbouring regions.

    Args:
        regions: the initial regions (:func:`region_features`), ``N`` of them.
        pairs: neighbouring region pairs (:func:`neighbour_pairs`).
        measures: the similarity set, letters of ``"ctsf"``.
        area: the image's size in pixels (default: the sum of the region sizes).

    Returns:
        float64 ``(N + M, 4)`` boxes in creation order: the ``N`` initial regions, then the
        ``M`` merges (``M = N - 1`` for a connected image; the last is the whole image).
    """
    _check_measures(measures)
    n = len(regions.sizes)
    total = 2 * n - 1
    area = float(regions.sizes.sum()) if area is None else float(area)

    def grow(a: np.ndarray) -> np.ndarray:
        out = np.zeros((total, *a.shape[1:]), dtype=a.dtype)
        out[:n] = a
        return out

    r = Regions(*(grow(a) for a in regions))
    pa, pb = pairs[:, 0].copy(), pairs[:, 1].copy()
    sim = _similarity(pa, pb, r, measures, area) if len(pa) else np.zeros(0)
    t = n
    while t < total and len(sim):
        e = int(np.argmax(sim))
        if sim[e] == _NEG:
            break  # no neighbouring pair left (a disconnected region graph)
        i, j = int(pa[e]), int(pb[e])
        si, sj = r.sizes[i], r.sizes[j]
        r.sizes[t] = si + sj
        r.boxes[t, :2] = np.minimum(r.boxes[i, :2], r.boxes[j, :2])
        r.boxes[t, 2:] = np.maximum(r.boxes[i, 2:], r.boxes[j, 2:])
        r.colour[t] = (si * r.colour[i] + sj * r.colour[j]) / (si + sj)
        r.texture[t] = (si * r.texture[i] + sj * r.texture[j]) / (si + sj)
        hit = np.flatnonzero((pa == i) | (pa == j) | (pb == i) | (pb == j))
        other = np.where((pa[hit] == i) | (pa[hit] == j), pb[hit], pa[hit])
        other = np.unique(other[(other != i) & (other != j)])
        pa[hit], pb[hit], sim[hit] = -1, -1, _NEG
        # the merged region's pairs reuse freed slots: there are never more of them
        slots = hit[: len(other)]
        pa[slots], pb[slots] = t, other
        sim[slots] = _similarity(t, other, r, measures, area)
        t += 1
    return r.boxes[:t]


@dataclass(frozen=True)
class SelectiveSearch:
    """Selective search options; calling it on an image gives the ranked proposals (module
    docstring).

    Attributes:
        strategy: the paper's preset: ``single``, ``fast`` (R-CNN's) or ``quality``.
        colour_spaces: override the preset's colour spaces (of ``rgb, hsv, lab, rgi, h, i``).
        ks: override the preset's segmentation thresholds ``k``.
        similarities: override the preset's similarity sets (letters of ``ctsf``).
        sigma: Gaussian smoothing before the segmentation (paper: 0.8).
        max_proposals: keep the best-ranked this many (R-CNN: about 2000); None keeps all.
        min_box_size: drop boxes narrower or lower than this many pixels (0 keeps all).
        image_width: run on the image resized to this width (boxes are scaled back), for speed
            (R-CNN's detection demo uses 500); None runs at the image's size.
        seed: seed of the ranking's random numbers.
    """

    strategy: Literal["single", "fast", "quality"] = "fast"
    colour_spaces: tuple[ColourSpace, ...] | None = None
    ks: tuple[int, ...] | None = None
    similarities: tuple[str, ...] | None = None
    sigma: float = 0.8
    max_proposals: int | None = 2000
    min_box_size: float = 0.0
    image_width: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"selective search strategy must be one of {list(STRATEGIES)}, got "
                f"{self.strategy!r}"
            )
        spaces, ks, sims = self.plan()
        bad = [s for s in spaces if s not in COLOUR_SPACES]
        if not spaces or bad:
            raise ConfigError(
                f"selective search colour_spaces must be some of {COLOUR_SPACES}, got {spaces}"
            )
        if not ks or min(ks) <= 0:
            raise ConfigError(f"selective search ks must be positive numbers, got {ks}")
        if not sims:
            raise ConfigError("selective search similarities must not be empty")
        for m in sims:
            _check_measures(m)
        if self.sigma < 0:
            raise ConfigError(f"selective search sigma must be >= 0, got {self.sigma}")
        if self.max_proposals is not None and self.max_proposals < 1:
            raise ConfigError(
                f"selective search max_proposals must be >= 1 or null, got {self.max_proposals}"
            )
        if self.min_box_size < 0:
            raise ConfigError(
                f"selective search min_box_size must be >= 0, got {self.min_box_size}"
            )
        if self.image_width is not None and self.image_width < 8:
            raise ConfigError(
                f"selective search image_width must be >= 8 or null, got {self.image_width}"
            )

    def plan(self) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
        """The colour spaces, ks and similarity sets this config runs."""
        spaces, ks, sims = STRATEGIES.get(self.strategy, STRATEGIES["fast"])
        return (
            tuple(self.colour_spaces) if self.colour_spaces is not None else spaces,
            tuple(self.ks) if self.ks is not None else ks,
            tuple(self.similarities) if self.similarities is not None else sims,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Ranked proposals of an image, see :func:`selective_search`."""
        return selective_search(image, self)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or min(image.shape[:2]) < 2:
        raise ShapeError(
            f"selective search takes an (H, W), (H, W, 1) or (H, W, 3) image of at least 2x2 "
            f"pixels, got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ShapeError(f"selective search takes a uint8 image, got {image.dtype}")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    height = max(2, round(h * width / w))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def selective_search(image: np.ndarray, config: SelectiveSearch | None = None) -> np.ndarray:
    """Selective search proposals of one image, best-ranked first (module docstring).

    Args:
        image: uint8 ``(H, W, 3)`` RGB (or grey ``(H, W)`` / ``(H, W, 1)``).
        config: the options (default: ``fast`` mode, 2000 proposals).

    Returns:
        float32 ``(P, 4)`` XYXY boxes in the image's pixels, distinct, ranked.

    >>> img = np.zeros((32, 48, 3), np.uint8); img[8:20, 10:30] = (250, 20, 20)
    >>> boxes = selective_search(img, SelectiveSearch(strategy="single"))
    >>> [10.0, 8.0, 30.0, 20.0] in boxes.tolist(), [0.0, 0.0, 48.0, 32.0] in boxes.tolist()
    (True, True)
    """
    cfg = config or SelectiveSearch()
    rgb = _as_rgb(image)
    h0, w0 = rgb.shape[:2]
    if cfg.image_width is not None and cfg.image_width != w0:
        rgb = _resize(rgb, cfg.image_width)
    h, w = rgb.shape[:2]
    spaces, ks, sims = cfg.plan()
    rng = np.random.default_rng(cfg.seed)
    boxes, priority = [], []
    for space in spaces:
        cs = to_colour_space(rgb, space)
        cbins = colour_bins(cs)
        tbins = texture_bins(cs) if any("t" in m for m in sims) else None
        for k in ks:
            labels = oversegment(cs, k, cfg.sigma)
            regions = region_features(labels, cbins, tbins)
            pairs = neighbour_pairs(labels)
            n = len(regions.sizes)
            # the initial regions, once per segmentation, ranked after every merged region as
            # in the authors' code (priorities 2n - 1 .. n there, n - 1 .. 1 for the merges)
            boxes.append(regions.boxes)
            priority.append(np.arange(2 * n - 1, n - 1, -1, dtype=np.float64))
            for m in sims:
                merged = hierarchical_grouping(regions, pairs, m, h * w)[n:]
                boxes.append(merged)
                priority.append(np.arange(len(merged), 0, -1, dtype=np.float64))
    all_boxes = np.concatenate(boxes)
    ranks = np.concatenate(priority) * rng.random(len(all_boxes))
    all_boxes = all_boxes[np.argsort(ranks, kind="stable")]
    _, first = np.unique(all_boxes, axis=0, return_index=True)
    out = all_boxes[np.sort(first)]  # lower-ranked duplicates removed, ranking kept
    if (h, w) != (h0, w0):
        out = out * np.array([w0 / w, h0 / h, w0 / w, h0 / h])
    if cfg.min_box_size > 0:
        wh = out[:, 2:] - out[:, :2]
        out = out[(wh >= cfg.min_box_size).all(1)]
    if cfg.max_proposals is not None:
        out = out[: cfg.max_proposals]
    return out.astype(np.float32)
