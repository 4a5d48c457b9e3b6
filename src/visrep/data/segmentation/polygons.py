"""Annotated regions (polygons, rectangles, circles, COCO run-length masks) rasterised to semantic
label maps: the shared core of :mod:`.coco` and :mod:`.labelme`.

Rasterisation is PIL's ``ImageDraw``, the library labelme's own ``shape_to_mask`` draws with, so
a labelme annotation becomes the mask its author saw in labelme, pixel for pixel, and nothing is
added to the dependencies. Pixel ``(x, y)`` is the unit square centred on the integer
coordinates ``(x, y)``; a shape covers the pixels PIL fills for its interior plus its one-pixel
outline (``fill`` and ``outline`` both set, as labelme draws): the polygon with corners
``(1, 1)``, ``(4, 1)``, ``(4, 4)``, ``(1, 4)`` covers the 4x4 pixels with ``1 <= x, y <= 4``.
(pycocotools' ``frPyObjects`` rasterises polygons with its own rule, which differs from this
one along the boundary; run-length masks decode exactly.)

Regions are drawn in order, each over the earlier ones (labelme's ``shapes_to_label`` rule).

COCO's run-length encoding (Lin et al. 2014, "Microsoft COCO", the COCO API's ``maskApi.c``): a
``(H, W)`` mask is flattened in column-major (Fortran) order and stored as alternating run
lengths, starting with a run of 0s (possibly empty). The compressed string form
(``rleToString`` / ``rleFrString``) stores each count, from the fourth on as the difference to
the count two before, as a little-endian sequence of 5-bit groups, one character
``chr(48 + group)`` each, bit 0x20 meaning "more groups follow" and bit 0x10 of the last group
the sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from visrep.errors import DataError

#: The region kinds :func:`draw_label_map` draws.
REGION_KINDS = ("polygon", "rectangle", "circle", "rle")


@dataclass(frozen=True, eq=False)
class Region:
    """One annotated region, drawn into a label map with the value ``value``.

    Attributes:
        value: the label value of its pixels (a class id, or the ignore index).
        kind: ``"polygon"`` (``points`` ``(N, 2)``, N >= 3, ``x, y`` pixels), ``"rectangle"``
            (two opposite corners), ``"circle"`` (the centre, then a point on the circle) or
            ``"rle"`` (``counts``: COCO's uncompressed run lengths of the whole image).
        points: ``(N, 2)`` float vertices (not used by ``"rle"``).
        counts: ``(K,)`` int64 run lengths (``"rle"`` only).
    """

    value: int
    kind: str
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def draw_label_map(
    height: int, width: int, regions: Sequence[Region], background: int = 0
) -> np.ndarray:
    """A ``(height, width)`` int32 label map: ``background``, then each region painted with its
    value in order (later regions over earlier ones).

    >>> square = Region(7, "polygon", np.array([[1, 1], [4, 1], [4, 4], [1, 4]]))
    >>> int((draw_label_map(6, 6, [square]) == 7).sum())
    16
    """
    im = Image.new("I", (width, height), background)
    draw = ImageDraw.Draw(im)
    for r in regions:
        v = int(r.value)
        if r.kind == "polygon":  # a flat [x0, y0, x1, ...] list: no loop over the points here
            draw.polygon(np.asarray(r.points, np.float64).ravel().tolist(), fill=v, outline=v)
        elif r.kind == "rectangle":
            (x0, y0), (x1, y1) = np.asarray(r.points, np.float64).tolist()
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=v, outline=v)
        elif r.kind == "circle":
            (cx, cy), (px, py) = np.asarray(r.points, np.float64).tolist()
            d = float(np.hypot(cx - px, cy - py))
            draw.ellipse([cx - d, cy - d, cx + d, cy + d], fill=v, outline=v)
        elif r.kind == "rle":
            im.paste(v, mask=Image.fromarray(rle_decode(r.counts, (height, width))))
        else:
            raise DataError(f"region kind {r.kind!r} is not one of {list(REGION_KINDS)}")
    return np.asarray(im, dtype=np.int32)


def rle_counts_from_string(s: str | bytes) -> np.ndarray:
    """The run lengths of COCO's compressed RLE string (pycocotools' ``rleFrString``), decoded
    without a loop over characters or counts.

    Returns:
        ``(K,)`` int64 counts (not yet checked against a mask size: see :func:`rle_decode`).

    >>> rle_counts_from_string("5220003").tolist()  # a 2x3 square in a 4x5 mask
    [5, 2, 2, 2, 2, 2, 5]
    """
    raw = s.encode("ascii", "replace") if isinstance(s, str) else bytes(s)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    bad = (c < 0) | (c > 63)
    if bad.any():
        ch = raw[int(np.flatnonzero(bad)[0])]
        raise DataError(
            f"compressed RLE string holds {chr(ch)!r}; expected characters '0'..'o' "
            "(pycocotools' rleToString)"
        )
    more = (c & 0x20) != 0
    if more[-1]:
        raise DataError("compressed RLE string is truncated: its last character continues a count")
    last = ~more  # the last character of each count
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    lengths = np.diff(np.append(starts, c.size))
    if lengths.max() > 12:  # 12 groups of 5 bits fill an int64
        raise DataError(f"compressed RLE string holds a count of {lengths.max()} characters")
    k = np.arange(c.size) - np.repeat(starts, lengths)  # position of the group in its count
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * lengths)), x)
    # Counts from the fourth on are stored as differences to the count two before.
    counts = x.copy()
    counts[1::2] = np.cumsum(x[1::2])
    counts[2::2] = np.cumsum(x[2::2])
    return counts


def rle_counts(
    counts: Sequence[int] | np.ndarray | str | bytes, size: tuple[int, int]
) -> np.ndarray:
    """COCO RLE counts (a list, or the compressed string) as checked int64 run lengths of a
    ``size = (H, W)`` mask.

    Raises:
        DataError: negative counts, or counts that do not sum to ``H * W``.
    """
    if isinstance(counts, str | bytes):
        out = rle_counts_from_string(counts)
    else:
        try:
            out = np.asarray(counts, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"RLE counts must be a list of ints or a string: {e}") from e
        if out.ndim != 1:
            raise DataError(f"RLE counts must be a flat list, got shape {out.shape}")
    h, w = int(size[0]), int(size[1])
    if (out < 0).any():
        raise DataError(f"RLE counts hold negative run lengths {out[out < 0][:3].tolist()}")
    if int(out.sum()) != h * w:
        raise DataError(f"RLE counts sum to {int(out.sum())}, not H*W = {h}*{w} = {h * w}")
    return out


def rle_decode(
    counts: Sequence[int] | np.ndarray | str | bytes, size: tuple[int, int]
) -> np.ndarray:
    """A COCO RLE mask (uncompressed counts or the compressed string) as ``(H, W)`` bool.

    Runs alternate 0, 1, 0, ... starting with 0 and fill the mask column by column (COCO's
    column-major order); one ``np.repeat``, no loop over runs.

    >>> rle_decode([1, 2, 3], (2, 3)).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0]]
    """
    c = rle_counts(counts, size)
    h, w = int(size[0]), int(size[1])
    runs = np.repeat((np.arange(c.size) % 2).astype(bool), c)
    return np.ascontiguousarray(runs.reshape(w, h).T)


def rle_encode(mask: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` mask as COCO's uncompressed RLE counts (column-major, starting with 0s).

    >>> rle_encode(np.array([[0, 1, 0], [1, 0, 0]])).tolist()
    [1, 2, 3]
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise DataError(f"rle_encode takes a (H, W) mask, got shape {m.shape}")
    flat = m.T.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))  # the first run counts 0s
    return runs.astype(np.int64)


def polygon_points(flat: Sequence[float], where: str) -> np.ndarray:
    """A COCO polygon ``[x1, y1, x2, y2, ...]`` as ``(N, 2)`` float vertices, N >= 3.

    Raises:
        DataError: an odd number of coordinates, fewer than 3 points, or non-numbers; the
            message starts with ``where``.
    """
    try:
        xy = np.asarray(flat, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: polygon coordinates are not numbers ({e})") from e
    if xy.ndim != 1 or xy.size % 2 or xy.size < 6:
        raise DataError(
            f"{where}: polygon has {xy.size} coordinates; expected [x1, y1, x2, y2, ...] with "
            "at least 3 points"
        )
    if not np.isfinite(xy).all():
        raise DataError(f"{where}: polygon coordinates are not finite")
    return xy.reshape(-1, 2)


@dataclass(frozen=True, eq=False, repr=False)
class RegionLabel:
    """A label map drawn on demand from annotated regions: a label source of
    :class:`~visrep.data.segmentation.base.SegmentationDataset` (called with no argument).

    Attributes:
        source: what messages name (the annotation file, and the image in it).
        height, width: the label map's size, as the annotation states it.
        regions: drawn in order over ``background``.
        background: the value of pixels no region covers.
    """

    source: str
    height: int
    width: int
    regions: tuple[Region, ...]
    background: int = 0

    def __call__(self) -> np.ndarray:
        return draw_label_map(self.height, self.width, self.regions, self.background)

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return repr(self.source)
