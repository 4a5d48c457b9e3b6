"""Video networks by name: ``VIDEO_NETS.build(spec, in_chans, num_classes, num_frames, img_size)``.

A :class:`VideoNet` maps a normalised clip ``(B, T, C, H, W)`` (and, for two-stream networks,
the stacked optical flow ``(B, L, 2, H, W)``) to logits ``(B, K)``; :meth:`VideoNet.embed` gives
the representation the classifier reads. Its constructor starts with ``in_chans, num_classes,
num_frames, img_size`` (from the data's :class:`~visrep.data.base.DataSpec`); the rest is its
config, what ``--model.net.OPTION`` sets. Nets built on a 2D backbone take options typed
:data:`~visrep.models.interface.BackboneFactory`, so ``--model.net.backbone resnet18`` works:
:data:`VIDEO_NETS` is a :class:`~visrep.models.registry.NestedRegistry`.

:class:`VideoClassifier` puts the per-channel normalisation inside the model, so clips are
pixels in ``[0, 1]`` (as :class:`~visrep.models.ImageClassifier` does for images).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.layers import Normalize
from visrep.models.registry import NestedRegistry

__all__ = [
    "VIDEO_NETS",
    "VideoClassifier",
    "VideoNet",
    "VideoNetFactory",
    "average_softmax",
    "build_2d",
    "check_clip",
    "check_dropout",
    "check_flow",
    "check_video_args",
    "dry_run",
    "fold_frames",
    "mixture_log_weights",
]


class VideoNet(nn.Module):
    """Base class of the registered video networks.

    Subclasses define ``__init__(in_chans, num_classes, num_frames, img_size, <typed options>)``,
    :meth:`embed` and set ``num_features``, ``num_classes`` and ``classifier`` (the layer from
    the embedding to logits; ``nn.Identity`` when ``num_classes == 0``). Networks whose scores
    are not a function of one pooled embedding (score averaging over frames, two-stream
    late fusion) override :meth:`forward`.

    Attributes:
        uses_flow: the network reads the batch's ``"flow"`` too (two-stream).
    """

    uses_flow: bool = False
    in_chans: int
    num_frames: int
    num_features: int
    num_classes: int
    classifier: nn.Module

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        """The representation before the classifier, ``(B, num_features)``.

        Shape: video ``(B, T, C, H, W)`` normalised; flow ``(B, L, 2, H, W)`` or None.
        """
        raise NotImplementedError

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        """Logits ``(B, num_classes)`` of the clips ``(B, T, C, H, W)``."""
        return self.classifier(self.embed(video, flow))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh linear layer with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        )


def _load_video_nets() -> None:
    import visrep.models.video  # noqa: F401  (registers the built-in video networks)


VIDEO_NETS: NestedRegistry[VideoNet] = NestedRegistry(
    "video network",
    VideoNet,
    leading=("in_chans", "num_classes", "num_frames", "img_size"),
    loader=_load_video_nets,
)

# A video network constructor with its options bound, called with
# (in_chans, num_classes, num_frames, img_size) once the data is known.
VideoNetFactory = Callable[[int, int, int, tuple[int, int]], VideoNet]


def check_video_args(
    name: str, in_chans: int, num_classes: int, num_frames: int, img_size: Sequence[int] | int
) -> tuple[int, int]:
    """Validate the leading arguments of a video network; return ``img_size`` as ``(H, W)``."""
    if in_chans < 1:
        raise ConfigError(f"{name}: in_chans must be >= 1, got {in_chans}")
    if num_classes < 0:
        raise ConfigError(f"{name}: num_classes must be >= 0, got {num_classes}")
    if num_frames < 1:
        raise ConfigError(f"{name}: num_frames must be >= 1, got {num_frames}")
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"{name}: img_size must be (H, W) with H, W >= 1, got {img_size}")
    return int(size[0]), int(size[1])


def check_clip(name: str, video: Tensor, in_chans: int, num_frames: int | None = None) -> None:
    """Raise a ``ShapeError`` unless ``video`` is ``(B, T, in_chans, H, W)`` (``T == num_frames``
    when given)."""
    if video.dim() != 5 or video.shape[2] != in_chans:
        raise ShapeError(
            f"{name}: video has shape {tuple(video.shape)}, expected (B, T, {in_chans}, H, W)"
        )
    if num_frames is not None and video.shape[1] != num_frames:
        raise ShapeError(
            f"{name}: video has {video.shape[1]} frames, the network was built for {num_frames}"
        )


def check_flow(name: str, flow: Tensor | None, num_flow: int | None = None) -> Tensor:
    """Return ``flow`` after checking it is ``(B, L, 2, H, W)`` (``L == num_flow`` when given)."""
    if flow is None:
        raise ShapeError(f"{name}: this network needs the batch's 'flow' (B, L, 2, H, W), got None")
    if flow.dim() != 5 or flow.shape[2] != 2:
        raise ShapeError(f"{name}: flow has shape {tuple(flow.shape)}, expected (B, L, 2, H, W)")
    if num_flow is not None and flow.shape[1] != num_flow:
        raise ShapeError(
            f"{name}: flow has {flow.shape[1]} fields, the network was built for {num_flow}"
        )
    return flow


def fold_frames(video: Tensor) -> Tensor:
    """Fold the frames into the batch: ``(B, T, C, H, W) -> (B * T, C, H, W)`` (a view).

    >>> fold_frames(torch.zeros(2, 3, 1, 4, 4)).shape
    torch.Size([6, 1, 4, 4])
    """
    return video.flatten(0, 1)


def mixture_log_weights(
    weights: Sequence[float] | Tensor, n: int, option: str = "weights"
) -> Tensor:
    """Check ``n`` non-negative weights, not all zero, and return ``log(w / sum(w))`` ``(n,)``.

    The check reads the values on the host, so it belongs at construction; the result goes to
    :func:`average_softmax` (``log_weights``), which then never syncs with the device.

    Raises:
        ConfigError: not ``n`` numbers, a negative one, or all zero (``option`` names them).

    >>> mixture_log_weights([1.0, 3.0], 2).exp()
    tensor([0.2500, 0.7500])
    """
    w = [float(v) for v in (weights.tolist() if isinstance(weights, Tensor) else weights)]
    if len(w) != n or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(f"{option} must be {n} non-negative numbers, not all 0, got {w}")
    total = sum(w)
    return torch.tensor([math.log(v / total) if v > 0 else -math.inf for v in w])


def average_softmax(logits: Tensor, dim: int = 1, log_weights: Tensor | None = None) -> Tensor:
    """Late fusion of class scores: the log of the (weighted) mean of the softmax scores over
    ``dim``, so that ``softmax`` of the result is that mean and cross-entropy reads it directly.

    This is how frame scores (Karpathy et al. 2014, Sec. 4.1: "averaging individual clip
    predictions"), the two streams of Simonyan & Zisserman 2014 (Sec. 6, fusion by averaging)
    and the K clips of a video are combined. Computed as a log-sum-exp, so it never underflows:
    ``log sum_n w_n softmax(l_n) = logsumexp_n(log softmax(l_n) + log w_n)``.

    Args:
        logits: scores with the items to average along ``dim``.
        dim: the dimension averaged out.
        log_weights: optional ``log`` of normalised weights ``(N,)`` of the items, from
            :func:`mixture_log_weights` (checked there, once; None: the plain mean).

    Shape: ``(B, N, K) -> (B, K)`` for ``dim=1``.

    >>> x = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    >>> average_softmax(x).exp()
    tensor([[0.6904, 0.3096]])
    """
    logp = F.log_softmax(logits, dim=-1)
    n = logits.shape[dim]
    if log_weights is None:
        return torch.logsumexp(logp, dim=dim) - math.log(n)
    if log_weights.shape != (n,):
        raise ShapeError(
            f"average_softmax: log_weights has shape {tuple(log_weights.shape)}, expected ({n},)"
        )
    shape = [1] * logp.dim()
    shape[dim] = n
    return torch.logsumexp(logp + log_weights.to(logp.dtype).view(shape), dim=dim)


def check_dropout(name: str, dropout: float) -> None:
    """Raise a ``ConfigError`` unless ``0 <= dropout < 1`` (``name``: the network)."""
    if not 0 <= dropout < 1:
        raise ConfigError(f"{name}: model.net.dropout must be in [0, 1), got {dropout}")


def build_2d(
    factory: BackboneFactory,
    in_chans: int,
    num_classes: int,
    img_size: tuple[int, int],
    option: str = "backbone",
) -> Backbone:
    """The 2D backbone ``factory(in_chans, num_classes, img_size)``, checked to be a Backbone."""
    net = factory(in_chans, num_classes, img_size)
    if not isinstance(net, Backbone):
        raise ConfigError(f"model.net.{option} must build a Backbone, got {type(net).__name__}")
    return net


def dry_run(module: nn.Module, fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """``fn(*inputs)`` in eval mode without gradients (to learn shapes at construction); the
    module's train / eval flags are restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            return fn(*inputs)
    finally:
        for m, mode in modes:
            m.training = mode


class VideoClassifier(nn.Module):
    """A video network with the input normalisation inside: clips are pixels in ``[0, 1]``.

    The clip is normalised per channel; the flow (pixels) is divided by ``flow_scale`` and passed
    through. Any leading dimensions beyond the batch (a test-time ``(B, K, T, C, H, W)`` of K
    clips per video) are folded into the batch and restored on the logits, one vectorised call.

    Args:
        net: the :class:`VideoNet`.
        mean, std: per-channel statistics of the clips.
        flow_scale: divides the flow (pixels) so its values are of order one.

    Shape: video ``(..., T, C, H, W)``, flow ``(..., L, 2, H, W)`` -> ``(..., num_classes)``.
    """

    def __init__(
        self,
        net: VideoNet,
        mean: Sequence[float],
        std: Sequence[float],
        flow_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if flow_scale <= 0:
            raise ConfigError(f"VideoClassifier: flow_scale must be > 0, got {flow_scale}")
        self.normalize = Normalize(mean, std)
        self.net = net
        self.flow_scale = float(flow_scale)

    @property
    def uses_flow(self) -> bool:
        return self.net.uses_flow

    def _inputs(self, video: Tensor, flow: Tensor | None) -> tuple[Tensor, Tensor | None, tuple]:
        if video.dim() < 5:
            raise ShapeError(
                f"VideoClassifier: video has shape {tuple(video.shape)}, expected (B, T, C, H, W)"
            )
        lead = tuple(video.shape[:-4])
        clips = video.reshape(-1, *video.shape[-4:])
        # Normalise (B', T, C, H, W) as (B' T, C, H, W): channel statistics apply per frame.
        clips = self.normalize(clips.flatten(0, 1)).view(clips.shape)
        if flow is not None:
            if tuple(flow.shape[:-4]) != lead:
                raise ShapeError(
                    f"VideoClassifier: flow has shape {tuple(flow.shape)}, expected leading "
                    f"dimensions {lead} as the video's"
                )
            flow = flow.reshape(-1, *flow.shape[-4:]) / self.flow_scale
        return clips, flow, lead

    def embed(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        """The representation ``(..., num_features)`` of pixel-space clips."""
        clips, flow, lead = self._inputs(video, flow)
        z = self.net.embed(clips, flow)
        return z.view(*lead, z.shape[-1])

    def forward(self, video: Tensor, flow: Tensor | None = None) -> Tensor:
        clips, flow, lead = self._inputs(video, flow)
        logits = self.net(clips, flow)
        return logits.view(*lead, logits.shape[-1])
