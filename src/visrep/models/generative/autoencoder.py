"""Autoencoders: ``code <- f(x; Theta_1)``, ``x' <- g(code; Theta_2)`` (seed 001, eq. 1-2).

:class:`EncoderDecoder` is what an autoencoder and a VAE share: the input normalisation, any
registered backbone as the encoder (its unpooled ``forward_features``, flattened, or its pooled
features), and a decoder sized from the encoder's feature map
(:mod:`visrep.models.generative.decoders`). :class:`Autoencoder` adds the linear bottleneck to
``code_size`` and a sigmoid on the decoder, so reconstructions are pixels in [0, 1] and eq. 1 is
the squared error in pixel space. Usable without Lightning; :class:`visrep.tasks.AutoencoderTask`
trains it (with the denoising and sparsity constraints of Vincent et al. 2008 and an L1 code
penalty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.generative.decoders import (
    ConvDecoder,
    DecoderKind,
    MLPDecoder,
    as_hw,
    feature_shape,
    linear_widths,
)
from visrep.models.layers import Normalize

__all__ = ["Autoencoder", "EncoderDecoder", "build_decoder"]

# the first map of a convolutional decoder behind a flat (non-spatial) encoder
_FLAT_START_CHANS, _FLAT_START_REDUCTION = 64, 4


def build_decoder(
    kind: DecoderKind,
    code_size: int,
    out_chans: int,
    out_size: tuple[int, int],
    features: tuple[int, ...],
    encoder: nn.Module | None = None,
    hidden: Sequence[int] | None = None,
) -> nn.Module:
    """The decoder of ``kind`` for an encoder whose features have shape ``features``.

    ``transposed`` / ``upsample``: a :class:`ConvDecoder` starting from the encoder's
    ``(C, h, w)`` map; behind a flat encoder (features ``(D,)``) it starts from a
    ``(64, ceil(H / 4), ceil(W / 4))`` map. ``mlp``: an :class:`MLPDecoder` whose hidden widths
    are ``hidden``, or by default the encoder's linear widths in reverse (an ``mlp`` backbone's
    mirror; none for a convolutional encoder: a linear decoder).
    """
    if kind == "mlp":
        widths = list(hidden) if hidden is not None else linear_widths(encoder)[::-1]
        return MLPDecoder(code_size, out_chans, out_size, widths)
    if kind not in ("transposed", "upsample"):
        raise ConfigError(f"decoder must be transposed, upsample or mlp, got {kind!r}")
    if len(features) == 3:
        chans, size = features[0], features[1:]
    else:
        chans = _FLAT_START_CHANS
        size = tuple(math.ceil(s / _FLAT_START_REDUCTION) for s in out_size)
    return ConvDecoder(code_size, out_chans, out_size, chans, size, kind)


class EncoderDecoder(nn.Module):
    """Normalisation, a backbone encoder and a decoder sized from it; the shared base of
    :class:`Autoencoder` and :class:`~visrep.models.generative.vae.VAE`.

    Args:
        encoder: a backbone (``forward_features``; built without a classifier).
        mean, std: per-channel statistics of the training images (inputs are pixels in [0, 1]).
        in_chans: image channels.
        image_size: ``(H, W)`` of the images.
        code_size: length of the code the decoder reads.
        decoder: ``transposed``, ``upsample`` or ``mlp`` (see :func:`build_decoder`).
        pool: read the encoder's pooled features (``forward_head(z, pre_logits=True)``) instead
            of its flattened feature map (the default keeps the spatial layout).
        decoder_hidden: hidden widths of an ``mlp`` decoder (default: the encoder's mirror).
    """

    def __init__(
        self,
        encoder: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int,
        image_size: int | Sequence[int],
        code_size: int,
        decoder: DecoderKind = "transposed",
        pool: bool = False,
        decoder_hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if code_size < 1:
            raise ConfigError(f"the code (latent) size must be >= 1, got {code_size}")
        self.normalize = Normalize(mean, std)
        self.encoder = encoder
        self.in_chans, self.image_size = in_chans, as_hw(image_size, "image_size")
        self.code_size, self.pool = code_size, pool
        shape = feature_shape(encoder, in_chans, self.image_size)
        self.num_features = int(encoder.num_features) if pool else math.prod(shape)
        self.decoder = build_decoder(
            decoder, code_size, in_chans, self.image_size, shape, encoder, decoder_hidden
        )

    def features(self, x: Tensor) -> Tensor:
        """The encoder's features of pixel-space images, flat: ``(B, num_features)``."""
        want = (self.in_chans, *self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ShapeError(
                f"{type(self).__name__} expects images (B, {', '.join(map(str, want))}), got "
                f"{tuple(x.shape)}"
            )
        z = self.encoder.forward_features(self.normalize(x))
        return self.encoder.forward_head(z, pre_logits=True) if self.pool else z.flatten(1)

    def check_code(self, code: Tensor) -> None:
        if code.dim() != 2 or code.shape[1] != self.code_size:
            raise ShapeError(
                f"{type(self).__name__} decodes codes (B, {self.code_size}), got "
                f"{tuple(code.shape)}"
            )


class Autoencoder(EncoderDecoder):
    """``x' = sigmoid(g(f(x)))`` with a linear bottleneck ``f = Linear o encoder`` (eq. 1-2).

    Args:
        encoder, mean, std, in_chans, image_size, decoder, pool, decoder_hidden: see
            :class:`EncoderDecoder`.
        code_size: the bottleneck: length of the code.

    Shape: ``(B, C, H, W)`` in [0, 1] -> codes ``(B, code_size)`` -> reconstructions
    ``(B, C, H, W)`` in [0, 1].

    >>> from visrep.models import create_backbone
    >>> enc = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8))
    >>> ae = Autoencoder(enc, [0.5], [0.3], 1, (8, 8), code_size=3)
    >>> ae.encode(torch.zeros(2, 1, 8, 8)).shape, ae(torch.zeros(2, 1, 8, 8)).shape
    (torch.Size([2, 3]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int,
        image_size: int | Sequence[int],
        code_size: int = 32,
        decoder: DecoderKind = "transposed",
        pool: bool = False,
        decoder_hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            encoder, mean, std, in_chans, image_size, code_size, decoder, pool, decoder_hidden
        )
        self.to_code = nn.Linear(self.num_features, code_size)

    def encode(self, x: Tensor) -> Tensor:
        """``code = f(x; Theta_1)``, ``(B, code_size)`` (eq. 2)."""
        return self.to_code(self.features(x))

    def decode(self, code: Tensor) -> Tensor:
        """``x' = g(code; Theta_2)``: images ``(B, C, H, W)`` in [0, 1] (eq. 2)."""
        self.check_code(code)
        return torch.sigmoid(self.decoder(code))

    def embed(self, x: Tensor) -> Tensor:
        """The code of ``x``: the embedding ``visrep embed`` writes."""
        return self.encode(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
