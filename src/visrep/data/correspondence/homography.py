"""Image pairs with a known homography, made from one real photograph (seeded).

Image 1 is a crop of the photograph; image 2 is the photograph seen through a random
homography ``H`` that maps image-1 pixels to image-2 pixels, with photometric changes. The
homography is sampled as a perspective distortion of image 1's corners (DeTone et al. 2016's
and SuperPoint's generator): a rotation about the centre, an isotropic scale, then each corner
displaced independently by at most ``max_shift`` of the side; ``H`` is the exact homography of
these four corner correspondences. Image 2 takes its pixels from the whole (resized)
photograph, so it shows content outside image 1 as a real second view would; only what falls
outside the photograph is black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from visrep.data.correspondence.sift import opencv
from visrep.errors import ConfigError, ShapeError

__all__ = [
    "PairConfig",
    "homography_from_corners",
    "photometric",
    "render_pair",
    "sample_homography",
]


@dataclass(frozen=True)
class PairConfig:
    """How a pair is made from a photograph (``--data.pair.max_shift 0.2`` ...).

    Attributes:
        image_size: the long side of image 1 in pixels (photographs smaller than that are not
            upsampled: image 1 is then smaller).
        margin: the share of each side of the resized photograph left around image 1 (the
            crop is ``1 - 2 margin`` of the photograph, at a random position).
        max_shift: each corner moves by at most this share of image 1's width / height.
        max_rotation: rotation about the centre, uniform in ``[-max_rotation, max_rotation]``
            degrees.
        scale: the isotropic scale is log-uniform in ``[scale[0], scale[1]]``.
        contrast, brightness: image 2's contrast factor is uniform in ``1 +- contrast``, its
            brightness offset in ``+- brightness`` (intensities in [0, 1]).
        gamma: image 2's gamma is log-uniform in ``[1 / gamma, gamma]``.
        noise: image 2 gets Gaussian noise of a standard deviation uniform in ``[0, noise]``.
    """

    image_size: int = 320
    margin: float = 0.125
    max_shift: float = 0.15
    max_rotation: float = 25.0
    scale: tuple[float, float] = (0.75, 1.25)
    contrast: float = 0.3
    brightness: float = 0.15
    gamma: float = 1.5
    noise: float = 0.03

    def __post_init__(self) -> None:
        checks = {
            "image_size": (self.image_size >= 32, ">= 32"),
            "margin": (0 <= self.margin < 0.5, "in [0, 0.5)"),
            "max_shift": (0 <= self.max_shift < 0.5, "in [0, 0.5)"),
            "max_rotation": (0 <= self.max_rotation <= 180, "in [0, 180]"),
            "scale": (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1], "0 < lo <= hi"),
            "contrast": (0 <= self.contrast < 1, "in [0, 1)"),
            "brightness": (0 <= self.brightness < 1, "in [0, 1)"),
            "gamma": (self.gamma >= 1, ">= 1"),
            "noise": (self.noise >= 0, ">= 0"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(
                    f"data.pair.{name} must be {expected}, got {getattr(self, name)!r}"
                )


def homography_from_corners(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homographies ``(B, 3, 3)`` (``H[2, 2] = 1``) mapping four points ``src`` ``(B, 4,
    2)`` exactly to ``dst`` (the 8 x 8 linear system of the DLT with ``h_33 = 1``, batched).

    >>> sq = np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]], float)
    >>> homography_from_corners(sq, 2 * sq + 3).round(6).tolist()
    [[[2.0, 0.0, 3.0], [0.0, 2.0, 3.0], [0.0, 0.0, 1.0]]]
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.ndim == 2:
        return homography_from_corners(src[None], dst[None])[0]
    if src.shape != dst.shape or src.shape[1:] != (4, 2):
        raise ShapeError(
            f"homography_from_corners: src and dst must be (B, 4, 2), got {src.shape} and "
            f"{dst.shape}"
        )
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows_u = np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    A = np.concatenate([rows_u, rows_v], 1)  # (B, 8, 8)
    b = np.concatenate([u, v], 1)
    h = np.linalg.solve(A, b[..., None])[..., 0]
    return np.concatenate([h, np.ones_like(h[:, :1])], 1).reshape(-1, 3, 3)


def _convex(quad: np.ndarray) -> bool:
    """Whether the quadrilateral ``(4, 2)`` (in order) is convex and not self-intersecting."""
    d = np.roll(quad, -1, 0) - quad
    cross = d[:, 0] * np.roll(d, -1, 0)[:, 1] - d[:, 1] * np.roll(d, -1, 0)[:, 0]
    return bool(np.all(cross > 0) or np.all(cross < 0))


def sample_homography(
    width: float, height: float, cfg: PairConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random homography of a ``width x height`` image: rotation about the centre, scale,
    then independent corner displacements (see :class:`PairConfig`); redrawn (rarely) until
    the corners stay a convex quadrilateral.

    Returns:
        ``H`` ``(3, 3)`` float64 with ``H[2, 2] = 1``, the corners ``(4, 2)`` of the image
        (``(0, 0), (w, 0), (w, h), (0, h)``) and where ``H`` maps them ``(4, 2)``.
    """
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    centre = src.mean(0)
    for _ in range(100):
        angle = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        s = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
        rot = s * np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        shift = rng.uniform(-cfg.max_shift, cfg.max_shift, (4, 2)) * [width, height]
        dst = centre + (src - centre) @ rot.T + shift
        if _convex(dst):
            return homography_from_corners(src, dst), src, dst
    raise ConfigError(  # only for extreme options (max_shift close to 0.5)
        f"data.pair: no convex corner quadrilateral in 100 draws (max_shift {cfg.max_shift})"
    )


