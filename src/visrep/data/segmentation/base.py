"""What every semantic-segmentation source shares: the (image, label map) dataset, per-sample
joint augmentation, class sets, SegNet's median-frequency class weights and the data module base.

A sample is ``{"image": Image float (C, H, W) in [0, 1], "mask": Mask int64 (H, W)}``; mask
values are class ids in ``[0, num_classes)`` or ``ignore_index``.

Batch shapes: training samples are cropped to ``crop_size`` (padded with ``ignore_index`` where
the crop passes the border), so every training batch stacks. Evaluation samples keep their full
size: they stack when a data set's images share one size (CamVid, ISBI, DAVIS); where sizes vary
(VOC) use ``--data.loader.eval_batch_size 1``, otherwise :func:`~visrep.data.samples.collate`
returns lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule
from visrep.data.datasets import _PIL_ERRORS, _image_error
from visrep.data.samples import IMAGE, MASK
from visrep.errors import ConfigError, DataError

Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSet:
    """Named classes of a labelling scheme and their display colours (one ``(R, G, B)`` each)."""

    names: tuple[str, ...]
    colors: tuple[Color, ...]


def voc_colormap(n: int) -> tuple[Color, ...]:
    """PASCAL VOC's colour map: the bits of the class id spread over R, G and B from the top.

    >>> voc_colormap(3)
    ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    """
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


def resolve_classes(
    class_names: list[str] | tuple[str, ...] | None,
    num_classes: int | None,
    class_colors: list[Color] | tuple[Color, ...] | None,
    default: ClassSet | None = None,
) -> ClassSet:
    """The classes of a data module from its options (names > ``default`` > ``class_0..``).

    Raises:
        ConfigError: neither names nor a count, or counts and names that disagree.
    """
    if class_names is not None:
        names, colors = tuple(class_names), ()
    elif default is not None:
        names, colors = default.names, default.colors
    elif num_classes is not None:
        names, colors = tuple(f"class_{i}" for i in range(num_classes)), ()
    else:
        raise ConfigError("give data.class_names or data.num_classes")
    if num_classes is not None and num_classes != len(names):
        raise ConfigError(
            f"data.num_classes is {num_classes} but data.class_names lists {len(names)} names"
        )
    if len(names) < 1:
        raise ConfigError("data.class_names must name at least one class")
    if class_colors is not None:
        colors = tuple(tuple(int(v) for v in c) for c in class_colors)
        if len(colors) != len(names) or any(len(c) != 3 for c in colors):
            raise ConfigError(
                f"data.class_colors must give one (R, G, B) per class ({len(names)}), "
                f"got {list(class_colors)}"
            )
    return ClassSet(names, colors or voc_colormap(len(names)))


@dataclass(frozen=True)
class SegAugment:
    """Per-sample training augmentation of an (image, mask) pair (``--data.augment.hflip true``).

    Applied in order: random scale, random crop to the module's ``crop_size`` (padding the image
    with 0 and the mask with ``ignore_index``), horizontal flip, colour jitter (image only).
    Geometry moves the mask with the image (nearest-neighbour for masks). torchvision's v2
    transforms draw from torch's global generator: in the main process that is seeded by
    ``seed_everything``, in a loader worker torch seeds it per worker from the loader's seeded
    generator, so runs repeat.

    Attributes:
        scale: ``(low, high)`` range of the random rescale factor; ``(1, 1)`` is off.
        hflip: flip left-right with probability 1/2.
        brightness, contrast, saturation: colour-jitter strengths (0 is off), as
            ``torchvision.transforms.v2.ColorJitter`` takes them.
    """

    scale: tuple[float, float] = (1.0, 1.0)
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(
                f"data.augment.scale must be (low, high) with 0 < low <= high, got {self.scale}"
            )
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.augment.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def rescales(self) -> bool:
        return tuple(self.scale) != (1.0, 1.0)


class RandomScale(v2.Transform):
    """Resize an (image, mask) sample by one factor drawn uniformly from ``[low, high]``
    (bilinear with antialiasing for images, nearest for masks, as v2 dispatches them)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        s = self.low + (self.high - self.low) * float(torch.rand(()))
        h, w = v2.functional.get_size(_image_of(sample))
        size = [max(1, round(h * s)), max(1, round(w * s))]
        return v2.Resize(size, antialias=True)(sample)


