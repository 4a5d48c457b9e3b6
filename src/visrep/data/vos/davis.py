"""Semi-supervised video object segmentation data: DAVIS sequences, training episodes, and
whole sequences for evaluation (Perazzi et al. 2016, DAVIS-2016; Pont-Tuset et al. 2017,
DAVIS-2017; seed 000, "ReConvNet").

Layout: ``ROOT/JPEGImages/<resolution>/<seq>/NNNNN.jpg`` and ``ROOT/Annotations/<resolution>/
<seq>/NNNNN.png``. DAVIS-2016 masks are grey ``{0, 255}`` (one object); DAVIS-2017 masks are
palette PNGs whose indices are object ids (0 background), several objects per sequence
(:func:`read_object_mask`). A folder holding frames and masks directly (``ROOT/JPEGImages/*.jpg``
and ``ROOT/<annotations>/*.png``, e.g. a labelme VOC export's ``SegmentationClassPNG``) is one
sequence named after ``ROOT``.

Each video is a task (seed 000: ``D_train`` the first frame and its mask, ``D_test`` the next
frames). Training samples are EPISODES: one object of a training sequence, a random first frame
and the ``episode_frames - 1`` frames after it (with a random stride), resized to the model's
size, the same random flip and crop on every frame. Evaluation samples are WHOLE sequences: the
frames at the model's size and every object's masks at the annotation's full resolution (where
J and F are computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.datasets import load_image
from visrep.data.samples import IMAGE, MASK, META, OBJECT_MASKS, VIDEO
from visrep.data.segmentation.base import list_files, pair_by_stem, read_label
from visrep.data.vos.static import StaticEpisodes
from visrep.errors import ConfigError, DataError

__all__ = [
    "OBJECT_MASKS",
    "DavisVosDataModule",
    "VosEpisodes",
    "VosFrames",
    "VosSequence",
    "VosSequences",
    "find_vos_sequences",
    "read_object_mask",
]

_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def read_object_mask(path: str | Path) -> np.ndarray:
    """An annotation as ``(H, W)`` uint8 object ids, 0 background: palette indices (DAVIS-2017)
    or grey ids as they are, and grey ``{0, 255}`` masks (DAVIS-2016) as ``{0, 1}``."""
    m = np.asarray(read_label(str(path)))
    if m.ndim != 2:
        raise DataError(f"annotation {str(path)!r} is not a single-channel mask: {m.shape}")
    values = np.unique(m)
    if values.max(initial=0) == 255 and set(values.tolist()) <= {0, 255}:
        return (m > 127).astype(np.uint8)
    if values.max(initial=0) > 254:
        raise DataError(f"annotation {str(path)!r}: object ids must be < 255, got {values.max()}")
    return m.astype(np.uint8)


@dataclass(frozen=True)
class VosSequence:
    """One video: its name, frame files and annotation files (one per frame, same order)."""

    name: str
    frames: tuple[str, ...]
    masks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frames)


def find_vos_sequences(
    root: str | Path, resolution: str = "480p", annotations: str = "Annotations"
) -> dict[str, VosSequence]:
    """``name -> VosSequence`` of a DAVIS-style root (see the module docstring)."""
    root = Path(root)
    frames_dir = root / "JPEGImages" / resolution if resolution else root / "JPEGImages"
    masks_dir = root / annotations / resolution if resolution else root / annotations
    for d in (frames_dir, masks_dir):
        if not d.is_dir():
            raise DataError(f"VOS folder {str(d)!r} does not exist (data.root {str(root)!r})")
    subdirs = sorted(d.name for d in frames_dir.iterdir() if d.is_dir())
    layout = {s: (frames_dir / s, masks_dir / s) for s in subdirs} or {
        root.name: (frames_dir, masks_dir)
    }
    out = {}
    for name, (fd, md) in layout.items():
        frames, masks = pair_by_stem(list_files(fd, _IMAGE_EXTS), list_files(md, (".png",)), fd, md)
        if len(frames) < 2:
            raise DataError(f"VOS sequence {str(fd)!r} has {len(frames)} frame; need >= 2")
        out[name] = VosSequence(name, tuple(frames), tuple(masks))
    return out


def _resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``(T, H, W)`` integer masks."""
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()


