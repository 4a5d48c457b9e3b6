"""Rectified stereo pairs on disk: the folder layouts, image and disparity readers, resizing.

Layouts (found per ``root`` folder, in this order):

* **Middlebury 2014 scenes**: ``root`` itself or its sub-folders holding ``im0.*`` (left) and
  ``im1.*`` (right), with ``disp0.pfm`` (or ``disp0GT.pfm``) the left view's disparity when
  known;
* **left/right folders**: ``root/left/NAME.*``, ``root/right/NAME.*`` and optionally
  ``root/disp/NAME.*``, matched by file stem (KITTI-style sets renamed, any generic set);
* **flat pairs**: ``NAME_left.*`` + ``NAME_right.*`` (+ ``NAME_disp.*``), as scikit-image's
  Middlebury Motorcycle (``motorcycle_left.png``, ``motorcycle_disp.npz``), or ``NAMEL.*`` +
  ``NAMER.*`` (+ ``NAMEGT.*``), as OpenCV's samples (``aloeL.jpg``, ``aloeGT.png``).

Disparities are the left view's, in pixels of the file's resolution: ``.pfm`` (``inf`` =
unknown), ``.npy`` / ``.npz`` (the first array; ``inf`` or NaN = unknown), or 8/16-bit ``.png``
holding ``disparity * disparity_scale`` with 0 = unknown (Middlebury 2006 full size and
OpenCV's ``aloeGT.png``: scale 1; KITTI: 256). Unknown pixels are ``inf`` once read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from visrep.data.stereo.pfm import read_pfm
from visrep.errors import DataError

__all__ = [
    "StereoPair",
    "read_disparity",
    "read_view",
    "resize_disparity",
    "scan_stereo",
]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")
DISPARITY_EXTS = (".pfm", ".npy", ".npz", ".png")
_FLAT = (("_left", "_right", ("_disp", "_gt")), ("L", "R", ("GT",)))


@dataclass(frozen=True)
class StereoPair:
    """One rectified pair: its name, the left and right image files, the left disparity file."""

    name: str
    left: str
    right: str
    disparity: str | None = None


def _by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)
    return {p.stem: p for p in files}


def _middlebury(root: Path) -> list[StereoPair]:
    scenes = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    pairs = []
    for d in scenes:
        files = _by_stem(d, (*IMAGE_EXTS, ".pfm"))
        if "im0" in files and "im1" in files:
            disp = next((files[k] for k in ("disp0", "disp0GT") if k in files), None)
            name = d.name if d != root else root.name
            pairs.append(StereoPair(name, str(files["im0"]), str(files["im1"]), _opt(disp)))
    return pairs


def _opt(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _folders(root: Path) -> list[StereoPair]:
    if not ((root / "left").is_dir() and (root / "right").is_dir()):
        return []
    lefts, rights = _by_stem(root / "left", IMAGE_EXTS), _by_stem(root / "right", IMAGE_EXTS)
    disps = _by_stem(root / "disp", DISPARITY_EXTS) if (root / "disp").is_dir() else {}
    alone = sorted(set(lefts) ^ set(rights))
    if alone:
        raise DataError(
            f"{str(root)!r}: left/ and right/ must hold the same file stems; unmatched: "
            f"{', '.join(alone[:4])}{' ...' if len(alone) > 4 else ''}"
        )
    return [StereoPair(s, str(lefts[s]), str(rights[s]), _opt(disps.get(s))) for s in sorted(lefts)]


def _flat(root: Path) -> list[StereoPair]:
    images = _by_stem(root, IMAGE_EXTS)
    disps = _by_stem(root, DISPARITY_EXTS)
    pairs = []
    for stem in images:
        for left_sfx, right_sfx, disp_sfxs in _FLAT:
            if not stem.endswith(left_sfx) or len(stem) == len(left_sfx):
                continue
            name = stem[: -len(left_sfx)]
            if name + right_sfx not in images:
                continue
            disp = next((disps[name + s] for s in disp_sfxs if name + s in disps), None)
            pairs.append(StereoPair(name, str(images[stem]), str(images[name + right_sfx]),
                                    _opt(disp)))  # fmt: skip
    return pairs


def scan_stereo(root: str | Path) -> list[StereoPair]:
    """The rectified pairs under ``root`` in the first layout that has any (module docstring).

    Raises:
        DataError: ``root`` is missing or holds no pair in any layout.
    """
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"stereo data folder {str(root)!r} does not exist")
    for scan in (_middlebury, _folders, _flat):
        pairs = scan(path)
        if pairs:
            return pairs
    raise DataError(
        f"no rectified stereo pairs in {str(root)!r}: expected Middlebury scene folders "
        "(im0.png, im1.png, disp0.pfm), left/ right/ [disp/] folders, or NAME_left / NAME_right "
        "(NAMEL / NAMER) files"
    )


def read_view(path: str, channels: int = 3) -> Tensor:
    """An image file as float32 ``(channels, H, W)`` in [0, 1] (grey or RGB)."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read stereo image {path!r}: {e}") from e
    t = torch.from_numpy(a / 255.0)
    return t.permute(2, 0, 1).contiguous() if t.dim() == 3 else t[None]


def read_disparity(path: str, png_scale: float = 1.0) -> Tensor:
    """A disparity file as float32 ``(1, H, W)`` pixels, unknown pixels ``inf`` (module docstring)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".pfm":
            a = read_pfm(path)
        elif suffix == ".npy":
            a = np.load(path)
        elif suffix == ".npz":
            with np.load(path) as z:
                if not z.files:
                    raise DataError(f"disparity file {path!r} holds no array")
                a = z[z.files[0]]
        elif suffix == ".png":
            with Image.open(path) as im:
                raw = np.asarray(im)
            if raw.ndim != 2:
                raise DataError(f"disparity PNG {path!r} has {raw.shape[2]} channels, expected 1")
            a = np.where(raw > 0, raw.astype(np.float32) / png_scale, np.inf)
        else:
            raise DataError(
                f"disparity file {path!r}: unknown format {suffix!r}, expected "
                f"{', '.join(DISPARITY_EXTS)}"
            )
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read disparity file {path!r}: {e}") from e
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 3:  # a 3-channel PFM: the first channel
        a = a[..., 0]
    if a.ndim != 2:
        raise DataError(f"disparity file {path!r} holds shape {a.shape}, expected (H, W)")
    a = np.where(np.isnan(a), np.inf, a)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def resize_disparity(disparity: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resampling of pixel disparities to ``size``, values scaled by ``W_new / W_old``.

    Nearest (not bilinear) so that unknown (``inf``) pixels stay unknown instead of spreading.

    Shape: ``(..., H, W) -> (..., size[0], size[1])``.

    >>> resize_disparity(torch.tensor([[[2.0, 4.0], [6.0, float("inf")]]]), (4, 4))[0, 3]
    tensor([12., 12., inf, inf])
    """
    if tuple(disparity.shape[-2:]) == tuple(size):
        return disparity
    lead = disparity.shape[:-2]
    x = disparity.reshape(-1, 1, *disparity.shape[-2:])
    out = F.interpolate(x, size=tuple(size), mode="nearest-exact") * (size[1] / x.shape[-1])
    return out.reshape(*lead, *size)
