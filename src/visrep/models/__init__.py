"""Models: shared layers, backbones g_phi, heads f_theta, and the registry that builds them."""

from visrep.models.classifier import ImageClassifier
from visrep.models.colorizer import Colorizer
from visrep.models.embedding import EmbeddingNet
from visrep.models.generative import VAE, Autoencoder, ConvDecoder, MLPDecoder
from visrep.models.interface import Backbone, BackboneFactory
from visrep.models.pointcloud import POINT_NETS, PointNet
from visrep.models.pretrained import load_pretrained
from visrep.models.registry import (
    BACKBONES,
    Registry,
    backbone_options,
    create_backbone,
    list_backbones,
)

__all__ = [
    "BACKBONES",
    "POINT_NETS",
    "VAE",
    "Autoencoder",
    "Backbone",
    "BackboneFactory",
    "Colorizer",
    "ConvDecoder",
    "EmbeddingNet",
    "ImageClassifier",
    "MLPDecoder",
    "PointNet",
    "Registry",
    "backbone_options",
    "create_backbone",
    "list_backbones",
    "load_pretrained",
]

from visrep.models.correspondence import (  # appended: issue 17
    ContextNorm,
    CorrespondenceNet,
    context_norm,
    weighted_dlt,
    weighted_eight_point,
)

__all__ += [
    "ContextNorm",
    "CorrespondenceNet",
    "context_norm",
    "weighted_dlt",
    "weighted_eight_point",
]

from visrep.models.video import VIDEO_NETS, VideoClassifier, VideoNet  # noqa: E402 (issue 15)

__all__ += ["VIDEO_NETS", "VideoClassifier", "VideoNet"]

from visrep.models.stn import SpatialTransformer  # noqa: E402 (issue 18; registers `stn`)

__all__ += ["SpatialTransformer"]

from visrep.models.keypoints import PoseMachine  # noqa: E402 (issue 18, heat-map keypoints)

__all__ += ["PoseMachine"]
