"""Backbones g_phi, one family per file; importing this package registers them all.

Each exposes timm's interface: ``forward_features(x)`` (unpooled features),
``forward_head(z, pre_logits=False)``, ``num_features`` and ``reset_classifier(n)``.
"""

from visrep.models.backbones import (  # noqa: F401  (registration)
    cnn,
    mlp,
    naisnet,
    resnet,
    resnet9,
    resnet_small,
    vit,
)
from visrep.models.backbones.cnn import SmallCNN
from visrep.models.backbones.mlp import MLP

__all__ = ["MLP", "SmallCNN"]
