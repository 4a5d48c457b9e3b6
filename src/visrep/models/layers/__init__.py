"""Shared building blocks, defined once and imported by every model that needs them."""

from visrep.models.layers.activations import get_activation
from visrep.models.layers.normalize import Normalize, normalize

__all__ = ["Normalize", "get_activation", "normalize"]

from visrep.models.layers.convlstm import ConvLSTM, ConvLSTMCell, convlstm_cell  # issue 15

__all__ += ["ConvLSTM", "ConvLSTMCell", "convlstm_cell"]

from visrep.models.layers.chain_crf import (  # noqa: E402  (issue 19)
    ChainCRF,
    chain_crf_log_partition,
    chain_crf_marginals,
    chain_crf_nll,
    chain_crf_score,
    chain_crf_viterbi,
)
from visrep.models.layers.hidden_crf import (  # noqa: E402  (issue 19)
    HiddenCRF,
    LatentDynamicCRF,
    hidden_crf_log_probs,
    hidden_crf_marginals,
    hidden_crf_nll,
    latent_dynamic_crf_decode,
    latent_dynamic_crf_log_likelihood,
    latent_dynamic_crf_marginals,
    latent_dynamic_crf_nll,
)

__all__ += [
    "ChainCRF",
    "HiddenCRF",
    "LatentDynamicCRF",
    "chain_crf_log_partition",
    "chain_crf_marginals",
    "chain_crf_nll",
    "chain_crf_score",
    "chain_crf_viterbi",
    "hidden_crf_log_probs",
    "hidden_crf_marginals",
    "hidden_crf_nll",
    "latent_dynamic_crf_decode",
    "latent_dynamic_crf_log_likelihood",
    "latent_dynamic_crf_marginals",
    "latent_dynamic_crf_nll",
]

from visrep.models.layers.spatial_transformer import (  # noqa: E402  (issue 18)
    TPSGrid,
    affine_grid,
    bilinear_kernel_reference,
    bilinear_sample,
    spatial_transform,
    tps_control_points,
    tps_grid,
    tps_system_inverse,
)

__all__ += [
    "TPSGrid",
    "affine_grid",
    "bilinear_kernel_reference",
    "bilinear_sample",
    "spatial_transform",
    "tps_control_points",
    "tps_grid",
    "tps_system_inverse",
]
