"""Detection results: images with predicted and true boxes (and instance masks), per-image
annotated PNGs, and precision-recall curves per class.

Boxes are XYXY pixels, continuous coordinates: a box ``(x1, y1, x2, y2)`` with integer corners
covers the pixels ``x1 <= col < x2``, ``y1 <= row < y2``. Masks are ``(N, H, W)``, bool, 0/1 or
probabilities (shown where ``> 0.5``). Inputs may be numpy arrays or (CPU or GPU) tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from PIL import Image, ImageDraw, ImageFont

from visrep.errors import ShapeError
from visrep.plots._save import save
from visrep.plots.segmentation import default_colors

__all__ = ["draw_detections", "overlay_masks", "plot_detections", "plot_pr_curves"]

MASK_ALPHA = 0.45


def _np(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (tensors detached and moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def _rgb_uint8(image: Any, where: str) -> np.ndarray:
    """An image ``(H, W)``, ``(H, W, 1|3|4)`` (uint8, or float in [0, 1]) as RGB uint8."""
    a = _np(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[..., :3] if a.shape[2] != 1 else a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ShapeError(f"{where}: expected an image (H, W, 3) or (H, W), got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ShapeError(f"{where}: expected uint8 or float pixels, got {a.dtype}")
    return np.round(np.clip(a.astype(np.float64), 0, 1) * 255).astype(np.uint8)


def _palette(colors: Sequence[Sequence[int]] | None, n: int) -> np.ndarray:
    """Class colours ``(n, 3)`` uint8; ``None``: :func:`default_colors`."""
    pal = np.asarray(default_colors(n) if colors is None else colors, dtype=np.int64)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) < n:
        raise ShapeError(f"colors: expected one RGB triple per class ({n}), got shape {pal.shape}")
    return np.clip(pal, 0, 255).astype(np.uint8)


def _instances(
    d: Mapping[str, Any] | None,
    n_classes: int,
    hw: tuple[int, int],
    where: str,
    scored: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(boxes (N, 4) float, labels (N,) int, scores (N,) or None, masks (N, H, W) bool or
    None)`` from a prediction or target dict, checked."""
    if d is None:
        return np.zeros((0, 4)), np.zeros(0, np.int64), None, None
    if "boxes" not in d or "labels" not in d:
        raise ShapeError(f"{where}: expected 'boxes' and 'labels', got {sorted(d)}")
    boxes, labels = _np(d["boxes"]).astype(np.float64), _np(d["labels"]).reshape(-1)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ShapeError(f"{where}: expected boxes (N, 4) XYXY, got {boxes.shape}")
    if len(labels) != len(boxes) or (len(labels) and not np.issubdtype(labels.dtype, np.integer)):
        raise ShapeError(
            f"{where}: expected integer labels (N,) with N = {len(boxes)}, "
            f"got {labels.dtype} {labels.shape}"
        )
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise ShapeError(f"{where}: labels {sorted(set(bad.tolist()))} not in 0..{n_classes - 1}")
    scores = None
    if scored:
        if "scores" not in d:
            raise ShapeError(f"{where}: expected 'scores', got {sorted(d)}")
        scores = _np(d["scores"]).astype(np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ShapeError(
                f"{where}: expected scores (N,) with N = {len(boxes)}, got {scores.shape}"
            )
    masks = None
    if d.get("masks") is not None:
        m = _np(d["masks"])
        if m.shape != (len(boxes), *hw):
            raise ShapeError(
                f"{where}: expected masks (N, H, W) = {(len(boxes), *hw)}, got {m.shape}"
            )
        masks = m > 0.5 if np.issubdtype(m.dtype, np.floating) else m != 0
    return boxes, labels.astype(np.int64), scores, masks


def overlay_masks(
    image: np.ndarray, masks: np.ndarray, colors: np.ndarray, alpha: float = MASK_ALPHA
) -> np.ndarray:
    """Blend instance masks into an image: each pixel takes the colour of the first instance
    that covers it, ``(1 - alpha) * pixel + alpha * colour``.

    Args:
        image: ``(H, W, 3)`` uint8.
        masks: ``(N, H, W)`` bool, in priority order.
        colors: ``(N, 3)`` the colour of each instance.

    Returns:
        ``(H, W, 3)`` uint8, a new array.

    >>> overlay_masks(np.zeros((1, 2, 3), np.uint8), np.array([[[True, False]]]),
    ...               np.array([[200, 0, 100]]), alpha=0.5)[0].tolist()
    [[100, 0, 50], [0, 0, 0]]
    """
    out = image.copy()
    if len(masks) == 0:
        return out
    covered = masks.any(0)
    first = masks.argmax(0)  # index of the first instance covering each pixel
    tint = np.asarray(colors, dtype=np.float64)[first[covered]]
    out[covered] = np.round((1 - alpha) * image[covered] + alpha * tint).astype(np.uint8)
    return out


def _pixel_box(box: np.ndarray, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The inclusive pixel rectangle ``[c1, r1, c2, r2]`` of an XYXY box, clipped to the image."""
    x1, y1, x2, y2 = np.round(box).astype(np.int64)
    x1, x2 = np.clip([x1, max(x2 - 1, x1)], 0, hw[1] - 1)
    y1, y2 = np.clip([y1, max(y2 - 1, y1)], 0, hw[0] - 1)
    return int(x1), int(y1), int(x2), int(y2)


def _text_color(rgb: np.ndarray) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    scores: Any | None,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    masks: Any | None = None,
    *,
    width: int | None = None,
    captions: bool = True,
) -> np.ndarray:
    """An image with detections drawn on it (PIL), for the per-image files of ``visrep predict``.

    Masks are blended in first (the highest score on top), then each box is outlined in its
    class colour, ``width`` pixels wide inside the box, with a caption ``"name 0.93"`` (or just
    the name when ``scores`` is None) on a filled label above its top-left corner (inside the
    box when there is no room above).

    Args:
        image: ``(H, W, 3)`` or ``(H, W)``, uint8 or float in [0, 1].
        boxes: ``(N, 4)`` XYXY pixels. labels: ``(N,)`` class ids. scores: ``(N,)`` or None.
        class_names: the name of every class id.
        colors: an RGB triple per class (default: :func:`default_colors`).
        masks: ``(N, H, W)`` instance masks, or None.
        width: outline width in pixels (default: ``max(1, round(min(H, W) / 250))``).
        captions: write the captions.

    Returns:
        ``(H, W, 3)`` uint8, a new array.
    """
    img = _rgb_uint8(image, "image")
    hw = (img.shape[0], img.shape[1])
    d = {"boxes": boxes, "labels": labels, "masks": masks}
    if scores is not None:
        d["scores"] = scores
    box, lab, sc, msk = _instances(d, len(class_names), hw, "detections", scores is not None)
    pal = _palette(colors, len(class_names))
    order = np.argsort(-sc, kind="stable") if sc is not None else np.arange(len(box))
    if msk is not None:
        img = overlay_masks(img, msk[order], pal[lab[order]])
    w = width if width is not None else max(1, round(min(hw) / 250))
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(10, round(min(hw) / 40)))
    for i in order[::-1]:  # the highest score drawn last, on top
        c1, r1, c2, r2 = _pixel_box(box[i], hw)
        color = tuple(int(v) for v in pal[lab[i]])
        draw.rectangle([c1, r1, c2, r2], outline=color, width=w)
        if not captions:
            continue
        text = class_names[lab[i]] + (f" {sc[i]:.2f}" if sc is not None else "")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2, bottom - top + 2
        y = r1 - th if r1 - th >= 0 else r1
        draw.rectangle([c1, y, c1 + tw - 1, y + th - 1], fill=color)
        draw.text((c1 + 1 - left, y + 1 - top), text, fill=_text_color(pal[lab[i]]), font=font)
    return np.asarray(pil).copy()


def _rects(boxes: np.ndarray) -> list[Rectangle]:
    return [Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1]) for b in boxes]


def plot_detections(
    images: Sequence[Any],
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]] | None,
    class_names: Sequence[str],
    path: str | Path,
    score_thresh: float = 0.5,
    colors: Sequence[Sequence[int]] | None = None,
    *,
    titles: Sequence[str] | None = None,
    cols: int | None = None,
) -> Path:
    """A grid of images, one panel each: true boxes dashed, predicted boxes solid with a
    ``"name score"`` caption, predicted masks as translucent overlays, true masks as dashed
    outlines; colours by class, legend below.

    Sized for dozens of small boxes per image (BCCD: ~20 red cells in 640 x 480): panels about
    5.5 inches wide at 150 dpi, thin lines, 5-point captions on translucent labels.

    Args:
        images: ``(H, W, 3)`` or ``(H, W)`` each, uint8 or float in [0, 1].
        predictions: per image ``{"boxes", "scores", "labels", optional "masks"}``.
        targets: per image ``{"boxes", "labels", optional "masks"}``, or None (no truth shown).
        class_names: the name of every class id.
        path: the PNG to write.
        score_thresh: predictions below this score are not drawn.
        colors: an RGB triple per class (default: :func:`default_colors`).
        titles: a title per panel (e.g. file names).
        cols: panels per row (default: ``ceil(sqrt(n))``, at most 3).
    """
    n = len(images)
    if len(predictions) != n or (targets is not None and len(targets) != n):
        raise ShapeError(
            f"plot_detections: expected one prediction and target per image ({n}), got "
            f"{len(predictions)} and {'None' if targets is None else len(targets)}"
        )
    if n == 0:
        raise ShapeError("plot_detections: no images")
    pal = _palette(colors, len(class_names))
    imgs = [_rgb_uint8(im, f"images[{i}]") for i, im in enumerate(images)]
    cols = max(1, min(cols or min(3, math.ceil(math.sqrt(n))), n))
    rows = math.ceil(n / cols)
    aspect = max(im.shape[0] / im.shape[1] for im in imgs)
    # every input is checked before the figure exists (a bad one leaves no open figure)
    parsed = [
        (
            _instances(
                None if targets is None else targets[i], len(class_names), im.shape[:2],
                f"targets[{i}]", False,
            ),
            _instances(predictions[i], len(class_names), im.shape[:2], f"predictions[{i}]", True),
        )
        for i, im in enumerate(imgs)
    ]  # fmt: skip
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.5 * cols, (5.5 * aspect + 0.3) * rows + 0.4), squeeze=False
    )
    seen: set[int] = set()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        hw = imgs[i].shape[:2]
        (tb, tl, _, tm), (pb, pl, ps, pm) = parsed[i]
        keep = ps >= score_thresh
        order = np.flatnonzero(keep)[np.argsort(-ps[keep], kind="stable")]
        img = imgs[i] if pm is None else overlay_masks(imgs[i], pm[order], pal[pl[order]])
        ax.imshow(img)
        seen.update(tl.tolist() + pl[order].tolist())
        for k in range(len(tb) if tm is not None else 0):
            ax.contour(
                tm[k], levels=[0.5], colors=[pal[tl[k]] / 255], linewidths=0.7, linestyles="--"
            )
        ax.add_collection(
            PatchCollection(
                _rects(tb), facecolor="none", edgecolor=pal[tl] / 255, linewidth=0.9, linestyle="--"
            )
        )
        ax.add_collection(
            PatchCollection(
                _rects(pb[order]), facecolor="none", edgecolor=pal[pl[order]] / 255, linewidth=1.1
            )
        )
        for k in order:
            c = pal[pl[k]]
            above = pb[k, 1] > 0.03 * hw[0]  # room for the caption above the box
            ax.text(
                pb[k, 0],
                pb[k, 1],
                f"{class_names[pl[k]]} {ps[k]:.2f}",
                fontsize=5,
                color=np.array(_text_color(c)) / 255,
                va="bottom" if above else "top",
                ha="left",
                clip_on=True,
                bbox={"facecolor": c / 255, "alpha": 0.7, "pad": 0.6, "edgecolor": "none"},
            )
        ax.set_xlim(-0.5, hw[1] - 0.5)
        ax.set_ylim(hw[0] - 0.5, -0.5)
        head = f"{titles[i]}\n" if titles is not None else ""
        truth = "" if targets is None else f", {len(tb)} true"
        ax.set_title(f"{head}{len(order)} predicted (score >= {score_thresh:g}){truth}", fontsize=7)
    handles = [Patch(color=pal[c] / 255, label=class_names[c]) for c in sorted(seen)]
    handles += [Line2D([], [], color="k", lw=1.1, label="predicted")]
    if targets is not None:
        handles += [Line2D([], [], color="k", lw=0.9, ls="--", label="true")]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    return save(fig, path, dpi=150)


def plot_pr_curves(
    curves: Mapping[str, tuple[Any, Any]],
    ap: Mapping[str, float],
    path: str | Path,
    title: str = "precision-recall",
) -> Path:
    """Precision against recall, one line per class, the class's AP in the legend.

    Args:
        curves: ``{name: (recall (R,), precision (R,))}``, e.g. from
            :func:`visrep.tasks.detection_metrics.pr_curves` (COCO's interpolated precision).
        ap: ``{name: AP}`` for the legend (classes without one are named alone).
        path: the PNG to write.
        title: the axes title (e.g. ``"test, IoU 0.5"``).
    """
    lines = {}
    for name, (recall, precision) in curves.items():
        r, p = _np(recall).astype(float), _np(precision).astype(float)
        if r.ndim != 1 or r.shape != p.shape:
            raise ShapeError(
                f"curves[{name!r}]: expected recall and precision (R,) of one length, "
                f"got {r.shape} and {p.shape}"
            )
        lines[name] = (r, p)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for name, (r, p) in lines.items():
        label = f"{name} (AP {ap[name]:.3f})" if name in ap else name
        ax.plot(r, p, lw=1.5, label=label)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no class with ground truth", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return save(fig, path)
