"""The embedding network: one weight-shared tower ``x -> normalise -> g_phi(x) -> projection -> L2``.

A Siamese network (Bromley et al., "Signature Verification using a 'Siamese' Time Delay Neural
Network", NIPS 1994) runs two copies of one sub-network with tied weights and compares their
outputs by a distance; a triplet network (Hoffer & Ailon 2015; Schroff et al., FaceNet, CVPR
2015) runs three. With tied weights the copies are the same function, so here there is one
network applied to every image of a batch, and the pairs or triplets are index tuples into the
batch's embeddings (seed 001, "Deep embeddings"; :mod:`visrep.losses.metric`). Any registered
backbone is the tower; a projection head maps its pooled features to the embedding, which is
optionally L2-normalised (FaceNet's embedding on the unit hypersphere, ``||f(x)||_2 = 1``).

Usable without Lightning; :class:`visrep.tasks.EmbeddingTask` wraps it for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (doctest)
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.layers import Normalize

__all__ = ["EmbeddingNet", "projection_head"]


def projection_head(in_features: int, dim: int, hidden: int | None = None) -> nn.Module:
    """The map from pooled features to the embedding.

    ``dim=0``: none (the pooled features are the embedding); ``hidden=None``: one linear layer
    ``in_features -> dim``; ``hidden=h``: a two-layer MLP ``Linear(in, h) -> BatchNorm1d ->
    ReLU -> Linear(h, dim)`` (the non-linear projection of SimCLR, Chen et al. 2020).
    """
    if dim < 0:
        raise ConfigError(f"model.dim must be >= 0 (0: the pooled features), got {dim}")
    if hidden is not None and hidden < 1:
        raise ConfigError(f"model.hidden must be >= 1 or null, got {hidden}")
    if dim == 0:
        if hidden is not None:
            raise ConfigError("model.hidden needs a projection: set model.dim >= 1 with it")
        return nn.Identity()
    if hidden is None:
        return nn.Linear(in_features, dim)
    return nn.Sequential(
        nn.Linear(in_features, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, dim),
    )


class EmbeddingNet(nn.Module):
    """One tower for every image: normalisation, backbone, projection, optional L2 norm.

    Args:
        backbone: any :class:`~visrep.models.interface.Backbone` (its own classifier, if any,
            is not used: the embedding reads ``forward_head(z, pre_logits=True)``).
        mean, std: per-channel input statistics (inputs are pixels in [0, 1]).
        dim: embedding size; 0 keeps the pooled backbone features (``backbone.num_features``).
        hidden: width of a hidden layer in the projection (an MLP head); None: linear.
        normalize: L2-normalise the embeddings onto the unit sphere.
        num_classes: > 0 adds a linear classifier on the un-normalised embedding
            (:meth:`logits`): the softmax baseline, a classifier whose penultimate features are
            the embedding.

    Shape: ``(B, C, H, W) -> (B, dim)`` (``(B, backbone.num_features)`` when ``dim=0``).

    >>> from visrep.models import create_backbone
    >>> bb = create_backbone("small_cnn", in_chans=1, num_classes=0, channels=(4, 8))
    >>> net = EmbeddingNet(bb, [0.5], [0.25], dim=3)
    >>> z = net(torch.rand(2, 1, 8, 8))
    >>> z.shape, torch.allclose(z.norm(dim=1), torch.ones(2))
    (torch.Size([2, 3]), True)
    """

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        dim: int = 128,
        hidden: int | None = None,
        normalize: bool = True,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {num_classes}")
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.head = projection_head(int(backbone.num_features), dim, hidden)
        self.dim = dim or int(backbone.num_features)
        self.l2 = normalize
        self.classifier = nn.Linear(self.dim, num_classes) if num_classes else None

    def forward_features(self, x: Tensor) -> Tensor:
        """Unpooled backbone features of pixel-space input ``x`` (Grad-CAM reads these)."""
        return self.backbone.forward_features(self.normalize(x))

    def project(self, x: Tensor) -> Tensor:
        """The embedding before L2 normalisation, ``(B, dim)``."""
        z = self.backbone.forward_head(self.forward_features(x), pre_logits=True)
        return self.head(z.flatten(1))

    def finish(self, e: Tensor) -> Tensor:
        """L2-normalise a projected ``(B, dim)`` batch when ``normalize`` is on."""
        return F.normalize(e, dim=1) if self.l2 else e

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(self.project(x))

    def embed(self, x: Tensor) -> Tensor:
        """The embedding ``(B, dim)`` (what ``visrep embed`` and ``visrep explain`` read)."""
        return self(x)

    def logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(embedding, class logits)`` in one pass; needs ``num_classes > 0``."""
        if self.classifier is None:
            raise ConfigError("EmbeddingNet.logits needs num_classes > 0 (a classifier)")
        e = self.project(x)
        return self.finish(e), self.classifier(e)
