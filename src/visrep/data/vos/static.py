"""Episodes without video: one image and its object mask deformed into a short "sequence" by a
random walk of affine transforms (MaskTrack, Perazzi et al. 2017, and OSMN, Yang et al. 2018,
pre-train on static images so: the object moves, turns and changes scale a little from frame to
frame, as in a video).

:func:`deform_episode` is the functional core; :class:`StaticEpisodes` wraps any segmentation
data set (samples with ``image`` and ``mask``: every visrep segmentation DataModule's) and picks
one object class present in each image as the episode's object.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from visrep.data.samples import IMAGE, MASK, META, OBJECT_MASKS, VIDEO
from visrep.errors import ConfigError, DataError, ShapeError

__all__ = ["StaticEpisodes", "deform_episode"]


def deform_episode(
    image: Tensor,
    mask: Tensor,
    frames: int,
    size: tuple[int, int],
    generator: torch.Generator,
    rotate: float = 5.0,
    scale: float = 0.05,
    shift: float = 0.04,
) -> tuple[Tensor, Tensor]:
    """``frames`` views of one image and mask under a random walk of affine transforms: each
    step adds a rotation in ``[-rotate, rotate]`` degrees, a log-scale in ``[-scale, scale]``
    and a shift in ``[-shift, shift]`` of the image's side, so consecutive frames differ as
    consecutive video frames do. Frame 0 is the image itself. Image bilinear, mask nearest;
    both resized to ``size``.

    Shape: ``image (3, H, W)`` in [0, 1], ``mask (H, W)`` -> ``(K, 3, h, w)``, ``(K, h, w)``
    int64.
    """
    if image.dim() != 3 or mask.shape != image.shape[-2:]:
        raise ShapeError(
            f"deform_episode: image (3, H, W) and mask (H, W) expected, got {tuple(image.shape)} "
            f"and {tuple(mask.shape)}"
        )
    if frames < 1:
        raise ConfigError(f"deform_episode: frames must be >= 1, got {frames}")
    h, w = image.shape[-2:]
    steps = (torch.rand(frames - 1, 4, generator=generator, dtype=torch.float64) * 2 - 1).cumsum(0)
    imgs, masks = [image], [mask]
    fill = image.mean((1, 2)).tolist()  # the mean colour where the image leaves the frame
    for a, s, dx, dy in steps.tolist():
        args = {
            "angle": a * rotate,
            "translate": [dx * shift * w, dy * shift * h],
            "scale": float(torch.tensor(s * scale).exp()),
            "shear": [0.0, 0.0],
        }
        imgs.append(TF.affine(image, interpolation=InterpolationMode.BILINEAR, fill=fill, **args))
        masks.append(
            TF.affine(mask[None], interpolation=InterpolationMode.NEAREST, fill=[0], **args)[0]
        )
    video = F.interpolate(torch.stack(imgs), size=size, mode="bilinear", antialias=True)
    m = F.interpolate(torch.stack(masks)[:, None].float(), size=size, mode="nearest-exact")[:, 0]
    return video.clamp(0, 1), m.long()


class StaticEpisodes(Dataset):
    """Episodes from a segmentation data set (see the module docstring): ``{"video": (K, 3, h,
    w), "object_masks": (K, h, w) in {0, 1}, "meta": {"index", "class"}}``.

    Args:
        dataset: samples with ``image`` ``(3, H, W)`` in [0, 1] and ``mask`` ``(H, W)`` class ids.
        length: episodes per epoch (image ``i % len(dataset)``, drawn anew each time).
        frames: ``K``.
        size: ``(h, w)``.
        background, ignore_index: class ids that are never the object.
        rotate, scale, shift: the per-step random walk (:func:`deform_episode`).
    """

    def __init__(
        self,
        dataset: Dataset,
        length: int,
        frames: int,
        size: tuple[int, int],
        background: int = 0,
        ignore_index: int | None = 255,
        rotate: float = 5.0,
        scale: float = 0.05,
        shift: float = 0.04,
    ) -> None:
        if len(dataset) == 0:
            raise DataError("StaticEpisodes: the segmentation data set is empty")
        self.dataset, self.length, self.frames, self.size = dataset, length, frames, size
        self.excluded = {background} | ({ignore_index} if ignore_index is not None else set())
        self.walk = (rotate, scale, shift)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))) + index)
        i = index % len(self.dataset)
        sample = self.dataset[i]
        image, mask = torch.as_tensor(sample[IMAGE]).float(), torch.as_tensor(sample[MASK]).long()
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        classes = [int(c) for c in mask.unique().tolist() if int(c) not in self.excluded]
        cls = classes[int(torch.randint(len(classes), (1,), generator=g))] if classes else -1
        video, masks = deform_episode(
            image.as_subclass(Tensor), (mask == cls).long(), self.frames, self.size, g, *self.walk
        )
        return {VIDEO: video, OBJECT_MASKS: masks, META: {"index": i, "class": cls}}
