"""Generative models of images: autoencoders (seed 001, eq. 1-2) and variational autoencoders
(Kingma and Welling 2014; Doersch 2016, eq. 3-14), with decoders sized from their encoder."""

from visrep.models.generative.autoencoder import Autoencoder, EncoderDecoder, build_decoder
from visrep.models.generative.decoders import (
    ConvDecoder,
    MLPDecoder,
    feature_shape,
    linear_widths,
    num_stages,
)
from visrep.models.generative.vae import VAE

__all__ = [
    "VAE",
    "Autoencoder",
    "ConvDecoder",
    "EncoderDecoder",
    "MLPDecoder",
    "build_decoder",
    "feature_shape",
    "linear_widths",
    "num_stages",
]
