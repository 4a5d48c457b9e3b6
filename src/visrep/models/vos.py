"""One-shot video object segmentation networks: ReConvNet (Lattari, Ciccone et al., "ReConvNet:
Video Object Segmentation with Spatio-Temporal Features Modulation", CVPR 2018 DAVIS workshop;
seed 000), the OSMN-style modulated network it extends (Yang et al., "Efficient Video Object
Segmentation via Network Modulation", CVPR 2018) and the OSVOS parent network (Caelles et al.,
"One-Shot Video Object Segmentation", CVPR 2017).

Each video is a task (seed 000, model-based meta-learning): ``theta_i = g(D_train_i; phi)`` is
computed from the first frame and its mask by two modulators, with no gradient step at test
time, and conditions the segmentation network through FiLM (``f~ = gamma * f + beta``):

- the VISUAL modulator (:class:`VisualModulator`) reads the first frame's object (its bounding
  box, background zeroed, resized to a fixed crop) with a 2D backbone and outputs one scale
  ``gamma`` per channel of every modulated layer (OSMN Sec. 3.1);
- the SPATIAL modulator (:class:`SpatialModulator`) turns a Gaussian of the previous frame's
  mask (:func:`~visrep.models.layers.film.mask_gaussian`) into per-channel, per-pixel shifts
  ``beta = a_c * G + b_c`` at each modulated layer's resolution (OSMN Sec. 3.2).

The segmentation network (:class:`ModulatedSegmenter`) is a VGG-style encoder (stages of two
3x3 conv + batch norm + ReLU, max-pooled between) with OSVOS's decoder: a 1x1 side output from
every modulated stage, upsampled to the input and fused by a 1x1 convolution. Stages after the
first are modulated (OSMN modulates conv2-conv5 of VGG-16 and leaves conv1). In ReConvNet the
second convolution of the deepest ``recurrent_stages`` is a ConvLSTM cell
(:class:`~visrep.models.layers.ConvLSTMCell`) whose state carries the object's features from
frame to frame, and its output is modulated like the others; the paper does not give its exact
layout at this size, so this is OSMN's network with recurrent deep stages (stated, as the issue
asks, where the paper leaves a detail open). Sizes are CPU-scale (``channels``), trained from
scratch or from a visrep run's backbone for the visual modulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from visrep.errors import ConfigError, ShapeError
from visrep.models.interface import Backbone
from visrep.models.layers.convlstm import ConvLSTMCell
from visrep.models.layers.film import film, gaussian_map, mask_moments
from visrep.models.layers.normalize import Normalize

__all__ = [
    "METHODS",
    "ModulatedSegmenter",
    "SpatialModulator",
    "VisualModulator",
    "VosNet",
    "object_boxes",
]

Method = Literal["reconvnet", "osmn", "osvos"]
METHODS: tuple[str, ...] = ("reconvnet", "osmn", "osvos")
State = tuple[Tensor, Tensor]


def object_boxes(mask: Tensor, margin: float = 0.15) -> Tensor:
    """The bounding box of each mask, grown by ``margin`` of its size on every side, as
    ``(B, 4)`` ``(x1, y1, x2, y2)`` float pixel edges (an empty mask: the whole image).

    >>> m = torch.zeros(1, 10, 10); m[0, 2:4, 5:9] = 1
    >>> object_boxes(m, margin=0.0).tolist()
    [[5.0, 2.0, 9.0, 4.0]]
    """
    if mask.dim() != 3:
        raise ShapeError(f"object_boxes: masks must be (B, H, W), got {tuple(mask.shape)}")
    _, h, w = mask.shape
    on = mask > 0.5
    rows, cols = on.any(2), on.any(1)  # (B, H), (B, W)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    big = max(h, w) + 1
    y1 = torch.where(rows, ar_h, big).amin(1)
    y2 = torch.where(rows, ar_h, -1).amax(1) + 1
    x1 = torch.where(cols, ar_w, big).amin(1)
    x2 = torch.where(cols, ar_w, -1).amax(1) + 1
    box = torch.stack((x1, y1, x2, y2), 1).float()
    empty = ~rows.any(1)
    box[empty] = torch.tensor([0.0, 0.0, w, h], device=mask.device)
    size = torch.stack((box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]), 1).repeat(1, 2)
    grow = torch.tensor([-1.0, -1.0, 1.0, 1.0], device=mask.device) * margin * size
    limit = torch.tensor([w, h, w, h], dtype=torch.float32, device=mask.device)
    return (box + grow).clamp(min=0).minimum(limit)


class VisualModulator(nn.Module):
    """The first frame's object -> one ``gamma`` per channel of each modulated layer.

    Args:
        encoder: a 2D backbone (3 input channels, no classifier) for the object crop.
        channels: the channels of the modulated layers, in order.
        crop_size: the object crop's side, pixels.
        margin: context around the object's box (:func:`object_boxes`).

    The linear output layer starts at zero weight and bias 1, so an untrained modulator is the
    identity (``gamma = 1``).

    Shape: image ``(B, 3, H, W)`` (normalised), mask ``(B, H, W)`` -> ``[(B, C_l)]``.
    """

    def __init__(
        self, encoder: Backbone, channels: Sequence[int], crop_size: int = 64, margin: float = 0.15
    ) -> None:
        super().__init__()
        self.encoder, self.channels = encoder, tuple(int(c) for c in channels)
        self.crop_size, self.margin = crop_size, margin
        self.out = nn.Linear(encoder.num_features, sum(self.channels))
        nn.init.zeros_(self.out.weight)
        nn.init.ones_(self.out.bias)

    def crops(self, image: Tensor, mask: Tensor) -> Tensor:
        """The object crops ``(B, 3, S, S)``: the box around the object, background zeroed
        (the normalised mean colour), resized with ``roi_align``."""
        boxes = object_boxes(mask, self.margin)
        rois = torch.cat((torch.arange(len(boxes), device=boxes.device)[:, None].float(), boxes), 1)
        masked = image * (mask[:, None] > 0.5)
        s = self.crop_size
        return roi_align(masked, rois.to(masked.dtype), (s, s), 1.0, 2, aligned=True)

    def forward(self, image: Tensor, mask: Tensor) -> list[Tensor]:
        z = self.encoder.forward_head(
            self.encoder.forward_features(self.crops(image, mask)), pre_logits=True
        )
        return list(self.out(z).split(self.channels, dim=1))


class SpatialModulator(nn.Module):
    """The previous frame's mask -> per-channel, per-pixel shifts ``beta_l = a_l * G + b_l``
    with ``G`` its Gaussian (:func:`~visrep.models.layers.film.mask_gaussian`) resized to each
    modulated layer (OSMN Sec. 3.2). ``a_l`` and ``b_l`` start at 0 (no shift).

    Args:
        channels: the channels of the modulated layers.
        scale: widens the Gaussian (multiplies the mask's covariance).
        jitter: in training, the centre moves by ``N(0, jitter^2)`` times the object's standard
            deviation per axis and the covariance scales by ``exp(N(0, jitter^2))``: the previous
            mask at test time is a prediction, not the truth (OSMN perturbs its prior so).
    """

    def __init__(self, channels: Sequence[int], scale: float = 1.0, jitter: float = 0.1) -> None:
        super().__init__()
        self.channels, self.scale, self.jitter = tuple(int(c) for c in channels), scale, jitter
        self.a = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in self.channels)
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in self.channels)

    def prior(self, mask: Tensor) -> Tensor:
        """The Gaussian map ``(B, H, W)`` of the masks (perturbed in training)."""
        mass, mu, cov = mask_moments(mask)
        eye = torch.eye(2, dtype=cov.dtype, device=cov.device)
        cov = cov * self.scale + eye
        if self.training and self.jitter > 0:
            std = cov.diagonal(dim1=1, dim2=2).sqrt()
            mu = mu + torch.randn_like(mu) * self.jitter * std
            cov = cov * torch.exp(torch.randn(len(cov), 1, 1, device=cov.device) * self.jitter)
        g = gaussian_map(mu, cov, tuple(mask.shape[-2:]))
        return torch.where((mass > 0)[:, None, None], g, torch.zeros_like(g))

    def forward(self, mask: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
        g = self.prior(mask)[:, None]
        out = []
        for a, b, size in zip(self.a, self.b, sizes, strict=True):
            gl = F.interpolate(g, size=size, mode="area")
            out.append(gl * a[None, :, None, None] + b[None, :, None, None])
        return out


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ModulatedSegmenter(nn.Module):
    """VGG-style encoder with FiLM after every stage but the first, optional ConvLSTM stages,
    and OSVOS's fused side outputs (see the module docstring).

    Args:
        channels: channels per stage (the first stage is not modulated).
        recurrent_stages: stage indices whose second convolution is a ConvLSTM cell.
        side_channels: channels of each side output before fusion.

    Shape: ``step(x (B, 3, H, W), gammas, betas, states)`` -> logits ``(B, 1, H, W)`` and the
    new states; ``H`` and ``W`` divisible by ``2^(len(channels) - 1)``.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 128),
        recurrent_stages: Sequence[int] = (),
        side_channels: int = 16,
    ) -> None:
        super().__init__()
        ch = [int(c) for c in channels]
        if len(ch) < 2 or min(ch) < 1:
            raise ConfigError(f"model.channels needs >= 2 positive stages, got {list(channels)}")
        rec = sorted({int(s) for s in recurrent_stages})
        if any(not 0 < s < len(ch) for s in rec):
            raise ConfigError(
                f"model.recurrent_stages must lie in [1, {len(ch) - 1}] (stage 0 is not "
                f"modulated), got {list(recurrent_stages)}"
            )
        self.channels, self.recurrent = tuple(ch), tuple(rec)
        self.first = nn.ModuleList(_conv(ci, co) for ci, co in zip([3, *ch[:-1]], ch, strict=True))
        self.second = nn.ModuleList(
            ConvLSTMCell(c, c, 3) if i in rec else _conv(c, c) for i, c in enumerate(ch)
        )
        self.side = nn.ModuleList(nn.Conv2d(c, side_channels, 1) for c in ch[1:])
        self.fuse = nn.Conv2d(side_channels * (len(ch) - 1), 1, 1)

    @property
    def modulated_channels(self) -> tuple[int, ...]:
        return self.channels[1:]

    def sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """The resolutions of the modulated stages for an ``(h, w)`` input."""
        return [(h >> i, w >> i) for i in range(1, len(self.channels))]

    def step(
        self,
        x: Tensor,
        gammas: Sequence[Tensor] | None = None,
        betas: Sequence[Tensor] | None = None,
        states: dict[int, State] | None = None,
    ) -> tuple[Tensor, dict[int, State]]:
        """One frame: logits and the ConvLSTM states after it (``states`` None: zeros)."""
        h, w = x.shape[-2:]
        k = 2 ** (len(self.channels) - 1)
        if h % k or w % k:
            raise ShapeError(f"ModulatedSegmenter: input {h}x{w} must be divisible by {k}")
        states = dict(states or {})
        sides = []
        for i, (conv1, conv2) in enumerate(zip(self.first, self.second, strict=True)):
            if i:
                x = F.max_pool2d(x, 2)
            x = conv1(x)
            if i in self.recurrent:
                hc = conv2(x, states.get(i))
                states[i], x = hc, hc[0]
            else:
                x = conv2(x)
            if i:
                g = gammas[i - 1] if gammas is not None else None
                b = betas[i - 1] if betas is not None else None
                x = film(x, g, b)
                side = self.side[i - 1](x)
                sides.append(F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(sides, 1)), states