def _image_of(sample: Any) -> tv_tensors.Image:
    return sample[IMAGE] if isinstance(sample, dict) else sample[0]


def train_transform(
    augment: SegAugment, crop_size: tuple[int, int] | None, ignore_index: int
) -> v2.Compose | None:
    """The training transform of an (image, mask) sample dict, or None when it does nothing."""
    steps: list[v2.Transform] = []
    if augment.rescales:
        steps.append(RandomScale(*augment.scale))
    if crop_size is not None:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.brightness or augment.contrast or augment.saturation:
        steps.append(v2.ColorJitter(augment.brightness, augment.contrast, augment.saturation))
    return v2.Compose(steps) if steps else None


def read_rgb_or_grey(path: str | Callable[[], Image.Image], channels: int) -> np.ndarray:
    """An image file (or a callable opening one, e.g. an image embedded in a JSON) as uint8
    ``(H, W, channels)``."""
    try:
        with path() if callable(path) else Image.open(path) as im:
            arr = np.array(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except _PIL_ERRORS as e:
        raise _image_error(path, e) from e
    return arr[..., None] if arr.ndim == 2 else arr


def read_label(path: str | Callable[[], np.ndarray], threshold: int | None = None) -> np.ndarray:
    """A label map as ``(H, W)`` integers: grey values or palette indices ("P" mode) as they are,
    or ``value > threshold`` as 0/1 when ``threshold`` is given. A callable label source (an
    annotation rasterised on demand, :mod:`.polygons`) returns the map itself."""
    if callable(path):
        arr = np.asarray(path())
        return (arr > threshold).astype(np.uint8) if threshold is not None else arr
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "1", "I", "I;16") and threshold is None:
                raise DataError(
                    f"label map {path!r} has mode {im.mode}; expected one channel of class ids "
                    "(grey 'L' or palette 'P')"
                )
            if threshold is not None and im.mode not in ("L", "P", "1", "I", "I;16"):
                im = im.convert("L")
            arr = np.array(im)
    except _PIL_ERRORS as e:
        raise _image_error(path, e) from e
    if threshold is not None:
        return (arr > threshold).astype(np.uint8)
    return arr


def check_label(
    label: np.ndarray, image_hw: tuple[int, int], num_classes: int, ignore_index: int, path: str
) -> None:
    """Refuse a label map whose size differs from its image or whose values are not class ids
    in ``[0, num_classes)`` or ``ignore_index`` (one vectorised pass)."""
    if label.shape[:2] != tuple(image_hw):
        raise DataError(
            f"label map {path!r} is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
            f"{image_hw[1]}x{image_hw[0]}"
        )
    bad = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if bad.any():
        values = np.unique(label[bad])[:5].tolist()
        raise DataError(
            f"label map {path!r} holds values {values}; expected class ids in "
            f"[0, {num_classes}) or the ignore index {ignore_index}"
        )


