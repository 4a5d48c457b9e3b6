"""DETR: a CNN, a transformer encoder-decoder and a set of learned object queries.

Carion, Massa, Synnaeve, Usunier, Kirillov and Zagoruyko 2020, "End-to-End Object Detection
with Transformers" (ECCV; seed 004). Detection as direct set prediction (Sec. 3, Fig. 2):

1. A backbone maps the batch to its last feature level ``(B, C, H / s, W / s)`` (paper: ResNet
   conv5, ``s = 32``); a ``1x1`` convolution projects it to ``d`` channels and the map is
   flattened to ``HW / s^2`` tokens.
2. A post-norm transformer encoder (self-attention + FFN, LayerNorm after each residual) reads
   the tokens; the fixed 2D sine positional encoding (:func:`sine_position_encoding`) is added
   to the queries and keys of every attention layer, not to the values (Sec. A.3, Fig. 10).
3. A decoder takes ``N`` learned object queries (``num_queries``), which are the positional
   encodings of its input (the input itself starts at zero), and decodes them in parallel:
   self-attention among the queries, cross-attention to the encoder's memory, FFN. A shared
   LayerNorm normalises every decoder layer's output.
4. Shared heads map each decoder output to ``num_classes + 1`` class logits (the last is "no
   object") and, by a 3-layer MLP with ReLU and a sigmoid, to a box ``(cx, cy, w, h)`` relative
   to the (unpadded) image.

Training matches the ``N`` predictions to the true objects with the Hungarian algorithm
(:mod:`~visrep.models.detection.matcher`, eq. 1) and minimises the Hungarian loss of eq. 2 with
auxiliary losses after every decoder layer (:mod:`visrep.losses.detection`). At inference each
query gives one detection: the most probable real class, its probability as the score, and its
box in the input image's pixels (no NMS; all ``N`` are returned, as the paper evaluates them).

Batching (Sec. A.4 of the paper): images of different sizes are zero-padded to the batch's
largest (rounded up to a multiple of the backbone stride); the padded positions are masked out
of every attention as keys, and the positional encoding is normalised by each image's unpadded
extent, so the transformer and heads do not see the padding. The CNN does see it (as in the
paper): only a backbone without cross-position operations would make the whole detector exactly
independent of the batch's other images.

Defaults are sized for a CPU (paper's in brackets): ResNet-18 from scratch [ResNet-50 on
ImageNet], ``d = 128`` [256], 3 + 3 layers [6 + 6], FFN 512 [2048], 8 heads, dropout 0.1,
100 queries, images resized so their shorter side is 384 pixels and the longer at most 512
[800 / 1333]. The paper also trains with AdamW (1e-4, backbone 1e-5) and gradient clipping at
0.1 (``--trainer.gradient_clip_val 0.1``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.losses.detection import SetCriterion
from visrep.models.detection.base import DETECTORS, Detection, Detector, Target
from visrep.models.detection.matcher import HungarianMatcher
from visrep.models.detection.pyramid import detection_encoder
from visrep.models.interface import BackboneFactory

__all__ = [
    "DETRTransformer",
    "DecoderLayer",
    "EncoderLayer",
    "PositionEmbeddingSine",
    "detr",
    "sine_position_encoding",
]


def sine_position_encoding(
    mask: Tensor, num_pos_feats: int = 64, temperature: float = 10000.0, scale: float = 2 * math.pi
) -> Tensor:
    """DETR's 2D sine positional encoding, normalised by each image's unpadded extent.

    The transformer's sinusoids (Vaswani et al. 2017, Sec. 3.5) applied to the row and the
    column coordinate separately, each over ``num_pos_feats`` channels (half of ``d``), the
    ``y`` half first (Carion et al. 2020, Sec. A.3). Coordinates count the unpadded positions
    (1-based) and are divided by the image's number of unpadded rows / columns, then scaled to
    ``[0, scale]``, so a position's code does not depend on how much padding follows it.

    Args:
        mask: ``(B, H, W)`` bool, True at padding.
        num_pos_feats: channels per coordinate (even).
        temperature: the wavelength base (10000).
        scale: the range of the normalised coordinates.

    Returns:
        ``(B, 2 * num_pos_feats, H, W)``.

    >>> pos = sine_position_encoding(torch.zeros(1, 2, 3, dtype=torch.bool), num_pos_feats=4)
    >>> pos.shape, float(pos[0, 1, 1, 0])  # cos(2 pi * 2 / 2) in the second y channel
    (torch.Size([1, 8, 2, 3]), 1.0)
    """
    if mask.dim() != 3 or mask.dtype != torch.bool:
        raise ShapeError(f"sine_position_encoding: mask must be bool (B, H, W), got {mask.shape}")
    if num_pos_feats < 2 or num_pos_feats % 2:
        raise ConfigError(f"num_pos_feats must be even and >= 2, got {num_pos_feats}")
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    i = torch.arange(num_pos_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_pos_feats)
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingSine(nn.Module):
    """Module form of :func:`sine_position_encoding` (``d = 2 * num_pos_feats`` channels)."""

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats, self.temperature = num_pos_feats, temperature

    def forward(self, mask: Tensor) -> Tensor:
        return sine_position_encoding(mask, self.num_pos_feats, self.temperature)


class _FFN(nn.Module):
    """The transformer's position-wise feed-forward block ``Linear -> ReLU -> Linear``."""

    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Post-norm encoder layer with the positional encoding added to queries and keys.

    ``x = LN(x + Drop(SelfAttn(q = k = x + pos, v = x)))``, then ``x = LN(x + Drop(FFN(x)))``;
    torch's ``TransformerEncoderLayer`` attends with ``q = k = v`` and cannot add ``pos`` to
    queries and keys only, which DETR does at every layer.

    Shape: ``x``, ``pos`` ``(B, T, d)``; ``key_padding_mask`` ``(B, T)`` True at padding.
    """

    def __init__(self, d: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _FFN(d, dim_feedforward, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        qk = x + pos
        a = self.self_attn(qk, qk, x, key_padding_mask=key_padding_mask, need_weights=False)[0]
        x = self.norm1(x + self.dropout1(a))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Post-norm decoder layer: query self-attention, cross-attention to the memory, FFN.

    Self-attention: ``q = k = x + query_pos``, ``v = x``; cross-attention: ``q = x + query_pos``,
    ``k = memory + pos``, ``v = memory`` (padded memory positions masked); each followed by
    dropout, the residual and a LayerNorm.

    Shape: ``x``, ``query_pos`` ``(B, N, d)``; ``memory``, ``pos`` ``(B, T, d)``.
    """

    def __init__(self, d: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _FFN(d, dim_feedforward, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        qk = x + query_pos
        a = self.self_attn(qk, qk, x, need_weights=False)[0]
        x = self.norm1(x + self.dropout1(a))
        a = self.cross_attn(
            x + query_pos, memory + pos, memory,
            key_padding_mask=memory_key_padding_mask, need_weights=False,
        )[0]  # fmt: skip
        x = self.norm2(x + self.dropout2(a))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class DETRTransformer(nn.Module):
    """DETR's encoder-decoder (module docstring, steps 2-3), returning every decoder layer.

    Args:
        d: model width.
        num_heads: attention heads.
        num_encoder_layers, num_decoder_layers: layer counts.
        dim_feedforward: FFN width.
        dropout: dropout in attention and FFN.

    Shape: ``src``, ``pos`` ``(B, T, d)``, ``mask`` ``(B, T)`` (True at padding),
    ``query_pos`` ``(N, d)`` -> ``(L, B, N, d)``, the LayerNorm-ed output of each decoder layer.
    """

    def __init__(
        self,
        d: int,
        num_heads: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        dim_feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            EncoderLayer(d, num_heads, dim_feedforward, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d, num_heads, dim_feedforward, dropout) for _ in range(num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        for p in self.parameters():  # the authors' initialisation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        memory = src
        for layer in self.encoder:
            memory = layer(memory, pos, mask)
        query_pos = query_pos[None].expand(src.shape[0], -1, -1)
        x = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder:
            x = layer(x, memory, pos, query_pos, mask)
            outputs.append(self.decoder_norm(x))
        return torch.stack(outputs)


def _mlp(d: int, out: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(d, d if i < layers - 1 else out))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def _positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")


@DETECTORS.register
class detr(Detector):  # noqa: N801 (the registered, user-facing name)
    """DETR (Carion et al. 2020): set prediction with a transformer; see the module docstring.

    Args:
        in_chans: input channels.
        num_classes: object classes (no background; "no object" is added internally).
        backbone: the CNN, any registered backbone with ``feature_info``; its last level is
            used (default ``resnet18``, from scratch).
        pretrained_path: the backbone's weights: a visrep run or ``.ckpt``, or a state dict.
        frozen_bn: replace the backbone's batch norms by frozen ones (paper, with ImageNet
            weights; from scratch keep them trainable).
        hidden_dim: transformer width ``d`` (paper: 256).
        num_heads: attention heads (paper: 8); must divide ``hidden_dim``.
        num_encoder_layers, num_decoder_layers: paper: 6 and 6.
        dim_feedforward: FFN width (paper: 2048).
        dropout: transformer dropout (paper: 0.1).
        num_queries: object queries ``N``, the most objects one image can hold (paper: 100).
        aux_loss: add the loss after every decoder layer (Sec. 3.2).
        eos_coef: weight of the "no object" class in the cross-entropy (paper: 0.1).
        cost_class, cost_bbox, cost_giou: matching cost weights (paper: 1, 5, 2).
        ce_weight, bbox_weight, giou_weight: loss weights (paper: 1, 5, 2).
        min_size: resize each image so its shorter side is ``min_size`` pixels, unless its
            longer would then exceed ``max_size`` (then that is ``max_size``); several sizes:
            in training each image takes one at random (the paper's scale augmentation, 480 to
            800), in evaluation the last; None: keep the input size. Boxes come back in the
            input image's pixels either way.
        max_size: see ``min_size``.
        score_thresh: detections below this score are dropped (0: all ``N`` per image).

    >>> from functools import partial
    >>> from visrep.models.backbones.cnn import small_cnn
    >>> m = detr(3, 2, backbone=partial(small_cnn, channels=(8, 16)), hidden_dim=16,
    ...          num_heads=2, num_queries=5, min_size=None).eval()
    >>> out = m([torch.rand(3, 32, 24), torch.rand(3, 16, 40)])
    >>> out[1]["boxes"].shape, bool(out[1]["boxes"][:, 2].max() <= 40)
    (torch.Size([5, 4]), True)
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        backbone: BackboneFactory | None = None,
        pretrained_path: str | None = None,
        frozen_bn: bool = False,
        hidden_dim: int = 128,
        num_heads: int = 8,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        num_queries: int = 100,
        aux_loss: bool = True,
        eos_coef: float = 0.1,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        ce_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        min_size: int | tuple[int, ...] | None = 384,
        max_size: int = 512,
        score_thresh: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        _positive(
            num_classes=num_classes, hidden_dim=hidden_dim, num_heads=num_heads,
            num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
            num_queries=num_queries, max_size=max_size,
        )  # fmt: skip
        sizes = (
            None if min_size is None
            else tuple(min_size) if isinstance(min_size, list | tuple) else (min_size,)
        )  # fmt: skip
        if sizes is not None:
            if not sizes:
                raise ConfigError("min_size must be a size, a list of sizes or None, got []")
            for i, v in enumerate(sizes):
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ConfigError(f"min_size[{i}] must be a positive int, got {v!r}")
        if hidden_dim % num_heads:
            raise ConfigError(f"num_heads ({num_heads}) must divide hidden_dim ({hidden_dim})")
        if hidden_dim % 4:
            raise ConfigError(
                f"hidden_dim must be a multiple of 4 (the 2D sine encoding gives each axis "
                f"hidden_dim / 2 features in sin/cos pairs), got {hidden_dim}"
            )
        if num_encoder_layers < 0:
            raise ConfigError(f"num_encoder_layers must be >= 0, got {num_encoder_layers}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if not 0 <= score_thresh <= 1:
            raise ConfigError(f"score_thresh must be in [0, 1], got {score_thresh}")
        self.encoder = detection_encoder(backbone, in_chans, pretrained_path, frozen_bn)
        info = self.encoder.feature_info
        self.level = len(info) - 1
        self.stride = int(info[self.level]["reduction"])
        self.input_proj = nn.Conv2d(int(info[self.level]["num_chs"]), hidden_dim, 1)
        self.position = PositionEmbeddingSine(hidden_dim // 2)
        self.transformer = DETRTransformer(
            hidden_dim, num_heads, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout
        )
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = _mlp(hidden_dim, 4, 3)
        self.criterion = SetCriterion(
            HungarianMatcher(cost_class, cost_bbox, cost_giou),
            eos_coef, ce_weight, bbox_weight, giou_weight, aux_loss,
        )  # fmt: skip
        self.num_queries = num_queries
        self.min_size, self.max_size, self.score_thresh = sizes, max_size, score_thresh

    def _resized(self, image: Tensor) -> Tensor:
        if self.min_size is None:
            return image
        short = self.min_size[-1]
        if self.training and len(self.min_size) > 1:  # torchvision's choice, the global RNG
            short = self.min_size[int(torch.randint(len(self.min_size), ()))]
        h, w = image.shape[-2:]
        scale = min(short / min(h, w), self.max_size / max(h, w))
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size == (h, w):
            return image
        return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]

    def batch_images(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Resize, then zero-pad to the batch's largest size rounded up to the backbone stride.

        Returns:
            ``(B, C, H, W)`` images and the ``(B, H, W)`` padding mask (True at padding).
        """
        if not images:
            raise ShapeError("detr: no images given")
        for i, im in enumerate(images):
            if im.dim() != 3 or im.shape[0] != self.in_chans or min(im.shape[1:]) < 1:
                raise ShapeError(
                    f"detr: image {i} must be ({self.in_chans}, H, W), got {tuple(im.shape)}"
                )
        resized = [self._resized(im) for im in images]
        s = self.stride
        hp = -(-max(im.shape[1] for im in resized) // s) * s
        wp = -(-max(im.shape[2] for im in resized) // s) * s
        x = resized[0].new_zeros(len(resized), self.in_chans, hp, wp)
        mask = torch.ones(len(resized), hp, wp, dtype=torch.bool, device=x.device)
        for i, im in enumerate(resized):
            x[i, :, : im.shape[1], : im.shape[2]] = im
            mask[i, : im.shape[1], : im.shape[2]] = False
        return x, mask

    def forward_transformer(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Steps 1-4 of the module docstring after the backbone.

        Args:
            features: ``(B, C, h, w)`` the backbone's last level.
            mask: ``(B, h, w)`` True at padding.

        Returns:
            Class logits ``(L, B, N, num_classes + 1)`` and boxes ``(L, B, N, 4)`` (normalised
            ``(cx, cy, w, h)``), for each of the ``L`` decoder layers.
        """
        src = self.input_proj(features)
        pos = self.position(mask).to(src.dtype).flatten(2).transpose(1, 2)
        hs = self.transformer(
            src.flatten(2).transpose(1, 2), mask.flatten(1), pos, self.query_embed.weight
        )
        return self.class_embed(hs), self.bbox_embed(hs).sigmoid()

    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> dict[str, Tensor] | list[Detection]:
        x, mask = self.batch_images(images)
        features = self.encoder.forward_intermediates(x, indices=[self.level])[0]
        mask = F.interpolate(mask[None].float(), size=features.shape[-2:])[0].bool()
        logits, boxes = self.forward_transformer(features, mask)
        sizes = torch.tensor([(im.shape[2], im.shape[1]) for im in images], device=boxes.device)
        scale = sizes.repeat(1, 2).to(boxes.dtype)  # (B, 4): w, h, w, h of the input images
        if targets is not None:
            return self.criterion(logits, boxes, self._normalised(targets, scale))
        return self._detections(logits[-1], boxes[-1], scale)

    def _normalised(self, targets: list[Target], scale: Tensor) -> list[Target]:
        """Targets with ``(cx, cy, w, h)`` boxes relative to their image (the loss's frame)."""
        if len(targets) != len(scale):
            raise ShapeError(f"detr: {len(scale)} images but {len(targets)} targets")
        out = []
        for i, t in enumerate(targets):
            boxes = t["boxes"].as_subclass(Tensor)
            labels = t["labels"].as_subclass(Tensor).long()
            if labels.dim() != 1 or boxes.shape != (len(labels), 4):
                raise ShapeError(
                    f"detr: target {i} needs boxes (M, 4) and labels (M,), got "
                    f"{tuple(boxes.shape)} and {tuple(labels.shape)}"
                )
            if len(labels) > self.num_queries:
                raise DataError(
                    f"detr: image {i} has {len(labels)} objects, more than num_queries="
                    f"{self.num_queries} (one query per object); raise num_queries"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DataError(
                    f"detr: target {i} labels must be in 0..{self.num_classes - 1}, got "
                    f"{labels.min().item()}..{labels.max().item()}"
                )
            rel = box_convert(boxes.to(scale) / scale[i], "xyxy", "cxcywh")
            out.append({"boxes": rel, "labels": labels.to(scale.device)})
        return out

    def _detections(self, logits: Tensor, boxes: Tensor, scale: Tensor) -> list[Detection]:
        prob = logits.softmax(-1)[..., :-1]
        scores, labels = prob.max(-1)
        xyxy = box_convert(boxes, "cxcywh", "xyxy") * scale[:, None]
        xyxy = torch.minimum(xyxy.clamp(min=0), scale[:, None])  # inside the image
        keep = scores >= self.score_thresh
        return [
            {"boxes": xyxy[i][keep[i]], "scores": scores[i][keep[i]], "labels": labels[i][keep[i]]}
            for i in range(len(scores))
        ]