class VosNet(nn.Module):
    """ReConvNet, the OSMN-style network, or the OSVOS parent network, on whole clips.

    Args:
        method: ``reconvnet`` (modulators + ConvLSTM stages), ``osmn`` (modulators, no
            recurrence: the ablation that shows what recurrence adds) or ``osvos`` (no
            modulation: the parent network, fine-tuned per video at test time by the task).
        segmenter: the segmentation network.
        visual: the visual modulator (None for ``osvos``).
        spatial: the spatial modulator (None for ``osvos``).
        mean, std: the frames' normalisation.

    Shape: ``forward(video (B, T, 3, H, W) in [0, 1], first_mask (B, H, W), masks=None)`` ->
    logits ``(B, T, H, W)``. Frame ``t``'s spatial prior is the previous frame's mask: the given
    ``masks[:, t - 1]`` (training, teacher forcing) or the network's own prediction
    (inference; when that prediction is empty, the last non-empty one, so one missed frame does
    not remove the prior for the rest of the video); frame 0's is its own mask.
    """

    def __init__(
        self,
        method: Method,
        segmenter: ModulatedSegmenter,
        visual: VisualModulator | None,
        spatial: SpatialModulator | None,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"model.method must be one of {list(METHODS)}, got {method!r}")
        if (method == "osvos") != (visual is None and spatial is None):
            raise ConfigError("osvos has no modulators; reconvnet and osmn need both")
        if method == "reconvnet" and not segmenter.recurrent:
            raise ConfigError("reconvnet needs model.recurrent_stages (ConvLSTM stages)")
        if method != "reconvnet" and segmenter.recurrent:
            raise ConfigError(f"{method} has no recurrent stages; model.recurrent_stages: []")
        self.method = method
        self.normalize = Normalize(tuple(mean), tuple(std))
        self.segmenter, self.visual, self.spatial = segmenter, visual, spatial

    def forward(self, video: Tensor, first_mask: Tensor, masks: Tensor | None = None) -> Tensor:
        if video.dim() != 5 or first_mask.shape != (video.shape[0], *video.shape[-2:]):
            raise ShapeError(
                f"VosNet: video (B, T, 3, H, W) and first_mask (B, H, W) expected, got "
                f"{tuple(video.shape)} and {tuple(first_mask.shape)}"
            )
        t, h, w = video.shape[1], video.shape[-2], video.shape[-1]
        frames = self.normalize(video.flatten(0, 1)).view(video.shape)
        first = first_mask.float()
        gammas = self.visual(frames[:, 0], first) if self.visual is not None else None
        sizes = self.segmenter.sizes(h, w)
        prev, states, out = first, None, []
        for i in range(t):
            betas = self.spatial(prev, sizes) if self.spatial is not None else None
            logits, states = self.segmenter.step(frames[:, i], gammas, betas, states)
            out.append(logits[:, 0])
            if i == 0:
                prev = first  # frame 0 is given
            elif masks is not None:
                prev = masks[:, i].float()
            else:  # the own prediction; where it lost the object, the last prior that had it
                pred = (logits[:, 0] > 0).float().detach()
                seen = pred.flatten(1).any(1)[:, None, None]
                prev = torch.where(seen, pred, prev)
        return torch.stack(out, 1)