class SegmentationDataset(Dataset):
    """(image, label map) file pairs as ``{"image": Image, "mask": Mask}`` samples.

    Args:
        images, labels: paired files (same length, same order), or callables returning the
            opened image / the label map (see :func:`read_rgb_or_grey`, :func:`read_label`).
        channels: 1 (grey) or 3 (RGB); images are converted.
        num_classes, ignore_index: the valid label values (checked whenever a label is read).
        threshold: binarise label maps as ``value > threshold`` (mask sources); None reads
            class ids.
        cache: decode every pair once into memory (uint8) instead of reading files each access.
        transform: a v2 transform of the sample dict (None: the sample as stored).
    """

    def __init__(
        self,
        images: Sequence[str | Callable[[], Image.Image]],
        labels: Sequence[str | Callable[[], np.ndarray]],
        channels: int,
        num_classes: int,
        ignore_index: int,
        threshold: int | None = None,
        cache: bool = False,
        transform: v2.Transform | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} label maps")
        self.images, self.labels = list(images), list(labels)
        self.channels, self.num_classes, self.ignore_index = channels, num_classes, ignore_index
        self.threshold = threshold
        self.transform = transform
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            self._cache = [self._read(i) for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.images)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb_or_grey(self.images[i], self.channels)
        label = read_label(self.labels[i], self.threshold)
        check_label(label, image.shape[:2], self.num_classes, self.ignore_index, self.labels[i])
        small = label.min(initial=0) >= 0 and label.max(initial=0) < 256
        return image, label.astype(np.uint8 if small else np.int64)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(H, W, C)`` uint8 and label map ``(H, W)`` of pair ``i`` (checked, as stored)."""
        return self._cache[i] if self._cache is not None else self._read(i)

    def with_transform(self, transform: v2.Transform | None) -> SegmentationDataset:
        """The same pairs (sharing the cache) with another transform."""
        out = object.__new__(SegmentationDataset)
        out.__dict__.update(self.__dict__)
        out.transform = transform
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label = self.raw(i)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
        sample = {
            IMAGE: tv_tensors.Image(x),
            MASK: tv_tensors.Mask(torch.from_numpy(label.astype(np.int64))),
        }
        return self.transform(sample) if self.transform is not None else sample


def median_frequency_weights(pixels: np.ndarray, present_pixels: np.ndarray) -> np.ndarray:
    """SegNet's median-frequency balancing (Eigen & Fergus 2015; Badrinarayanan et al. 2017).

    ``w_c = median_f / f_c`` with ``f_c = pixels[c] / present_pixels[c]``: the pixels of class
    ``c`` over the (non-ignored) pixels of the images in which ``c`` is present, and ``median_f``
    the median of ``f`` over the classes that occur. A class that never occurs gets weight 0.

    >>> median_frequency_weights(np.array([30, 10, 0]), np.array([40, 20, 0])).round(3).tolist()
    [0.833, 1.25, 0.0]
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    present_pixels = np.asarray(present_pixels, dtype=np.float64)
    seen = pixels > 0
    if not seen.any():
        return np.zeros_like(pixels)
    f = np.zeros_like(pixels)
    f[seen] = pixels[seen] / present_pixels[seen]
    w = np.zeros_like(pixels)
    w[seen] = np.median(f[seen]) / f[seen]
    return w


def _base_and_indices(ds: Dataset) -> tuple[SegmentationDataset, list[int]]:
    if isinstance(ds, Subset):
        return ds.dataset, list(ds.indices)
    return ds, list(range(len(ds)))


