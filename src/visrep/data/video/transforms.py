"""Clip augmentation with ``torchvision.transforms.v2`` on ``tv_tensors.Video``, flow included.

A ``tv_tensors.Video`` ``(T, C, H, W)`` goes through v2 as one tensor, so a random crop or flip
draws its parameters once and moves every frame alike (a per-frame crop would add motion that
is not in the video). C3D's recipe (Tran et al. 2015, sec. 3.2: frames resized to 128 x 171,
random 112 x 112 crops and flips for training, the centre crop for testing) is the default:
the short side is resized to ``image_size * 8 / 7`` first.

Flow fields ride along as :class:`FlowField` with kernels registered for the geometric
functionals: a horizontal flip mirrors the field *and* negates ``dx``, a resize rescales the
vectors by the size ratio, crops cut them like the frames. Transforms that have no flow kernel
here (rotations, affine, perspective, elastic) refuse a ``FlowField`` instead of passing it
through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.tv_tensors import TVTensor

from visrep.errors import ConfigError


class FlowField(TVTensor):
    """Optical flow ``(..., 2, H, W)`` in pixels (``dx``, ``dy``) that v2 geometry transforms move
    consistently with the frames it belongs to."""

    def __new__(cls, data: Any, *, dtype: torch.dtype | None = None) -> FlowField:
        t = torch.as_tensor(data, dtype=dtype)
        if t.ndim < 3 or t.shape[-3] != 2:
            raise ConfigError(f"FlowField expects (..., 2, H, W), got {tuple(t.shape)}")
        return t.as_subclass(cls)


def _plain(x: Tensor) -> Tensor:
    return x.as_subclass(Tensor)


def _wrap(y: Tensor, like: FlowField) -> FlowField:
    return tv_tensors.wrap(y, like=like)


def _scale(y: Tensor, sx: float, sy: float) -> Tensor:
    return y * torch.tensor([sx, sy], dtype=y.dtype, device=y.device).view(2, 1, 1)


@F.register_kernel(F.horizontal_flip, FlowField)
def _hflip_flow(flow: FlowField, **kw: Any) -> FlowField:
    return _wrap(_scale(_plain(flow).flip(-1), -1.0, 1.0), flow)


@F.register_kernel(F.vertical_flip, FlowField)
def _vflip_flow(flow: FlowField, **kw: Any) -> FlowField:
    return _wrap(_scale(_plain(flow).flip(-2), 1.0, -1.0), flow)


@F.register_kernel(F.crop, FlowField)
def _crop_flow(flow: FlowField, top: int, left: int, height: int, width: int) -> FlowField:
    return _wrap(F.crop_image(_plain(flow), top, left, height, width), flow)


@F.register_kernel(F.center_crop, FlowField)
def _center_crop_flow(flow: FlowField, output_size: list[int]) -> FlowField:
    return _wrap(F.center_crop_image(_plain(flow), output_size), flow)


def _resize_field(y: Tensor, size: Sequence[int], antialias: bool | None) -> Tensor:
    h, w = y.shape[-2:]
    out = F.resize_image(y, list(size), v2.InterpolationMode.BILINEAR, antialias=antialias)
    return _scale(out, out.shape[-1] / w, out.shape[-2] / h)


def _resized_hw(h: int, w: int, size: list[int] | None, max_size: int | None) -> list[int]:
    """The output ``[H, W]`` of ``v2.Resize(size, max_size=...)`` (torchvision's rule)."""
    if size is not None and len(size) == 2:
        return [int(size[0]), int(size[1])]
    short, long = (h, w) if h <= w else (w, h)
    new_short = int(size[0]) if size else int(max_size)
    new_long = int(new_short * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return [new_short, new_long] if h <= w else [new_long, new_short]


@F.register_kernel(F.resize, FlowField)
def _resize_flow(
    flow: FlowField,
    size: list[int] | None,
    interpolation: Any = None,
    max_size: int | None = None,
    antialias: bool | None = True,
) -> FlowField:
    h, w = flow.shape[-2:]
    return _wrap(_resize_field(_plain(flow), _resized_hw(h, w, size, max_size), antialias), flow)


@F.register_kernel(F.resized_crop, FlowField)
def _resized_crop_flow(
    flow: FlowField,
    top: int,
    left: int,
    height: int,
    width: int,
    size: list[int],
    interpolation: Any = None,
    antialias: bool | None = True,
) -> FlowField:
    cut = F.crop_image(_plain(flow), top, left, height, width)
    return _wrap(_resize_field(cut, size, antialias), flow)


def _refuse(name: str) -> Any:
    def kernel(flow: FlowField, *args: Any, **kwargs: Any) -> FlowField:
        raise ConfigError(
            f"transform {name} is not supported on optical flow: use resize, crop and flip "
            "transforms with flow=True"
        )

    return kernel


for _fn in (F.rotate, F.affine, F.perspective, F.elastic, F.pad):
    F.register_kernel(_fn, FlowField)(_refuse(_fn.__name__))


def short_side(image_size: tuple[int, int], resize: int | None = None) -> int:
    """The short side frames are resized to before cropping ``image_size`` (C3D: 128 for 112)."""
    if resize is not None:
        if resize < min(image_size):
            raise ConfigError(f"resize {resize} must be >= the crop size {tuple(image_size)}")
        return resize
    return round(min(image_size) * 8 / 7)


def clip_augment(image_size: tuple[int, int], train: bool, flip: bool = True) -> v2.Transform:
    """The crop (random for training, centre otherwise) and, for training, the random flip."""
    size = list(image_size)
    if train:
        steps: list[v2.Transform] = [v2.RandomCrop(size)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)
    return v2.CenterCrop(size)


def video_transform(
    image_size: tuple[int, int] = (112, 112),
    train: bool = False,
    resize: int | None = None,
    flip: bool = True,
) -> v2.Transform:
    """C3D's clip pipeline: short side to ``resize`` (default ``8/7`` of the crop), then
    :func:`clip_augment`. Call it on a ``tv_tensors.Video`` (and a :class:`FlowField`).

    >>> t = video_transform((4, 4), train=True)
    >>> v = t(tv_tensors.Video(torch.rand(3, 3, 8, 10)))
    >>> tuple(v.shape)
    (3, 3, 4, 4)
    """
    return v2.Compose(
        [
            v2.Resize(short_side(image_size, resize), antialias=True),
            clip_augment(image_size, train, flip),
        ]
    )
