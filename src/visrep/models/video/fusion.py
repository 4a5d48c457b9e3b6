"""Fusing time in a 2D CNN (Karpathy et al. 2014, "Large-scale Video Classification with
Convolutional Neural Networks", Sec. 3.1 and Fig. 1; seed 004, "Videos").

Four ways to let a 2D image network see a clip, all on the same 2D backbone so they compare:

- :class:`single_frame`: the backbone on every frame (frames folded into the batch), class
  scores averaged over frames (Sec. 4.1: video predictions average clip predictions).
- :class:`early_fusion`: the frames stacked on the channels, ``C x T`` input channels: the first
  layer's filters span the whole clip ("11 x 11 x 3 x T", T = 10 in the paper).
- :class:`late_fusion`: two towers with shared weights on two frames ``frame_gap`` apart (15
  in the paper), merged in the first fully connected layer, which alone can compare them.
- :class:`slow_fusion`: the first convolutions extended in time (valid convolutions of
  temporal extents 4, 2, 2 with temporal stride 2 on 10 frames: 4, then 2, then 1 response in
  time), so higher layers see progressively more of the clip; fully connected layers follow.

The fully connected layers of late and slow fusion read the flattened feature maps, as the
paper's fc6 reads pool5; ``pool_to`` average-pools them to ``pool_to x pool_to`` first (for
large inputs or wide backbones). The paper's FC layers have 4096 units; ``hidden`` sets them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.errors import CheckpointError, ConfigError, ShapeError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import BackboneFactory
from visrep.models.video.inflate import (
    called_modules,
    frames_to_time,
    inflate_backbone,
    stack_frames_weight,
)
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    average_softmax,
    build_2d,
    check_clip,
    check_dropout,
    check_video_args,
    dry_run,
    fold_frames,
)

__all__ = ["early_fusion", "fusion_mlp", "late_fusion", "single_frame", "slow_fusion"]


def fusion_mlp(
    in_shape: Sequence[int],
    hidden: Sequence[int],
    dropout: float,
    pool_to: int | None,
    name: str = "fusion_mlp",
) -> tuple[nn.Sequential, int]:
    """``[adaptive average pool to pool_to x pool_to] -> flatten -> (Linear, ReLU, Dropout) x
    len(hidden)`` on ``(B, *in_shape)`` maps, and its output width (the embedding size);
    ``name`` (the network) starts the error messages."""
    if any(h < 1 for h in hidden):
        raise ConfigError(f"{name}: model.net.hidden must be positive widths, got {list(hidden)}")
    check_dropout(name, dropout)
    if pool_to is not None and pool_to < 1:
        raise ConfigError(f"{name}: model.net.pool_to must be >= 1 or None, got {pool_to}")
    layers: list[nn.Module] = []
    c, *spatial = in_shape
    if pool_to is not None:
        layers.append(nn.AdaptiveAvgPool2d(pool_to))
        spatial = [pool_to, pool_to]
    layers.append(nn.Flatten(1))
    width = c * int(torch.tensor(spatial).prod()) if spatial else c
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers), width


@VIDEO_NETS.register
class single_frame(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """The 2D backbone on every frame, softmax scores averaged over frames (Karpathy et al.
    2014, "Single-frame" in Sec. 3.1; the video prediction of Sec. 4.1).

    The logits are ``log mean_t softmax(f(x_t))`` (:func:`~visrep.models.video.average_softmax`),
    so cross-entropy and ``softmax`` read the averaged scores. The embedding is the mean of the
    per-frame pooled features. Any number of frames is accepted.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the 2D backbone (with its classifier).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
    ) -> None:
        super().__init__()
        size = check_video_args("single_frame", in_chans, num_classes, num_frames, img_size)
        self.backbone = build_2d(backbone, in_chans, num_classes, size)
        self.in_chans, self.num_frames, self.num_classes = in_chans, num_frames, num_classes
        self.num_features = self.backbone.num_features

    def _frames(self, video: Tensor) -> Tensor:
        check_clip("single_frame", video, self.in_chans)
        return self.backbone.forward_features(fold_frames(video))

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        z = self.backbone.forward_head(self._frames(video), pre_logits=True)
        return z.view(video.shape[0], video.shape[1], -1).mean(1)

    def frame_logits(self, video: Tensor) -> Tensor:
        """Per-frame logits ``(B, T, num_classes)``."""
        logits = self.backbone.forward_head(self._frames(video))
        return logits.view(video.shape[0], video.shape[1], -1)

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        if not self.num_classes:  # no classifier: the representation, as a 2D backbone does
            return self.embed(video)
        return average_softmax(self.frame_logits(video), dim=1)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.backbone.reset_classifier(num_classes)