class VosEpisodes(Dataset):
    """Training episodes (see the module docstring): ``{"video": (K, 3, h, w) float in [0, 1],
    "object_masks": (K, h, w) int64 in {0, 1}, "meta": {...}}``, frame 0 the annotated one.

    Args:
        sequences: the training videos.
        length: episodes per epoch.
        frames: ``K``, frames per episode (the first and ``K - 1`` to segment).
        size: ``(h, w)`` the model reads.
        max_stride: the gap between consecutive episode frames is drawn in ``[1, max_stride]``.
        flip, min_crop: random horizontal flip, and a random crop of at least ``min_crop`` of
            each side before resizing (1: none), the same on every frame of the episode.
    """

    def __init__(
        self,
        sequences: list[VosSequence],
        length: int,
        frames: int,
        size: tuple[int, int],
        max_stride: int = 3,
        flip: bool = True,
        min_crop: float = 0.8,
    ) -> None:
        if not sequences:
            raise ConfigError("VOS episodes need at least one training sequence")
        short = [s.name for s in sequences if len(s) < frames]
        if short:
            raise ConfigError(
                f"data.episode_frames {frames} is longer than sequences {short}; lower it"
            )
        self.sequences, self.length, self.frames, self.size = sequences, length, frames, size
        self.max_stride, self.flip, self.min_crop = max_stride, flip, min_crop
        self._objects: dict[int, list[int]] = {}  # sequence -> ids present in its first frames

    def __len__(self) -> int:
        return self.length

    def _objects_of(self, s: int) -> list[int]:
        if s not in self._objects:
            first = read_object_mask(self.sequences[s].masks[0])
            self._objects[s] = [int(v) for v in np.unique(first) if v > 0]
        return self._objects[s]

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))) + index)
        weights = torch.tensor([float(len(s)) for s in self.sequences])
        s = int(torch.multinomial(weights, 1, generator=g))
        seq = self.sequences[s]
        objects = self._objects_of(s)
        k = self.frames
        stride = int(torch.randint(1, self.max_stride + 1, (1,), generator=g))
        stride = max(1, min(stride, (len(seq) - 1) // max(k - 1, 1)))
        start = int(torch.randint(0, len(seq) - (k - 1) * stride, (1,), generator=g))
        idx = [start + i * stride for i in range(k)]
        masks = torch.from_numpy(np.stack([read_object_mask(seq.masks[i]) for i in idx]))
        present = [o for o in objects if bool((masks[0] == o).any())] or objects
        obj = present[int(torch.randint(len(present), (1,), generator=g))] if present else 1
        video = torch.stack([load_image(seq.frames[i], 3) for i in idx])  # (K, 3, H, W)
        binary = (masks == obj).long()
        video, binary = self._augment(video, binary, g)
        return {
            VIDEO: video,
            OBJECT_MASKS: binary,
            META: {"sequence": seq.name, "frames": idx, "object": obj},
        }

    def _augment(self, video: Tensor, masks: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        h, w = video.shape[-2:]
        if self.min_crop < 1:
            f = self.min_crop + (1 - self.min_crop) * torch.rand(2, generator=g)
            ch, cw = max(1, int(h * float(f[0]))), max(1, int(w * float(f[1])))
            y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            video, masks = (
                video[..., y0 : y0 + ch, x0 : x0 + cw],
                masks[..., y0 : y0 + ch, x0 : x0 + cw],
            )
        if self.flip and bool(torch.rand(1, generator=g) < 0.5):
            video, masks = video.flip(-1), masks.flip(-1)
        video = F.interpolate(video, size=self.size, mode="bilinear", antialias=True)
        return video.clamp(0, 1), _resize_masks(masks, self.size)


class VosSequences(Dataset):
    """Whole sequences for evaluation: ``{"video": (T, 3, h, w), "object_masks": (T, H, W)
    int64 object ids at the annotation's full resolution, "meta": {"sequence", "size"}}``."""

    def __init__(self, sequences: list[VosSequence], size: tuple[int, int]) -> None:
        self.sequences, self.size = sequences, size

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = self.sequences[index]
        masks = torch.from_numpy(np.stack([read_object_mask(p) for p in seq.masks])).long()
        video = torch.stack([load_image(p, 3, self.size) for p in seq.frames])
        return {
            VIDEO: video,
            OBJECT_MASKS: masks,
            META: {"sequence": seq.name, "size": tuple(masks.shape[-2:])},
        }


class VosFrames(Dataset):
    """Every annotated frame of some sequences as a still image: ``{"image": (3, H, W),
    "mask": (H, W) int64 object ids}`` (for :class:`~visrep.data.vos.static.StaticEpisodes`)."""

    def __init__(self, sequences: list[VosSequence]) -> None:
        self.items = [(f, m) for s in sequences for f, m in zip(s.frames, s.masks, strict=True)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frame, mask = self.items[index]
        return {IMAGE: load_image(frame, 3), MASK: torch.from_numpy(read_object_mask(mask)).long()}


class DavisVosDataModule(SplitDataModule):
    """DAVIS (or any DAVIS-style folder) for one-shot video object segmentation: training
    episodes from the training sequences, whole held-out sequences for validation and test
    (family ``vos``; see the module docstring).

    Args:
        root: the folder holding ``JPEGImages/`` and ``Annotations/``.
        resolution: their sub-folder (``480p``; empty for frames directly under them).
        annotations: the annotation folder's name (``Annotations``; a labelme VOC export:
            ``SegmentationClassPNG``).
        train_sequences: the training videos (default: all not held out).
        val_sequences, test_sequences: whole videos held out (leave-sequences-out).
        size: ``(h, w)`` the model reads (J and F are computed at full resolution).
        episode_frames: frames per training episode (the annotated one included).
        episodes_per_epoch: training episodes per epoch.
        max_stride, flip, min_crop: episode sampling and augmentation (:class:`VosEpisodes`).
        static_episodes: more episodes per epoch made from single training frames by random
            affine walks (:class:`~visrep.data.vos.static.StaticEpisodes`, as MaskTrack and
            OSMN pre-train without video); 0: none.
        loader: training batches of episodes (evaluation batches hold one sequence each).
    """

    def __init__(
        self,
        root: str,
        resolution: str = "480p",
        annotations: str = "Annotations",
        train_sequences: list[str] | None = None,
        val_sequences: list[str] | None = None,
        test_sequences: list[str] | None = None,
        size: tuple[int, int] = (120, 216),
        episode_frames: int = 4,
        episodes_per_epoch: int = 400,
        max_stride: int = 3,
        flip: bool = True,
        min_crop: float = 0.8,
        static_episodes: int = 0,
        loader: LoaderConfig | None = None,
    ) -> None:
        loader = loader or LoaderConfig(batch_size=4)
        super().__init__(  # held-out data are whole sequences, never carved from the episodes
            LoaderConfig(loader.batch_size, 1, loader.num_workers),
            SplitConfig(val_fraction=0.0, test_fraction=0.0),
        )
        if episode_frames < 2:
            raise ConfigError(f"data.episode_frames must be >= 2, got {episode_frames}")
        if episodes_per_epoch < 1:
            raise ConfigError(f"data.episodes_per_epoch must be >= 1, got {episodes_per_epoch}")
        if static_episodes < 0:
            raise ConfigError(f"data.static_episodes must be >= 0, got {static_episodes}")
        self.static_episodes = static_episodes
        if max_stride < 1:
            raise ConfigError(f"data.max_stride must be >= 1, got {max_stride}")
        if not 0 < min_crop <= 1:
            raise ConfigError(f"data.min_crop must be in (0, 1], got {min_crop}")
        size = tuple(int(v) for v in size)
        if len(size) != 2 or min(size) < 16:
            raise ConfigError(f"data.size must be (h, w) with both >= 16, got {list(size)}")
        self.root, self.resolution, self.annotations = root, resolution, annotations
        self.names = {
            "train": list(train_sequences) if train_sequences is not None else None,
            "val": list(val_sequences or []),
            "test": list(test_sequences or []),
        }
        both = sorted(set(self.names["val"]) & set(self.names["test"]))
        if both:
            raise ConfigError(f"sequences {both} are in both data.val_sequences and test_sequences")
        self.size = size
        self.episode_args = (episode_frames, episodes_per_epoch, max_stride, flip, min_crop)

    def load(self) -> Splits:
        every = find_vos_sequences(self.root, self.resolution, self.annotations)
        named = self.names["val"] + self.names["test"] + (self.names["train"] or [])
        unknown = sorted(set(named) - set(every))
        if unknown:
            raise DataError(
                f"sequences {unknown} are not in {self.root!r} (it has {', '.join(sorted(every))})"
            )
        if not self.names["test"]:
            raise ConfigError(
                f"data.test_sequences: name the held-out test sequences (of {', '.join(sorted(every))})"
            )
        held = set(self.names["val"]) | set(self.names["test"])
        train = self.names["train"]
        if train is None:
            train = [s for s in sorted(every) if s not in held]
        if set(train) & held:
            raise ConfigError(f"sequences {sorted(set(train) & held)} are in train and held out")
        if not train:
            raise ConfigError("no sequences left for training (data.train_sequences)")
        frames, length, stride, flip, crop = self.episode_args
        episodes = VosEpisodes(
            [every[s] for s in train], length, frames, self.size, stride, flip, crop
        )
        if self.static_episodes:
            still = VosFrames([every[s] for s in train])
            static = StaticEpisodes(still, self.static_episodes, frames, self.size)
            episodes = ConcatDataset([episodes, static])
        self.sequence_names = {"train": train, "val": self.names["val"], "test": self.names["test"]}

        def whole(names: list[str]) -> VosSequences | None:
            return VosSequences([every[s] for s in names], self.size) if names else None

        return Splits(
            episodes, None, ["background", "object"], test=whole(self.names["test"]),
            val=whole(self.names["val"]),
        )  # fmt: skip

    def spec(self) -> DataSpec:
        """What the model needs to know about the data (after :meth:`setup`)."""
        return DataSpec(
            family="vos",
            keys=(VIDEO, OBJECT_MASKS),
            in_chans=3,
            image_size=self.size,
            num_classes=2,
            class_names=("background", "object"),
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        )
