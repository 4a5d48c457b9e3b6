"""Data of generative models: 2-d Gaussian mixtures (GAN mode collapse) and unpaired image
domains (CycleGAN)."""

from visrep.data.generative.gaussians import (
    MIXTURES,
    GaussianMixtureDataModule,
    PointDataset,
    mixture_modes,
    mode_names,
    sample_mixture,
)
from visrep.data.generative.unpaired import (
    UnpairedDataset,
    UnpairedImageDataModule,
    UnpairedSampler,
)

__all__ = [
    "MIXTURES",
    "GaussianMixtureDataModule",
    "PointDataset",
    "UnpairedDataset",
    "UnpairedImageDataModule",
    "UnpairedSampler",
    "mixture_modes",
    "mode_names",
    "sample_mixture",
]
