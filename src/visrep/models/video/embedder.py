"""The per-frame embedder of Temporal Cycle-Consistency learning (Dwibedi et al. 2019, "Temporal
Cycle-Consistency Learning", Table 8; seed 004: 2D convolutions per frame, temporal stacking,
then 3D convolutions, "since 3D convolutions are memory intensive").

Table 8: a 2D base network per frame (ResNet-50 up to conv4_x, ``14 x 14 x c_4`` for 224 x 224
frames, or a VGG-M-like network from scratch); the features of ``k`` context frames stacked in
time (``k x 14 x 14 x c_4``); conv5_x: two ``3 x 3 x 3`` convolutions with 512 channels; a global
3D max-pool; fc6: two fully connected layers of 512; a linear embedding of 128. The network
"produces an embedding for each frame (and its context window)".
"""

from __future__ import annotations

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import BackboneFactory
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    build_2d,
    check_clip,
    check_dropout,
    check_video_args,
    fold_frames,
)

__all__ = ["context_windows", "tcc_embedder"]


def context_windows(features: Tensor, context: int, stride: int = 1) -> Tensor:
    """Stack every frame's ``context`` frames (itself and the ones before it, ``stride`` apart)
    on a time axis, for every frame that has them all.

    Frame ``t`` gets frames ``t - (context - 1) * stride, ..., t - stride, t``; the first
    ``(context - 1) * stride`` frames have no full window and get none.

    Shape: ``(B, T, C, H, W) -> (B, N, C, context, H, W)``, ``N = T - (context - 1) * stride``.

    >>> x = torch.arange(4.0).view(1, 4, 1, 1, 1)
    >>> context_windows(x, 2, 2).flatten(2).tolist()
    [[[0.0, 2.0], [1.0, 3.0]]]
    """
    span = (context - 1) * stride + 1
    if context < 1 or stride < 1 or features.dim() != 5 or features.shape[1] < span:
        raise ConfigError(
            f"context_windows: need context, stride >= 1 and (B, T, C, H, W) features with "
            f"T >= {span}, got context={context}, stride={stride}, {tuple(features.shape)}"
        )
    # unfold: (B, N, C, H, W, span) -> keep every stride-th -> (B, N, C, context, H, W)
    win = features.unfold(1, span, 1)[..., ::stride]
    return win.permute(0, 1, 2, 5, 3, 4)


@VIDEO_NETS.register
class tcc_embedder(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """Table 8's embedder: 2D base per frame, context stacking, 3D convs, 3D max-pool, fc.

    :meth:`frame_embeddings` gives one embedding per frame that has a full context window;
    for classification the embedding of the clip is their mean and a linear classifier follows.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the 2D base network (the paper: ResNet-50, pretrained, up to conv4_x).
        base_level: its feature level read (``-1``: ``forward_features``; for ``resnet50``,
            ``-2`` is conv4_x, stride 16).
        context: frames per context window, ``k``.
        context_stride: frames between the context frames.
        conv_channels: channels of the two ``3 x 3 x 3`` convolutions (512).
        fc_width, fc_layers: the fully connected layers (two of 512).
        embedding_dim: the embedding size (128).
        batch_norm: batch norm after the 3D convolutions (not in Table 8).
        dropout: before each fully connected layer.

    Shape: ``(B, T, C, H, W) -> (B, num_classes)``; :meth:`frame_embeddings` ``(B, N, D)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        base_level: int = -1,
        context: int = 2,
        context_stride: int = 1,
        conv_channels: int = 512,
        fc_width: int = 512,
        fc_layers: int = 2,
        embedding_dim: int = 128,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        size = check_video_args("tcc_embedder", in_chans, num_classes, num_frames, img_size)
        if context < 1 or context_stride < 1 or (context - 1) * context_stride >= num_frames:
            raise ConfigError(
                f"tcc_embedder: context and context_stride must be >= 1 with a window "
                f"((context - 1) * context_stride + 1) of at most num_frames={num_frames}, got "
                f"{context}, {context_stride}"
            )
        if min(conv_channels, fc_width, embedding_dim) < 1 or fc_layers < 0:
            raise ConfigError(
                "tcc_embedder: conv_channels, fc_width, embedding_dim must be >= 1 and "
                f"fc_layers >= 0, got {conv_channels}, {fc_width}, {embedding_dim}, {fc_layers}"
            )
        check_dropout("tcc_embedder", dropout)
        self.base = build_2d(backbone, in_chans, 0, size)
        levels = len(getattr(self.base, "feature_info", []) or [])
        if base_level != -1 and not -levels <= base_level < levels:
            raise ConfigError(
                f"tcc_embedder: base_level {base_level} is out of range for the backbone's "
                f"{levels} feature levels"
            )
        c = (
            self.base.num_features
            if base_level == -1
            else self.base.feature_info[base_level]["num_chs"]
        )
        convs: list[nn.Module] = []
        for _ in range(2):
            convs.append(nn.Conv3d(c, conv_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                convs.append(nn.BatchNorm3d(conv_channels))
            convs.append(nn.ReLU(inplace=True))
            c = conv_channels
        self.conv5 = nn.Sequential(*convs)
        self.pool = nn.AdaptiveMaxPool3d(1)  # Table 8: global 3D max-pool
        fcs: list[nn.Module] = [nn.Flatten(1)]
        for _ in range(fc_layers):
            fcs += [nn.Dropout(dropout), nn.Linear(c, fc_width), nn.ReLU(inplace=True)]
            c = fc_width
        fcs.append(nn.Linear(c, embedding_dim))
        self.fc = nn.Sequential(*fcs)
        self.in_chans, self.num_frames = in_chans, num_frames
        self.base_level, self.context, self.context_stride = base_level, context, context_stride
        self.num_features = embedding_dim
        self.reset_classifier(num_classes)

    def base_features(self, video: Tensor) -> Tensor:
        """The 2D base network on every frame, ``(B, T, c, h, w)``."""
        check_clip("tcc_embedder", video, self.in_chans)
        x = fold_frames(video)
        if self.base_level == -1:
            f = self.base.forward_features(x)
        else:
            f = self.base.forward_intermediates(x, indices=[self.base_level])[0]
        return f.view(video.shape[0], video.shape[1], *f.shape[1:])

    def frame_embeddings(self, video: Tensor) -> Tensor:
        """One embedding per frame with a full context window, ``(B, N, embedding_dim)``."""
        win = context_windows(self.base_features(video), self.context, self.context_stride)
        b, n = win.shape[:2]
        z = self.pool(self.conv5(win.flatten(0, 1)))  # all windows of all clips in one call
        return self.fc(z).view(b, n, -1)

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.frame_embeddings(video).mean(1)