class SegmentationDataModule(SplitDataModule):
    """Seeded splits of a semantic-segmentation source (see
    :class:`~visrep.data.base.SplitDataModule`; no stratification: samples have no one class).

    Subclasses implement :meth:`load`, returning :class:`SegmentationDataset` splits without a
    transform; training samples then get :func:`train_transform`, val/test ones none. Once the
    splits exist one pass over the training pairs gives the channel mean/std and the class
    pixel counts behind :attr:`class_weights`. ``spec().image_size`` is the training crop (the
    first training image's size without one).

    Args:
        classes: the class names and colours.
        ignore_index: the mask value that counts in no loss or metric.
        crop_size: training crop ``(H, W)`` (int: square); None trains on whole images (they
            must then share one size, and ``augment.scale`` must stay off).
        augment: per-sample training augmentation.
        cache: decode every pair once into memory.
        loader, split: batches and splits.
    """

    def __init__(
        self,
        classes: ClassSet,
        ignore_index: int = 255,
        crop_size: int | tuple[int, int] | None = None,
        augment: SegAugment | None = None,
        cache: bool = False,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        self.classes = classes
        self.ignore_index = int(ignore_index)
        if 0 <= self.ignore_index < len(classes.names):
            raise ConfigError(
                f"data.ignore_index {ignore_index} is a class id (there are "
                f"{len(classes.names)} classes); use a value outside [0, {len(classes.names)})"
            )
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if crop_size is not None and (len(crop_size) != 2 or min(crop_size) < 1):
            raise ConfigError(f"data.crop_size must be a positive int or (H, W), got {crop_size}")
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.augment = augment or SegAugment()
        if self.augment.rescales and self.crop_size is None:
            raise ConfigError(
                "data.augment.scale changes image sizes: set data.crop_size so batches stack"
            )
        self.cache = cache
        self.mean: list[float] = []
        self.std: list[float] = []
        self.image_shape: tuple[int, int, int] = (0, 0, 0)
        self.class_pixels = np.zeros(len(classes.names), dtype=np.int64)
        self.class_weights: list[float] = []

    def pairs(
        self,
        images: Sequence[str | Callable[[], Image.Image]],
        labels: Sequence[str | Callable[[], np.ndarray]],
        channels: int,
        threshold: int | None = None,
    ) -> SegmentationDataset:
        """A split of this module's sources (its classes, ignore index and cache)."""
        return SegmentationDataset(
            images,
            labels,
            channels,
            len(self.classes.names),
            self.ignore_index,
            threshold,
            self.cache,
        )

    def on_splits_ready(self) -> None:
        base, indices = _base_and_indices(self.train_set)
        k = len(self.classes.names)
        s = s2 = None
        n = 0
        pixels = np.zeros(k, dtype=np.int64)
        present = np.zeros(k, dtype=np.int64)
        for i in indices:
            image, label = base.raw(i)
            flat = image.reshape(-1, image.shape[-1]).astype(np.float64) / 255
            s = flat.sum(0) if s is None else s + flat.sum(0)
            s2 = (flat**2).sum(0) if s2 is None else s2 + (flat**2).sum(0)
            n += flat.shape[0]
            lab = label.ravel()
            counts = np.bincount(lab[lab != self.ignore_index], minlength=k)
            pixels += counts
            present += (counts > 0) * counts.sum()
        mean = s / n
        self.mean = mean.tolist()
        self.std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12)).tolist()
        first = base.raw(indices[0])[0]
        self.image_shape = (first.shape[2], *(self.crop_size or first.shape[:2]))
        self.class_pixels = pixels
        self.class_weights = median_frequency_weights(pixels, present).tolist()
        t = train_transform(self.augment, self.crop_size, self.ignore_index)
        self.train_set = Subset(base.with_transform(t), indices)

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="segmentation",
            keys=(IMAGE, MASK),
            in_chans=self.image_shape[0],
            image_size=tuple(self.image_shape[1:]),
            num_classes=len(self.classes.names),
            class_names=tuple(self.classes.names),
            mean=tuple(self.mean),
            std=tuple(self.std),
            ignore_index=self.ignore_index,
            class_colors=tuple(self.classes.colors),
            class_weights=tuple(self.class_weights),
        )


def list_files(folder: Path, exts: tuple[str, ...]) -> dict[str, str]:
    """``stem -> path`` of the files in ``folder`` with one of ``exts`` (lower case), sorted."""
    if not folder.is_dir():
        raise DataError(f"folder {str(folder)!r} does not exist")
    files = {
        f.stem: str(f)
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in exts and not f.name.startswith(".")
    }
    if not files:
        raise DataError(f"folder {str(folder)!r} holds no {'/'.join(exts)} files")
    return files


def pair_by_stem(
    images: dict[str, str], labels: dict[str, str], image_dir: Path, label_dir: Path
) -> tuple[list[str], list[str]]:
    """Image and label files paired by stem; a stem on one side only is an error."""
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(
            f"image {images[missing[0]]!r} has no label map {missing[0]}.* in {str(label_dir)!r}"
            + (f" ({len(missing)} images without labels)" if len(missing) > 1 else "")
        )
    extra = sorted(set(labels) - set(images))
    if extra:
        raise DataError(
            f"label map {labels[extra[0]]!r} has no image {extra[0]}.* in {str(image_dir)!r}"
            + (f" ({len(extra)} labels without images)" if len(extra) > 1 else "")
        )
    stems = sorted(images)
    return [images[s] for s in stems], [labels[s] for s in stems]
