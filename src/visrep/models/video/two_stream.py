"""Two-stream networks (Simonyan & Zisserman 2014, "Two-Stream Convolutional Networks for Action
Recognition in Videos", Sec. 2-3 and Fig. 1; seed 004, "Two-stream networks").

A spatial stream sees RGB frames, a temporal stream a stack of optical flow: the horizontal
and vertical displacement fields of ``L`` consecutive frame pairs as ``2L`` input channels
(eq. 1: channels ``2k - 1`` and ``2k`` hold ``d^x`` and ``d^y`` of pair ``k``), each field minus
its mean vector (Sec. 3.3, "mean flow subtraction", a zero-centring that removes a global camera
translation). The class scores of the two streams are fused late, by averaging their softmax
scores (Sec. 6, "fusion by averaging"); the spatial stream's score of a clip is the average
over its frames, as the paper averages 25 frames at test time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from visrep.errors import ConfigError
from visrep.models.backbones.cnn import small_cnn
from visrep.models.interface import BackboneFactory
from visrep.models.video.nets import (
    VIDEO_NETS,
    VideoNet,
    average_softmax,
    build_2d,
    check_clip,
    check_flow,
    check_video_args,
    fold_frames,
    mixture_log_weights,
)

__all__ = ["stack_flow", "two_stream"]


def stack_flow(flow: Tensor, subtract_mean: bool = True) -> Tensor:
    """The temporal stream's input: ``L`` flow fields as ``2L`` channels, ``d^x_1, d^y_1, d^x_2,
    ...`` (Simonyan & Zisserman 2014, eq. 1), each minus its spatial mean (Sec. 3.3).

    Shape: ``(B, L, 2, H, W) -> (B, 2L, H, W)``.

    >>> f = torch.zeros(1, 2, 2, 1, 2); f[0, 1, 0] = torch.tensor([1.0, 3.0])
    >>> stack_flow(f)[0, :, 0].tolist()
    [[0.0, 0.0], [0.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]
    """
    if subtract_mean:
        flow = flow - flow.mean((-2, -1), keepdim=True)
    return flow.flatten(1, 2)


@VIDEO_NETS.register
class two_stream(VideoNet):  # noqa: N801 (the registered, user-facing name)
    """RGB tower + stacked-flow tower, softmax scores averaged (Simonyan & Zisserman 2014).

    Reads the batch's ``"flow"`` (``uses_flow``): ``(B, L, 2, H, W)`` displacements between
    consecutive frames. Training both towers through the fused score trains them jointly;
    :meth:`forward_streams` gives each stream's logits for separate losses (the paper trains
    the streams separately).

    Args:
        in_chans, num_classes, num_frames, img_size: from the data.
        backbone: the spatial stream (a 2D backbone on every RGB frame).
        flow_backbone: the temporal stream, built with ``2 * flow_frames`` input channels
            (None: the same factory as ``backbone``).
        flow_frames: ``L``, the flow fields stacked (None: ``num_frames - 1``; 10 in the paper).
        subtract_mean_flow: subtract each field's mean vector (Sec. 3.3).
        stream_weights: weights of the spatial and temporal scores in the average.

    Shape: video ``(B, T, C, H, W)``, flow ``(B, L, 2, H, W)`` -> ``(B, num_classes)``.
    """

    uses_flow = True

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        num_frames: int,
        img_size: tuple[int, int],
        backbone: BackboneFactory = small_cnn,
        flow_backbone: BackboneFactory | None = None,
        flow_frames: int | None = None,
        subtract_mean_flow: bool = True,
        stream_weights: Sequence[float] = (1.0, 1.0),
    ) -> None:
        super().__init__()
        size = check_video_args("two_stream", in_chans, num_classes, num_frames, img_size)
        n_flow = num_frames - 1 if flow_frames is None else flow_frames
        if n_flow < 1:
            raise ConfigError(
                f"two_stream: flow_frames must be >= 1 (None needs num_frames >= 2), got "
                f"flow_frames={flow_frames}, num_frames={num_frames}"
            )
        self.rgb = build_2d(backbone, in_chans, num_classes, size)
        self.flow = build_2d(
            flow_backbone or backbone, 2 * n_flow, num_classes, size, "flow_backbone"
        )
        # log(w / sum w), checked once here: forward adds it inside the log-sum-exp, no sync
        log_w = mixture_log_weights(stream_weights, 2, "two_stream: model.net.stream_weights")
        self.register_buffer("log_stream_weights", log_w, persistent=False)
        self.in_chans, self.num_frames, self.flow_frames = in_chans, num_frames, n_flow
        self.subtract_mean_flow = subtract_mean_flow
        self.num_features = self.rgb.num_features + self.flow.num_features
        self.num_classes = num_classes

    def _rgb_features(self, video: Tensor) -> Tensor:
        check_clip("two_stream", video, self.in_chans)
        return self.rgb.forward_features(fold_frames(video))

    def _flow_features(self, flow: Tensor | None) -> Tensor:
        flow = check_flow("two_stream", flow, self.flow_frames)
        return self.flow.forward_features(stack_flow(flow, self.subtract_mean_flow))

    def forward_streams(self, video: Tensor, flow: Tensor | None) -> tuple[Tensor, Tensor]:
        """Spatial-stream logits (the log of its frame-averaged softmax) and temporal-stream
        logits, each ``(B, num_classes)``."""
        b, t = video.shape[:2]
        rgb = self.rgb.forward_head(self._rgb_features(video)).view(b, t, -1)
        return average_softmax(rgb, dim=1), self.flow.forward_head(self._flow_features(flow))

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        if not self.num_classes:  # no classifier: the representation
            return self.embed(video, flow)
        rgb, mot = self.forward_streams(video, flow)
        return average_softmax(
            torch.stack([rgb, mot], 1), dim=1, log_weights=self.log_stream_weights
        )

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        """The spatial stream's frame-averaged pooled features, then the temporal stream's."""
        b, t = video.shape[:2]
        rgb = self.rgb.forward_head(self._rgb_features(video), pre_logits=True)
        mot = self.flow.forward_head(self._flow_features(flow), pre_logits=True)
        return torch.cat([rgb.view(b, t, -1).mean(1), mot], 1)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.rgb.reset_classifier(num_classes)
        self.flow.reset_classifier(num_classes)
