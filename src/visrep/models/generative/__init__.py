"""Generative models of images: autoencoders (seed 001, eq. 1-2) and variational autoencoders
(Kingma and Welling 2014; Doersch 2016, eq. 3-14), with decoders sized from their encoder, and
adversarial generators and discriminators: DCGAN, the WGAN-GP critic, 2-d MLPs and CycleGAN's
networks (Goodfellow et al. 2014; Radford et al. 2016; Gulrajani et al. 2017; Zhu et al. 2017)."""

from visrep.models.generative.autoencoder import Autoencoder, EncoderDecoder, build_decoder
from visrep.models.generative.cyclegan import (
    ImagePool,
    PatchDiscriminator,
    ResnetBlock,
    ResnetGenerator,
)
from visrep.models.generative.decoders import (
    ConvDecoder,
    MLPDecoder,
    feature_shape,
    linear_widths,
    num_stages,
)
from visrep.models.generative.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    check_gan_size,
    dcgan_init_,
    norm2d,
)
from visrep.models.generative.latent import interpolate_latents
from visrep.models.generative.vae import VAE

__all__ = [
    "VAE",
    "Autoencoder",
    "ConvDecoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EncoderDecoder",
    "ImagePool",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "build_decoder",
    "check_gan_size",
    "dcgan_init_",
    "feature_shape",
    "interpolate_latents",
    "linear_widths",
    "norm2d",
    "num_stages",
]