@VIDEO_NETS.register
class early_fusion(VideoNet):  # noqa: N801
    """The clip's frames stacked on the channels of one 2D backbone (Karpathy et al. 2014,
    "Early Fusion"): ``(B, T, C, H, W) -> (B, T * C, H, W)``, frame-major.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data (``num_frames`` is fixed).
        backbone: the 2D backbone, built with ``in_chans * num_frames`` input channels.
        inflate_from: 2D weights of the same backbone built for ``in_chans`` channels (a state
            dict, ``.ckpt`` or visrep run): the first convolution's kernel is repeated over the
            stacked frames and divided by ``num_frames``
            (:func:`~visrep.models.video.inflate.stack_frames_weight`), so a static clip gives
            the 2D network's output; the other tensors load by name and shape.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        inflate_from: str | None = None,
    ) -> None:
        super().__init__()
        size = check_video_args("early_fusion", in_chans, num_classes, num_frames, img_size)
        self.backbone = build_2d(backbone, in_chans * num_frames, num_classes, size)
        self.in_chans, self.num_frames, self.num_classes = in_chans, num_frames, num_classes
        self.num_features = self.backbone.num_features
        if inflate_from:
            self._inflate_from(inflate_from, size)

    def _inflate_from(self, path: str, size: tuple[int, int]) -> None:
        from visrep.models.pretrained import load_matching, read_backbone_state

        probe = torch.zeros(1, self.in_chans * self.num_frames, *size)
        first = next(
            n
            for n in called_modules(self.backbone, self.backbone.forward_features, probe)
            if isinstance(self.backbone.get_submodule(n), nn.Conv2d)
        )
        state = read_backbone_state(path)
        key = f"{first}.weight"
        w = state.get(key)
        if w is None or w.dim() != 4 or w.shape[1] != self.in_chans:
            got = "missing" if w is None else tuple(w.shape)
            raise CheckpointError(
                f"model.net.inflate_from {path!r}: expected the first convolution {key} with "
                f"{self.in_chans} input channels, got {got}"
            )
        load_matching(self.backbone, {**state, key: stack_frames_weight(w, self.num_frames)}, path)

    def forward_features(self, video: Tensor) -> Tensor:
        check_clip("early_fusion", video, self.in_chans, self.num_frames)
        return self.backbone.forward_features(video.flatten(1, 2))

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.backbone.forward_head(self.forward_features(video), pre_logits=True)

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.backbone.forward_head(self.forward_features(video))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.backbone.reset_classifier(num_classes)


@VIDEO_NETS.register
class late_fusion(VideoNet):  # noqa: N801
    """Two weight-sharing towers on frames ``frame_gap`` apart, merged by fully connected layers
    (Karpathy et al. 2014, "Late Fusion": 15 frames apart, merged in the first FC layer).

    The towers' feature maps are concatenated on the channels and flattened (or pooled to
    ``pool_to x pool_to``) into ``hidden`` FC layers, then the classifier.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the 2D tower (its features; its classifier is not used).
        frame_gap: the second frame's index (the first is frame 0); None: the clip's last frame.
        hidden: widths of the FC layers after the merge (4096, 4096 in the paper).
        dropout: after each FC layer.
        pool_to: average-pool the maps to this size before flattening (None: as they are).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        frame_gap: int | None = None,
        hidden: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        pool_to: int | None = None,
    ) -> None:
        super().__init__()
        size = check_video_args("late_fusion", in_chans, num_classes, num_frames, img_size)
        gap = num_frames - 1 if frame_gap is None else frame_gap
        if not 1 <= gap < num_frames:
            raise ConfigError(
                f"model.net.frame_gap must be in 1..{num_frames - 1} (num_frames={num_frames}), "
                f"got {frame_gap}"
            )
        self.backbone = build_2d(backbone, in_chans, 0, size)
        self.in_chans, self.num_frames, self.num_classes = in_chans, num_frames, num_classes
        self.frame_gap = gap
        z = dry_run(self.backbone, self.backbone.forward_features, torch.zeros(1, in_chans, *size))
        if z.dim() != 4:
            raise ConfigError(
                f"late_fusion: the backbone's features are {tuple(z.shape)}, expected maps "
                "(B, F, h, w)"
            )
        self.fuse, self.num_features = fusion_mlp(
            (2 * z.shape[1], *z.shape[2:]), hidden, dropout, pool_to, "late_fusion"
        )
        self.reset_classifier(num_classes)

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        check_clip("late_fusion", video, self.in_chans)
        if video.shape[1] <= self.frame_gap:
            raise ShapeError(
                f"late_fusion: the clip has {video.shape[1]} frames, frame_gap {self.frame_gap} "
                "needs more"
            )
        pair = video[:, [0, self.frame_gap]]  # (B, 2, C, H, W): both towers in one call
        z = self.backbone.forward_features(fold_frames(pair))
        return self.fuse(z.view(video.shape[0], -1, *z.shape[2:]))


