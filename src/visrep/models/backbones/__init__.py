"""Backbones g_phi, one family per file; importing this package registers them all.

Each is a :class:`~visrep.models.interface.Backbone` (timm's interface): ``forward_features(x)``
(unpooled features), ``forward_head(z, pre_logits=False)``, ``num_features``,
``reset_classifier(n)``, ``feature_info`` and ``forward_intermediates(x)``. The registered
classes carry the user-facing lowercase names (``small_cnn``, ``resnet18``) and only fix the
defaults of the architecture classes (``SmallCNN``, ``TimmResNet``).
"""

from visrep.models.backbones import (  # noqa: F401  (registration)
    cnn,
    mlp,
    naisnet,
    resnet,
    resnet9,
    resnet_small,
    timm_model,
    vit,
)
from visrep.models.backbones.cnn import SmallCNN
from visrep.models.backbones.mlp import MLP

__all__ = ["MLP", "SmallCNN"]
