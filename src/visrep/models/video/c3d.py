"""C3D (Tran et al. 2015, "Learning Spatiotemporal Features with 3D Convolutional Networks",
Fig. 3 and Sec. 3; seed 004, "Conv3D").

"C3D net has 8 convolution, 5 max-pooling, and 2 fully connected layers, followed by a softmax
output layer. All 3D convolution kernels are 3 x 3 x 3 with stride 1 in both spatial and
temporal dimensions. [...] All pooling kernels are 2 x 2 x 2, except for pool1 is 1 x 2 x 2.
Each fully connected layer has 4096 output units." Filters: conv1a 64, conv2a 128, conv3a/b
256, conv4a/b 512, conv5a/b 512. Convolutions are padded by one in space and time ("appropriate
padding", Sec. 3.1), so only the pools shrink the clip; pools round up (Caffe's pooling, which
turns pool5's 7 x 7 into the 4 x 4 of the authors' fc6 input, 8192 = 512 x 1 x 4 x 4 for a
16 x 112 x 112 clip). fc6 and fc7 are followed by dropout 0.5, as in the authors' model.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.video.inflate import frames_to_time
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    check_clip,
    check_dropout,
    check_video_args,
)

__all__ = ["C3D_CHANNELS", "C3D_LAYERS", "c3d", "c3d_feature_shape"]

# (name, output channels) of the convolutions, and the pools after conv1a, 2a, 3b, 4b, 5b.
C3D_CHANNELS: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512, 512)
C3D_LAYERS: tuple[str, ...] = (
    "conv1a",
    "pool1",
    "conv2a",
    "pool2",
    "conv3a",
    "conv3b",
    "pool3",
    "conv4a",
    "conv4b",
    "pool4",
    "conv5a",
    "conv5b",
    "pool5",
)


def _pooled(n: int, k: int) -> int:
    # PyTorch's ceil-mode size for kernel = stride = k, no padding (a window must start inside).
    if k == 1:
        return n
    out = -(-(n - k) // k) + 1
    return out - 1 if (out - 1) * k >= n else out


def c3d_feature_shape(
    num_frames: int, img_size: tuple[int, int], channels: int = 512
) -> tuple[int, int, int, int]:
    """The ``(C, T, H, W)`` shape of pool5 for a ``num_frames x H x W`` clip.

    >>> c3d_feature_shape(16, (112, 112))
    (512, 1, 4, 4)
    """
    t, h, w = num_frames, *img_size
    for kt in (1, 2, 2, 2, 2):
        t, h, w = _pooled(t, kt), _pooled(h, 2), _pooled(w, 2)
    return channels, t, h, w


@VIDEO_NETS.register
class c3d(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """C3D: 8 convolutions 3x3x3, 5 max-pools, fc6, fc7 and the classifier (Tran et al. 2015).

    The embedding is fc7's output (after ReLU), the layer before the classifier; the paper's
    video descriptor is fc6, averaged over clips.

    Args:
        in_chans, num_classes, num_frames, img_size: from the data (16 x 112 x 112 in the paper).
        width: multiplies every convolution's channels (0.125 fits a CPU: 8 ... 64 channels).
        fc_width: units of fc6 and fc7 (4096 in the paper).
        dropout: after fc6 and fc7.
        batch_norm: batch norm after every convolution (not in the paper; helps from scratch).

    Shape: ``(B, T, C, H, W) -> (B, num_classes)``.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        width: float = 1.0,
        fc_width: int = 4096,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        size = check_video_args("c3d", in_chans, num_classes, num_frames, img_size)
        if width <= 0 or fc_width < 1:
            raise ConfigError(f"c3d: width must be > 0 and fc_width >= 1, got {width}, {fc_width}")
        check_dropout("c3d", dropout)
        chans = [max(1, round(c * width)) for c in C3D_CHANNELS]
        layers: list[tuple[str, nn.Module]] = []
        c_in, conv = in_chans, iter(chans)
        for name in C3D_LAYERS:
            if name.startswith("pool"):
                k = (1, 2, 2) if name == "pool1" else (2, 2, 2)
                layers.append((name, nn.MaxPool3d(k, k, ceil_mode=True)))
                continue
            c_out = next(conv)
            layers.append((name, nn.Conv3d(c_in, c_out, 3, padding=1, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{name[4:]}", nn.BatchNorm3d(c_out)))
            layers.append((f"relu{name[4:]}", nn.ReLU(inplace=True)))
            c_in = c_out
        self.features = nn.Sequential(OrderedDict(layers))
        shape = c3d_feature_shape(num_frames, size, c_in)
        flat = shape[0] * shape[1] * shape[2] * shape[3]
        self.fc = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(flat, fc_width)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(dropout)),
                    ("fc7", nn.Linear(fc_width, fc_width)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(dropout)),
                ]
            )
        )
        self.in_chans, self.num_frames, self.feature_shape = in_chans, num_frames, shape
        self.img_size = size
        self.num_features = fc_width
        self.reset_classifier(num_classes)

    def forward_features(self, video: Tensor) -> Tensor:
        """pool5's output ``(B, C, T', H', W')`` for clips ``(B, T, C, H, W)``."""
        check_clip("c3d", video, self.in_chans, self.num_frames)
        if tuple(video.shape[-2:]) != self.img_size:
            raise ShapeError(
                f"c3d: frames are {tuple(video.shape[-2:])}, the network was built for "
                f"{self.img_size} (fc6 reads the flattened pool5)"
            )
        return self.features(frames_to_time(video))

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        return self.fc(self.forward_features(video).flatten(1))
