"""Video classification from folders of videos or frame folders, decoded on the fly.

Karpathy et al. 2014 and C3D (Tran et al. 2015) train on short clips drawn at random from each
video and test by averaging the class scores of clips spread over the video (seed 004: single
frame, fusion and 3D-convolution video models). A sample here is one clip (training) or ``K``
clips (validation / test with ``K > 1``), decoded from the file when asked: only the frames
of the clip are decoded (PyAV seeking), so a data set is never loaded whole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from visrep.data.base import DataSpec, LoaderConfig, SplitConfig, SplitDataModule, Splits
from visrep.data.samples import FLOW, LABEL, META, VIDEO
from visrep.data.video.clips import clip_indices, clip_span, resample_indices
from visrep.data.video.flow import FlowCache, FlowMethod, check_flow_method, flow_between
from visrep.data.video.io import count_frames, iter_frames, read_frames, to_clip, video_info
from visrep.data.video.lists import (
    read_class_index,
    read_kinetics_csv,
    read_ucf_list,
    recording_groups,
    scan_video_tree,
)
from visrep.data.video.transforms import FlowField, clip_augment, short_side
from visrep.errors import ConfigError, DataError

__all__ = ["ClipSampling", "VideoClipDataset", "VideoFolderDataModule", "grouped_split"]


@dataclass(frozen=True)
class ClipSampling:
    """How a :class:`VideoClipDataset` turns a video into its clip(s).

    Attributes:
        clip_len: frames per clip ``T``.
        stride: frames between a clip's frames (after frame-rate resampling).
        target_fps: resample every video to this rate first (None: keep each file's rate).
        folder_fps: the frame rate of frame folders (needed with ``target_fps``).
        mode: ``"random"``, ``"uniform"`` or ``"dense"`` (see :func:`clip_indices`).
        num_clips: clips per sample ``K`` (``K > 1``: ``video`` is ``(K, T, C, H, W)``).
        image_size: the crop ``(H, W)``.
        resize: the short side before cropping (None: ``8/7`` of the crop, C3D's 128 for 112);
            frames are scaled up further where the crop would not fit.
        train: random crop and flip (else the centre crop).
        flip: random horizontal flips when training.
        flow: also give ``flow`` ``(T - 1, 2, H, W)`` (``(K, T - 1, ...)``).
        flow_method: ``"farneback"`` or ``"tvl1"``.
        cache_dir: keep each video's flow in this folder (:class:`FlowCache`); None computes
            the flow of the clip's frames at every draw.
    """

    clip_len: int = 16
    stride: int = 1
    target_fps: float | None = None
    folder_fps: float | None = None
    mode: Literal["uniform", "random", "dense"] = "random"
    num_clips: int = 1
    image_size: tuple[int, int] = (112, 112)
    resize: int | None = None
    train: bool = True
    flip: bool = True
    flow: bool = False
    flow_method: FlowMethod = "farneback"
    cache_dir: str | None = None


class VideoClipDataset(Dataset):
    """Clips of a list of videos (files or frame folders) with their classes, decoded per item.

    Items: ``{"video": Video (T, C, H, W) | (K, T, C, H, W) float in [0, 1], "label": int,
    "meta": {"file", "start", "starts", "frames"}}`` and, with ``flow``, ``"flow"``
    ``(T - 1, 2, H, W)`` pixels; ``start`` is the first clip's first frame index in the file.
    """

    def __init__(self, entries: list[tuple[Path, int]], sampling: ClipSampling) -> None:
        self.entries = entries
        self.sampling = sampling
        self.short = short_side(sampling.image_size, sampling.resize)
        self.augment = clip_augment(sampling.image_size, sampling.train, sampling.flip)
        self.cache = (
            FlowCache(sampling.cache_dir, sampling.flow_method)
            if sampling.flow and sampling.cache_dir
            else None
        )

    def __len__(self) -> int:
        return len(self.entries)

    def with_sampling(self, **changes: Any) -> VideoClipDataset:
        """The same videos sampled otherwise (e.g. the evaluation clips of a training set)."""
        return VideoClipDataset(self.entries, replace(self.sampling, **changes))

    @property
    def targets(self) -> np.ndarray:
        """The class of each video, int64 ``(N,)``."""
        return np.asarray([c for _, c in self.entries], dtype=np.int64)

    def check_lengths(self) -> None:
        """Refuse, in one error, videos shorter than a clip (else each fails when drawn).

        Raises:
            DataError: naming the first few such videos and how many there are.
        """
        s = self.sampling
        span = clip_span(s.clip_len, s.stride)
        counts = np.asarray([len(self._timeline(src)) for src, _ in self.entries])
        short = np.flatnonzero(counts < span)
        if short.size:
            shown = ", ".join(f"{self.entries[i][0]} ({counts[i]} frames)" for i in short[:3])
            more = f" and {short.size - 3} more" if short.size > 3 else ""
            fps = f" at data.target_fps {s.target_fps}" if s.target_fps is not None else ""
            raise DataError(
                f"data.clip_len {s.clip_len} at data.frame_stride {s.stride} spans {span} "
                f"frames{fps}, but {short.size} of the {len(counts)} videos have fewer: "
                f"{shown}{more}; use shorter clips, a smaller stride, or leave them out"
            )

    def _timeline(self, src: Path) -> Tensor:
        """Source frame index of each frame of the (resampled) video."""
        s = self.sampling
        if src.is_dir():
            n, fps = count_frames(src), s.folder_fps
            if s.target_fps is not None and fps is None:
                raise ConfigError(
                    f"data.target_fps needs data.folder_fps for the frame folder {str(src)!r}"
                )
        else:
            info = video_info(src)
            n, fps = info.num_frames, info.fps
        if s.target_fps is None:
            return torch.arange(n)
        return resample_indices(n, fps, s.target_fps)

    def _read(self, src: Path, ids: Tensor) -> Tensor:
        frames = read_frames(src, ids)
        return F.resize(to_clip(frames), self._size(*frames.shape[1:3]), antialias=True)

    def _size(self, h: int, w: int) -> list[int]:
        """Frames of ``h x w`` resized: short side ``self.short``, never below the crop."""
        ch, cw = self.sampling.image_size
        scale = max(self.short / min(h, w), ch / h, cw / w)
        return [max(ch, round(h * scale)), max(cw, round(w * scale))]

    def _all_frames(self, src: Path, timeline: Tensor) -> Tensor:
        """Every frame of the timeline, resized, as uint8 ``(M, h, w, C)`` (the flow cache)."""
        small = [
            F.resize(c.permute(0, 3, 1, 2), self._size(*c.shape[1:3]), antialias=True)
            for c in iter_frames(src, 64)  # one frame size throughout, or a DataError
        ]
        return torch.cat(small)[timeline].permute(0, 2, 3, 1)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.sampling
        src, label = self.entries[i]
        timeline = self._timeline(src)
        clips = clip_indices(
            len(timeline), s.clip_len, s.stride, s.mode, s.num_clips, source=str(src)
        )
        ids = timeline[clips]  # (K, T) frame indices in the file
        k, t = clips.shape
        video = self._read(src, ids.reshape(-1))  # (K * T, C, h, w)
        inputs: list[Any] = [video]
        if s.flow:
            inputs.append(FlowField(self._flow(src, timeline, clips, video)))
        out = self.augment(*inputs) if len(inputs) > 1 else (self.augment(video),)
        clip = out[0].reshape(k, t, *out[0].shape[1:])
        sample: dict[str, Any] = {
            VIDEO: tv_tensors.Video(clip[0] if k == 1 else clip),
            LABEL: int(label),
            META: {
                "file": str(src),
                "start": int(ids[0, 0]),
                "starts": ids[:, 0].tolist(),
                "frames": len(timeline),
            },
        }
        if s.flow:
            f = out[1].as_subclass(Tensor).reshape(k, t - 1, *out[1].shape[1:])
            sample[FLOW] = f[0] if k == 1 else f
        return sample

    def _flow(self, src: Path, timeline: Tensor, clips: Tensor, video: Tensor) -> Tensor:
        """``(K * (T - 1), 2, h, w)`` flow between consecutive frames of each clip."""
        s = self.sampling
        k, t = clips.shape
        if self.cache is not None:
            tag = (
                f"short={self.short}|crop={s.image_size}|fps={s.target_fps}"
                f"|folder_fps={s.folder_fps}"
            )
            cached = self.cache.get(
                src, lambda: self._all_frames(src, timeline), gap=s.stride, tag=tag
            )
            starts = clips[:, :-1].reshape(-1).numpy()
            return torch.from_numpy(np.asarray(cached[starts], dtype=np.float32))
        frames = video.reshape(k, t, *video.shape[1:])
        a = frames[:, :-1].reshape(-1, *video.shape[1:])
        b = frames[:, 1:].reshape(-1, *video.shape[1:])
        return flow_between(a, b, s.flow_method)


def grouped_split(
    targets: np.ndarray,
    groups: np.ndarray,
    held_out: float | int,
    seed: int,
    option: str = "data.split",
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded sorted (kept, held-out) index split that never cuts a group, stratified by class.

    Each class holds out the prefix of its groups (in a seeded random order) whose size is
    closest to its share of ``held_out``, keeping at least one group in training; where that
    holds out nothing (every class a single group) the groups are drawn regardless of class.
    A group is expected to lie in one class (:func:`recording_groups` makes it so).

    Args:
        targets: class per sample ``(N,)``.
        groups: group per sample ``(N,)`` (clips of one recording share one).
        held_out: a fraction of the samples (float) or a number of samples (int).
        seed: the random order of the groups.
        option: the option named in the error.

    Raises:
        ConfigError: nothing would be left to keep, or a single group.

    >>> grouped_split(np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 3]), 0.5, 0)[1].size
    3
    """
    idx = np.arange(len(targets))
    if held_out <= 0:
        return idx, idx[:0]
    n = len(targets)
    n_held = held_out if isinstance(held_out, int) else int(np.ceil(held_out * n))
    ids, inv = np.unique(groups, return_inverse=True)
    inv = inv.reshape(-1)
    if n_held >= n or len(ids) < 2:
        raise ConfigError(
            f"{option} {held_out} holds out {n_held} of the {n} samples in {len(ids)} recording "
            "groups, leaving none: use a smaller value or more data"
        )
    size = np.bincount(inv)
    cls = np.zeros(len(ids), dtype=np.int64)
    cls[inv] = targets
    order = np.random.default_rng(seed).permutation(len(ids))
    held_groups: list[np.ndarray] = []
    for c in np.unique(cls):  # a loop over classes, not samples
        g = order[cls[order] == c]
        if len(g) < 2:
            continue
        want = n_held * size[g].sum() / n
        cum = np.cumsum(size[g])[:-1]  # at least one group stays in training
        k = int(np.argmin(np.abs(np.concatenate([[0], cum]) - want)))
        held_groups.append(g[:k])
    chosen = np.concatenate(held_groups) if held_groups else np.zeros(0, dtype=np.int64)
    if chosen.size == 0:
        cum = np.cumsum(size[order])[:-1]
        chosen = order[: max(1, int(np.argmin(np.abs(cum - n_held))) + 1)]
    mask = np.isin(inv, chosen)
    return idx[~mask], idx[mask]


class VideoFolderDataModule(SplitDataModule):
    """Video classification from a class-per-folder tree or UCF101 / Kinetics list files.

    Training samples are one clip at a random position (``train_clips="random"``; or the
    centre clip, ``"uniform"``), cropped at random and flipped (the same crop and flip for
    every frame); validation and test samples are ``val_clips`` / ``test_clips`` clips evenly
    spread over the video (``"dense"``), centre-cropped, for averaging the class scores per
    video (Karpathy et al. 2014, sec. 4.1; C3D sec. 3.3). With one clip ``video`` is
    ``(T, C, H, W)``, with ``K`` clips ``(K, T, C, H, W)``.

    Sources:

    * a tree: ``<root>/<class>/<video>.{mp4,avi,mkv,webm,mov}`` or
      ``<root>/<class>/<video>/<frames>.jpg|png``; the test set is a seeded, stratified share
      (``split.test_fraction``) when there is no list.
    * UCF101: ``train_list`` ``trainlist01.txt``, ``test_list`` ``testlist01.txt`` and
      ``class_index`` ``classInd.txt`` (default: the one beside ``train_list``), paths
      relative to ``root``.
    * Kinetics: ``train_list`` ``train.csv`` (and ``test_list`` ``validate.csv``), columns
      ``label,youtube_id,time_start,time_end,split``; the files are found below ``root``.
    * Held-out shares (validation; test without a list) keep the clips of one recording
      together: names ``..._g<NN>_c<MM>`` (UCF101) are split by group ``(class, NN)``
      (:func:`grouped_split`), other names video by video.

    Args:
        root: the data set's folder.
        clip_len: frames per clip ``T``.
        frame_stride: frames between a clip's frames (after ``target_fps`` resampling).
        target_fps: resample every video to this frame rate first (None: as recorded).
        folder_fps: the frame rate of frame folders (needed with ``target_fps``).
        image_size: the crop ``(H, W)``.
        resize: the short side before cropping (None: ``8/7`` of the crop: 128 for 112).
        train_clips: ``"random"`` or ``"uniform"`` (the centre clip).
        val_clips, test_clips: clips ``K`` per validation / test video (dense, scores averaged).
        flip: random horizontal flips in training.
        flow: also give the optical flow between consecutive clip frames (two-stream).
        flow_method: ``"farneback"`` or ``"tvl1"`` (needs opencv-contrib).
        cache_dir: where each video's flow is kept once computed (None: computed per clip).
        train_list, test_list: UCF101 list files or Kinetics CSVs (None: the tree).
        class_index: UCF101 ``classInd.txt``.
        skip_missing: leave out listed videos that are not under ``root`` (Kinetics always
            misses some) instead of raising.
        stats_videos: training videos whose centre clip gives the channel mean / std.
        loader, split: as in :class:`~visrep.data.base.SplitDataModule`.
    """

    def __init__(
        self,
        root: str = "data/videos",
        clip_len: int = 16,
        frame_stride: int = 1,
        target_fps: float | None = None,
        folder_fps: float | None = None,
        image_size: tuple[int, int] = (112, 112),
        resize: int | None = None,
        train_clips: Literal["random", "uniform"] = "random",
        val_clips: int = 1,
        test_clips: int = 10,
        flip: bool = True,
        flow: bool = False,
        flow_method: FlowMethod = "farneback",
        cache_dir: str | None = None,
        train_list: str | None = None,
        test_list: str | None = None,
        class_index: str | None = None,
        skip_missing: bool = False,
        stats_videos: int = 16,
        loader: LoaderConfig | None = None,
        split: SplitConfig | None = None,
    ) -> None:
        super().__init__(loader, split)
        for name, v in (
            ("clip_len", clip_len),
            ("frame_stride", frame_stride),
            ("val_clips", val_clips),
            ("test_clips", test_clips),
            ("stats_videos", stats_videos),
        ):
            if v < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {v}")
        if flow and clip_len < 2:
            raise ConfigError("data.flow needs data.clip_len >= 2 (flow is between frames)")
        if train_clips not in ("random", "uniform"):
            raise ConfigError(
                f"data.train_clips must be 'random' or 'uniform', got {train_clips!r}"
            )
        if len(image_size) != 2 or min(image_size) < 1:
            raise ConfigError(f"data.image_size must be (H, W) >= 1, got {image_size}")
        for name, v in (("target_fps", target_fps), ("folder_fps", folder_fps)):
            if v is not None and v <= 0:
                raise ConfigError(f"data.{name} must be > 0 or null, got {v}")
        if test_list is not None and train_list is None:
            raise ConfigError("data.test_list needs data.train_list")
        if flow:
            check_flow_method(flow_method)  # unknown / tvl1 without opencv-contrib: fail now
        short_side(tuple(image_size), resize)
        self.root = Path(root)
        self.train_list, self.test_list, self.class_index = train_list, test_list, class_index
        self.skip_missing = skip_missing
        self.stats_videos = stats_videos
        self.val_clips, self.test_clips = val_clips, test_clips
        self.sampling = ClipSampling(
            clip_len=clip_len,
            stride=frame_stride,
            target_fps=target_fps,
            folder_fps=folder_fps,
            mode=train_clips,
            image_size=tuple(image_size),
            resize=resize,
            flip=flip,
            flow=flow,
            flow_method=flow_method,
            cache_dir=cache_dir,
        )
        self.mean: list[float] = []
        self.std: list[float] = []
        self.groups: np.ndarray | None = None  # recording group per training video

    def _lists(self) -> tuple[list[str], list, list | None]:
        if self.train_list is None:
            classes, entries = scan_video_tree(self.root)
            return classes, entries, None
        if Path(self.train_list).suffix.lower() == ".csv":
            classes, train = read_kinetics_csv(
                self.train_list, self.root, skip_missing=self.skip_missing
            )
            test = None
            if self.test_list is not None:
                _, test = read_kinetics_csv(self.test_list, self.root, classes, self.skip_missing)
            return classes, train, test
        index = self.class_index or str(Path(self.train_list).with_name("classInd.txt"))
        classes = read_class_index(index)
        train = read_ucf_list(self.train_list, self.root, classes, self.skip_missing)
        test = None
        if self.test_list is not None:
            test = read_ucf_list(self.test_list, self.root, classes, self.skip_missing)
        return classes, train, test

    def _eval(self, ds: VideoClipDataset, clips: int) -> VideoClipDataset:
        return ds.with_sampling(train=False, mode="dense", num_clips=clips)

    def load(self) -> Splits:
        classes, train, test = self._lists()
        train_ds = VideoClipDataset(train, replace(self.sampling, train=True))
        test_ds = None if test is None else self._eval(train_ds, self.test_clips)
        if test_ds is not None:
            test_ds = VideoClipDataset(test, test_ds.sampling)
        for ds in (train_ds, test_ds):
            if ds is not None:
                ds.check_lengths()
        self.groups = recording_groups(train)
        return Splits(train_ds, train_ds.targets, classes, test=test_ds)

    def split_indices(
        self,
        idx: np.ndarray,
        targets: np.ndarray,
        held_out: float | int,
        seed: int,
        option: str = "data.split",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Held-out videos by recording group (UCF101 ``gNN``) when the names give groups."""
        if self.groups is None:
            return super().split_indices(idx, targets, held_out, seed, option)
        keep, held = grouped_split(targets[idx], self.groups[idx], held_out, seed, option)
        return idx[keep], idx[held]

    def on_splits_ready(self) -> None:
        # val (and a held-out test) are Subsets of the training videos: sample them as such
        base = self.train_set.dataset
        for name, clips in (("val_set", self.val_clips), ("test_set", self.test_clips)):
            ds = getattr(self, name)
            if isinstance(ds, Subset) and ds.dataset is base:
                setattr(self, name, Subset(self._eval(base, clips), ds.indices))
        self.mean, self.std = self._channel_stats(base)

    def _channel_stats(self, base: VideoClipDataset) -> tuple[list[float], list[float]]:
        """Per-channel mean / std of the centre clips of ``stats_videos`` training videos."""
        idx = np.asarray(self.train_set.indices)
        if len(idx) > self.stats_videos:
            rng = np.random.default_rng(self.split.seed)
            idx = np.sort(rng.choice(idx, self.stats_videos, replace=False))
        probe = base.with_sampling(train=False, mode="uniform", num_clips=1, flow=False)
        x = torch.stack([probe[int(i)][VIDEO].as_subclass(Tensor) for i in idx]).double()
        dims = (0, 1, 3, 4)
        return x.mean(dims).tolist(), x.std(dims).clamp_min(1e-6).tolist()

    def spec(self) -> DataSpec:
        """What the model needs to know about the clips (after :meth:`setup`)."""
        s = self.sampling
        keys = (VIDEO, LABEL) + ((FLOW,) if s.flow else ())
        return DataSpec(
            family="video",
            keys=keys,
            in_chans=3,
            image_size=tuple(s.image_size),
            num_frames=s.clip_len,
            num_classes=self.num_classes,
            class_names=tuple(self.class_names),
            mean=tuple(self.mean),
            std=tuple(self.std),
            flow_frames=s.clip_len - 1 if s.flow else None,
        )
