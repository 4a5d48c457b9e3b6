"""Analysis: convolution arithmetic, per-layer model statistics and batch-norm folding (seed 002).

``arithmetic`` holds pure integer functions (output sizes, padding, parameters, MACs/FLOPs,
receptive fields); ``model_stats`` measures them on a live model; ``bn_fold`` fuses inference-mode
BatchNorm into the preceding Conv/Linear layer.
``interpret`` explains a classifier: Grad-CAM, occlusion, saliency, integrated gradients,
feature-space neighbours, PCA / t-SNE (seed 004); their figures are in :mod:`visrep.plots`.
What the tool commands call: ``runs`` and ``samples`` (a run's task, data, classifier and
samples), ``sources`` (the model of a run, a config or a backbone), ``explain`` (the maps and
neighbours of ``visrep explain``), ``robustness`` (accuracy under the attacks of
:mod:`visrep.attacks`), ``stability`` and ``stability_summary`` (NAIS-Net, seed 000) and
``compare`` (runs side by side).
"""

from visrep.analysis.arithmetic import (
    LayerSpec,
    ReceptiveField,
    conv_flops,
    conv_macs,
    conv_output_size,
    conv_params,
    conv_transpose_output_size,
    linear_macs,
    linear_params,
    pool_output_size,
    receptive_field,
    receptive_field_size,
    same_padding,
)
from visrep.analysis.bn_fold import find_conv_bn_pairs, fold_batchnorm, fuse_conv_bn_weights
from visrep.analysis.interpret import (
    default_gradcam_layer,
    embed,
    gradcam,
    integrated_gradients,
    nearest_neighbours,
    normalize_maps,
    occlusion,
    pca,
    saliency,
    tsne,
)
from visrep.analysis.model_stats import GLOBAL, LayerStats, ModelStats, model_stats

__all__ = [
    "GLOBAL",
    "LayerSpec",
    "LayerStats",
    "ModelStats",
    "ReceptiveField",
    "conv_flops",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "conv_transpose_output_size",
    "default_gradcam_layer",
    "embed",
    "find_conv_bn_pairs",
    "fold_batchnorm",
    "fuse_conv_bn_weights",
    "gradcam",
    "integrated_gradients",
    "linear_macs",
    "linear_params",
    "model_stats",
    "nearest_neighbours",
    "normalize_maps",
    "occlusion",
    "pca",
    "pool_output_size",
    "receptive_field",
    "receptive_field_size",
    "saliency",
    "same_padding",
    "tsne",
]
