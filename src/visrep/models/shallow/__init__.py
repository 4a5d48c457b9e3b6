"""Shallow image representations of seed 002: dense SIFT, bags of visual words, Fisher vectors.

Seed 002 (``002_76ecbe4541422b7d.txt``, "Bag of Visual Words (BoVW)" and "ILSVRC11 winning
entry": dense SIFT at 3 scales, 1,000 k-means words from 1 million descriptors, histograms, a
linear SVM; Perronnin et al., ECCV 2010) describes the pipeline of the pre-2012 classifiers:
local descriptors (:class:`DenseSift`), a codebook learnt on them (:class:`Codebook`, k-means;
or :class:`FisherEncoder`, a diagonal GMM) and one fixed-length vector per image for a linear
classifier.

>>> import torch
>>> images = torch.rand(4, 3, 32, 32)
>>> desc, pos = DenseSift(step=8).describe(images)
>>> book = Codebook(num_words=8, pyramid=(1, 2)).fit(desc)
>>> tuple(book.encode(desc, pos, image_size=(32, 32)).shape)
(4, 40)
"""

from visrep.models.shallow.bovw import (
    Codebook,
    bovw_histograms,
    gap_sigma,
    hard_assign,
    lazebnik_weights,
    normalise,
    pad_descriptors,
    pyramid_cells,
    soft_assign,
    squared_distances,
)
from visrep.models.shallow.fisher import FisherEncoder, fisher_vectors, gmm_log_posteriors
from visrep.models.shallow.sift import (
    DenseSift,
    dense_keypoints,
    dense_sift,
    root_sift,
    sift_octave,
    to_gray_uint8,
)

__all__ = [
    "Codebook",
    "DenseSift",
    "FisherEncoder",
    "bovw_histograms",
    "dense_keypoints",
    "dense_sift",
    "fisher_vectors",
    "gap_sigma",
    "gmm_log_posteriors",
    "hard_assign",
    "lazebnik_weights",
    "normalise",
    "pad_descriptors",
    "pyramid_cells",
    "root_sift",
    "sift_octave",
    "soft_assign",
    "squared_distances",
    "to_gray_uint8",
]