def photometric(image: np.ndarray, cfg: PairConfig, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness, gamma and Gaussian noise (see :class:`PairConfig`) on a uint8
    image; returns uint8."""
    y = image.astype(np.float32) / 255.0
    a = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    b = rng.uniform(-cfg.brightness, cfg.brightness)
    g = math.exp(rng.uniform(-math.log(cfg.gamma), math.log(cfg.gamma)))
    sigma = rng.uniform(0, cfg.noise)
    y = np.clip(a * (y - 0.5) + 0.5 + b, 0.0, 1.0) ** g
    y = y + sigma * rng.standard_normal(y.shape).astype(np.float32)
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


def render_pair(
    photo: np.ndarray, cfg: PairConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image 1, image 2 (grey uint8, the same size) and ``H`` (image 1 -> image 2 pixels) from
    a grey uint8 photograph ``(H, W)``.

    The photograph is resized (area interpolation, never up) so that the crop of ``1 - 2
    margin`` of it has a long side of ``image_size``; image 1 is that crop at a random offset
    ``o``, image 2 is ``warpPerspective(photo, H @ translate(-o))``.
    """
    cv2 = opencv()
    if photo.ndim != 2 or photo.dtype != np.uint8:
        raise ShapeError(
            f"render_pair: a grey uint8 (H, W) photo expected, got {photo.shape} {photo.dtype}"
        )
    keep = 1 - 2 * cfg.margin
    s = min(1.0, cfg.image_size / (keep * max(photo.shape)))
    if s < 1:
        size = (max(round(photo.shape[1] * s), 1), max(round(photo.shape[0] * s), 1))
        photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    h, w = photo.shape
    cw, ch = max(round(w * keep), 8), max(round(h * keep), 8)
    ox = int(rng.integers(0, w - cw + 1))
    oy = int(rng.integers(0, h - ch + 1))
    image1 = np.ascontiguousarray(photo[oy : oy + ch, ox : ox + cw])
    H, _, _ = sample_homography(cw, ch, cfg, rng)
    shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]])
    image2 = cv2.warpPerspective(
        photo, H @ shift, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return image1, photometric(image2, cfg, rng), H
