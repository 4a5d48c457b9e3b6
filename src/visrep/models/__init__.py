"""Models: shared layers, backbones g_phi, heads f_theta, and the backbone registry."""

from visrep.models.classifier import ImageClassifier
from visrep.models.registry import (
    backbone_options,
    create_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "ImageClassifier",
    "backbone_options",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