@VIDEO_NETS.register
class slow_fusion(VideoNet):  # noqa: N801
    """Connectivity in time grows layer by layer (Karpathy et al. 2014, "Slow Fusion").

    The first ``len(time_kernels)`` convolutions of the 2D backbone (in call order) become valid
    convolutions over time with extents ``time_kernels`` and strides ``time_strides`` (the
    paper: 4, 2, 2 with stride 2 on 10 frames, so the third layer sees all 10); the other
    convolutions and the pools act per frame (the backbone inflated with temporal extent 1).
    The remaining ``T'`` time steps of the features are stacked on the channels and flattened
    into ``hidden`` FC layers, then the classifier.

    The backbone must be a plain stack (``small_cnn``, ``lenet``): a residual block whose
    branch strides in time would not add up, which the construction reports. Pretrained 2D
    weights (the backbone's own ``pretrained_path``) are inflated as in I3D.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data (``num_frames`` is fixed).
        backbone: the 2D backbone.
        time_kernels, time_strides: temporal extent and stride of the first convolutions.
        hidden, dropout, pool_to: the FC layers, as in :class:`late_fusion`.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        time_kernels: Sequence[int] = (4, 2, 2),
        time_strides: Sequence[int] = (2, 2, 2),
        hidden: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        pool_to: int | None = None,
    ) -> None:
        super().__init__()
        size = check_video_args("slow_fusion", in_chans, num_classes, num_frames, img_size)
        kernels, strides = [int(k) for k in time_kernels], [int(s) for s in time_strides]
        if len(kernels) != len(strides) or min(kernels + strides, default=1) < 1:
            raise ConfigError(
                f"model.net.time_kernels and time_strides must be equally long and positive, got "
                f"{kernels}, {strides}"
            )
        t = num_frames
        for k, s in zip(kernels, strides, strict=True):
            t = (t - k) // s + 1
        if t < 1:
            raise ConfigError(
                f"slow_fusion: {num_frames} frames are too few for time_kernels {kernels} with "
                f"strides {strides}"
            )
        net2d = build_2d(backbone, in_chans, 0, size)
        n = len(kernels)

        def conv_rule(i: int, conv: nn.Module) -> tuple[int, int, int]:
            return (kernels[i], strides[i], 0) if i < n else (1, 1, 0)

        self.backbone = inflate_backbone(
            net2d, in_chans, num_frames, size, conv_rule, lambda i, p: (1, 1, 0), "zeros"
        )
        self.in_chans, self.num_frames, self.num_classes = in_chans, num_frames, num_classes
        clip = torch.zeros(1, in_chans, num_frames, *size)
        z = dry_run(self.backbone, self.backbone.forward_features, clip)
        self.time_steps = z.shape[2]
        self.fuse, self.num_features = fusion_mlp(
            (z.shape[1] * z.shape[2], *z.shape[3:]), hidden, dropout, pool_to, "slow_fusion"
        )
        self.reset_classifier(num_classes)

    def forward_features(self, video: Tensor) -> Tensor:
        """Features ``(B, F, T', h, w)`` of clips ``(B, T, C, H, W)``."""
        check_clip("slow_fusion", video, self.in_chans, self.num_frames)
        return self.backbone.forward_features(frames_to_time(video))

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        z = self.forward_features(video)
        return self.fuse(z.transpose(1, 2).flatten(1, 2))
