"""Recurrent video classifiers (seed 004, "CNN + LSTM" and "ConvLSTM").

- :class:`cnn_lstm`: a 2D CNN encodes every frame to a vector and an LSTM reads the sequence of
  vectors (the long-term recurrent convolutional network, LRCN, of Donahue et al., "Long-term
  Recurrent Convolutional Networks for Visual Recognition and Description", CVPR 2015; Ng et
  al., "Beyond Short Snippets", CVPR 2015); the classifier reads the last hidden state (or, as
  LRCN does, the average over the steps). LRCN's frame vector is CaffeNet's fc6, a fully
  connected layer over the flattened conv map, so it keeps *where* things are; a globally
  pooled vector of a translation-equivariant CNN does not (a pattern translated across the
  frame gives nearly the same vector), and an LSTM on it cannot see translation. Both are
  options (``frame_features``).
- :class:`convlstm`: a 2D CNN encodes every frame to a feature *map*, stacked ConvLSTM layers
  (Shi et al., NIPS 2015, eq. 3; :class:`~visrep.models.layers.ConvLSTM`) carry the maps over
  time, keeping the spatial layout in the recurrence; the last layer's final hidden state is
  pooled over space and classified.

Both are registered in :data:`~visrep.models.video.VIDEO_NETS`; their frame encoder is any
registered 2D backbone (``--model.net.backbone resnet18``, with the backbone's own options,
``pretrained_path`` included, as ``--model.net.backbone.OPTION``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.layers.convlstm import ConvLSTM
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    build_2d,
    check_clip,
    check_dropout,
    check_video_args,
    dry_run,
    fold_frames,
)

__all__ = ["cnn_lstm", "convlstm"]


def _map_shape(enc: Backbone, in_chans: int, size: tuple[int, int]) -> torch.Size:
    """The shape of ``enc.forward_features`` on one frame (a :func:`dry_run`: eval mode, no
    gradients, batch-norm running statistics untouched)."""
    return dry_run(enc, enc.forward_features, torch.zeros(1, in_chans, *size)).shape


@VIDEO_NETS.register
class cnn_lstm(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """CNN + LSTM: a vector per frame from a 2D CNN -> LSTM -> classifier (Donahue et al. 2015).

    Args:
        in_chans, num_classes, num_frames, img_size: from the data (clips of any length are
            accepted; ``num_frames`` is what the data gives).
        backbone: the 2D frame encoder.
        frame_features: ``"flatten"``: the backbone's feature map flattened, then a fully
            connected layer with ReLU to ``feature_dim`` (LRCN's fc6 on pool5: keeps position);
            ``"pooled"``: the backbone's globally pooled ``forward_head(z, pre_logits=True)``
            vector (``backbone.num_features`` wide; invariant to where the content is).
        feature_dim: width of the fully connected frame layer (``"flatten"`` only).
        hidden_size: LSTM hidden units (the embedding size).
        num_layers: stacked LSTM layers.
        readout: ``"last"``: the top layer's hidden state after the last frame; ``"mean"``: its
            average over the frames (LRCN averages its per-step predictions).
        dropout: on the frame vectors and before the classifier.

    Shape: ``(B, T, C, H, W)`` -> ``(B, num_classes)``; :meth:`embed` ``(B, hidden_size)``.

    >>> net = cnn_lstm(1, 4, 6, (16, 16), feature_dim=16, hidden_size=8)
    >>> net(torch.rand(2, 6, 1, 16, 16)).shape, net.embed(torch.rand(2, 3, 1, 16, 16)).shape
    (torch.Size([2, 4]), torch.Size([2, 8]))
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        frame_features: Literal["flatten", "pooled"] = "flatten",
        feature_dim: int = 256,
        hidden_size: int = 256,
        num_layers: int = 1,
        readout: Literal["last", "mean"] = "last",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        size = check_video_args("cnn_lstm", in_chans, num_classes, num_frames, img_size)
        if min(hidden_size, num_layers, feature_dim) < 1:
            raise ConfigError(
                "cnn_lstm: hidden_size, num_layers and feature_dim must be >= 1, got "
                f"{hidden_size}, {num_layers}, {feature_dim}"
            )
        if readout not in ("last", "mean"):
            raise ConfigError(f"cnn_lstm: readout must be 'last' or 'mean', got {readout!r}")
        if frame_features not in ("flatten", "pooled"):
            raise ConfigError(
                f"cnn_lstm: frame_features must be 'flatten' or 'pooled', got {frame_features!r}"
            )
        check_dropout("cnn_lstm", dropout)
        self.in_chans, self.num_frames, self.readout = in_chans, num_frames, readout
        self.frame_mode = frame_features
        self.backbone = build_2d(backbone, in_chans, 0, size)
        if frame_features == "flatten":
            flat = _map_shape(self.backbone, in_chans, size).numel()
            self.fc: nn.Module = nn.Sequential(nn.Linear(flat, feature_dim), nn.ReLU())
            width = feature_dim
        else:
            self.fc, width = nn.Identity(), self.backbone.num_features
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(width, hidden_size, num_layers, batch_first=True)
        self.num_features = hidden_size
        self.reset_classifier(num_classes)

    def frame_features(self, video: Tensor) -> Tensor:
        """The vector of every frame, ``(B, T, F)`` (the LSTM's inputs)."""
        check_clip("cnn_lstm", video, self.in_chans)
        z = self.backbone.forward_features(fold_frames(video))
        if self.frame_mode == "flatten":
            z = self.fc(z.flatten(1))
        else:
            z = self.backbone.forward_head(z, pre_logits=True)
        return z.view(*video.shape[:2], -1)

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        out, _ = self.lstm(self.drop(self.frame_features(video)))  # (B, T, hidden)
        return out[:, -1] if self.readout == "last" else out.mean(dim=1)

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.classifier(self.drop(self.embed(video)))


@VIDEO_NETS.register
class convlstm(VideoNet):  # noqa: N801
    """2D CNN feature maps per frame -> stacked ConvLSTM (Shi et al. 2015) -> pool -> classifier.

    Each frame goes through the backbone's ``forward_features`` (unpooled ``(C', H', W')``
    maps); the ConvLSTM layers (eq. 3, zero initial states, "same" zero padding) run over the
    frames; the last layer's hidden state after the last frame, ``H_T``, is pooled over space.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the 2D frame encoder (only its feature maps are used).
        hidden_dims: hidden channels of each ConvLSTM layer.
        kernel_size: input-to-state kernel (odd; one for all layers or one per layer).
        hidden_kernel_size: state-to-state kernel (default: ``kernel_size``).
        peephole: the peephole terms of eq. 3, one weight per channel and position of the
            backbone's feature map (its size is computed from ``img_size``).
        pool: global pooling of ``H_T``.
        dropout: before the classifier.

    Shape: ``(B, T, C, H, W)`` -> ``(B, num_classes)``; :meth:`embed` ``(B, hidden_dims[-1])``.

    >>> net = convlstm(1, 4, 6, (16, 16), hidden_dims=(8,))
    >>> net(torch.rand(2, 6, 1, 16, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        hidden_dims: Sequence[int] = (64,),
        kernel_size: int | Sequence[int] = 3,
        hidden_kernel_size: int | Sequence[int] | None = None,
        peephole: bool = False,
        pool: Literal["avg", "max"] = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        size = check_video_args("convlstm", in_chans, num_classes, num_frames, img_size)
        if pool not in ("avg", "max"):
            raise ConfigError(f"convlstm: pool must be 'avg' or 'max', got {pool!r}")
        check_dropout("convlstm", dropout)
        self.in_chans, self.num_frames = in_chans, num_frames
        self.backbone = build_2d(backbone, in_chans, 0, size)
        # The map's channels are not always num_features (a backbone whose head widens the
        # pooled vector); a dry run gives them, and the map's size for per-position peepholes.
        shape = _map_shape(self.backbone, in_chans, size)
        if len(shape) != 4:
            raise ConfigError(
                f"convlstm: model.net.backbone's forward_features must give (B, C, H, W) maps, "
                f"got shape {tuple(shape)}"
            )
        c, h, w = shape[1:]
        self.rnn = ConvLSTM(
            c,
            tuple(hidden_dims),
            kernel_size,
            hidden_kernel_size,
            peephole=peephole,
            peephole_size=(h, w) if peephole else None,
        )
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.num_features = self.rnn.hidden_dims[-1]
        self.reset_classifier(num_classes)

    def feature_maps(self, video: Tensor) -> Tensor:
        """The backbone's feature maps of every frame, ``(B, T, C', H', W')``."""
        check_clip("convlstm", video, self.in_chans)
        z = self.backbone.forward_features(fold_frames(video))
        return z.view(*video.shape[:2], *z.shape[1:])

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        _, states = self.rnn(self.feature_maps(video))
        return self.pool(states[-1][0]).flatten(1)

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.classifier(self.drop(self.embed(video)))
