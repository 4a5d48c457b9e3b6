"""Point-cloud networks by name: PointNet classification and segmentation, and the flattened
sorted-points MLP baseline (the PointNet paper's Sec. 5.2 comparison of order-dependent models).

Every registered model is built as ``POINT_NETS.build(spec, point_dim, num_classes)`` and takes
a ``(B, N, D)`` tensor or a list of ``(N_i, D)`` clouds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.pointcloud.pointnet import (
    PointNet,
    PointNetFeatures,
    SharedMLP,
    orthogonality_loss,
)
from visrep.models.pointcloud.points import as_point_batch
from visrep.utils.registry import Registry

__all__ = [
    "POINT_NETS",
    "PointCloudNet",
    "PointNetFactory",
    "lexsort_points",
    "pointnet",
    "pointnet_seg",
    "sorted_mlp",
]

Points = Tensor | Sequence[Tensor]


class PointCloudNet(nn.Module):
    """Base class of the registered point-cloud networks.

    Attributes:
        dense: per-point outputs (segmentation) rather than one per cloud.
    """

    dense = False

    def forward_with_aux(self, points: Points) -> tuple[Tensor, Tensor | None]:
        """Logits and the model's own weighted regularisation loss (None when it has none)."""
        return self(points), None

    def embed(self, points: Points) -> Tensor:
        """One representation vector per cloud, ``(B, F)`` (what t-SNE and k-NN read)."""
        raise NotImplementedError

    def embed_with_critical(self, points: Points) -> tuple[Tensor, Tensor | None]:
        """:meth:`embed` and, for max-pooling networks, the ``(B, F)`` index of the point that
        wins each pooled channel (its critical points), from one pass; None for others."""
        return self.embed(points), None


POINT_NETS: Registry[PointCloudNet] = Registry(
    "point-cloud network", PointCloudNet, leading=("point_dim", "num_classes")
)

# A point-cloud network constructor with its options bound, called with (point_dim, num_classes).
PointNetFactory = Callable[[int, int], PointCloudNet]


def _head(widths: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in pairwise(widths):
        layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


def _regulariser(f: PointNetFeatures, weight: float) -> Tensor | None:
    """``weight * ||I - A A^T||_F^2`` of the feature transform, None without one (or at 0)."""
    if f.feature_transform is None or not weight:
        return None
    return weight * orthogonality_loss(f.feature_transform)


def _check(dropout: float, reg_weight: float) -> None:
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.net.dropout must be in [0, 1), got {dropout}")
    if reg_weight < 0:
        raise ConfigError(f"model.net.reg_weight must be >= 0, got {reg_weight}")


class _PointNetBody(PointCloudNet):
    """What the PointNet classification and segmentation networks share: the encoder, its
    global feature as the embedding, and the weighted regulariser (not registered)."""

    def _build_encoder(
        self,
        point_dim: int,
        input_transform: bool,
        feature_transform: bool,
        width: int,
        dropout: float,
        reg_weight: float,
    ) -> None:
        _check(dropout, reg_weight)
        self.point_dim, self.reg_weight = point_dim, reg_weight
        self.encoder = PointNet(point_dim, input_transform, feature_transform, width)

    def encode(self, points: Points) -> PointNetFeatures:
        """The encoder's outputs for a ``(B, N, D)`` tensor or a list of clouds."""
        return self.encoder(as_point_batch(points, self.point_dim))

    def embed(self, points: Points) -> Tensor:
        return self.encode(points).global_feature

    def embed_with_critical(self, points: Points) -> tuple[Tensor, Tensor | None]:
        """The global feature and the ``(B, width)`` index of the point that wins each max-pool
        channel (see :func:`~visrep.models.pointcloud.critical_point_indices`)."""
        f = self.encode(points)
        return f.global_feature, f.critical


@POINT_NETS.register
class pointnet(_PointNetBody):  # noqa: N801 (the registered, user-facing name)
    """PointNet classification network (the paper's Fig. 2, top).

    Encoder (:class:`~visrep.models.pointcloud.PointNet`), then fully connected (512, 256) with
    batch norm and ReLU, dropout (keep ratio 0.7 in the paper: ``dropout=0.3``) and the class
    layer. The paper puts dropout on "the last mlp"; here it acts once, before the class layer
    (the authors' code also drops after the 512 layer). The loss adds
    ``reg_weight * ||I - A A^T||_F^2`` of the feature transform (eq. 2; 0.001 in the paper; a
    mean over clouds, see :func:`~visrep.models.pointcloud.orthogonality_loss` for the authors'
    code's larger effective weight).

    Args:
        point_dim, num_classes: from the data.
        input_transform, feature_transform: the two T-Nets (both off: the "vanilla" PointNet of
            the paper's Table 5).
        width: global feature channels.
        dropout: before the class layer.
        reg_weight: weight of the orthogonality regulariser.
    """

    def __init__(
        self,
        point_dim: int,
        num_classes: int,
        input_transform: bool = True,
        feature_transform: bool = True,
        width: int = 1024,
        dropout: float = 0.3,
        reg_weight: float = 0.001,
    ) -> None:
        super().__init__()
        self._build_encoder(
            point_dim, input_transform, feature_transform, width, dropout, reg_weight
        )
        self.head = _head((width, 512, 256), num_classes, dropout)

    def forward_with_aux(self, points: Points) -> tuple[Tensor, Tensor | None]:
        f = self.encode(points)
        return self.head(f.global_feature), _regulariser(f, self.reg_weight)

    def forward(self, points: Points) -> Tensor:
        return self.head(self.embed(points))


@POINT_NETS.register
class pointnet_seg(_PointNetBody):  # noqa: N801
    """PointNet segmentation network (the paper's Fig. 2, bottom): each point's 64-d feature
    (after the feature transform) concatenated with the global feature, shared MLP
    (512, 256, 128), shared MLP (128), then per-point class scores.

    Returns ``(B, N, num_classes)`` for clouds of one size, packed ``(M, num_classes)`` (cloud
    after cloud) otherwise.
    """

    dense = True

    def __init__(
        self,
        point_dim: int,
        num_classes: int,
        input_transform: bool = True,
        feature_transform: bool = True,
        width: int = 1024,
        dropout: float = 0.0,
        reg_weight: float = 0.001,
    ) -> None:
        super().__init__()
        self._build_encoder(
            point_dim, input_transform, feature_transform, width, dropout, reg_weight
        )
        self.mlp = SharedMLP((64 + width, 512, 256, 128, 128))
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out = nn.Linear(128, num_classes)

    def forward_with_aux(self, points: Points) -> tuple[Tensor, Tensor | None]:
        f = self.encode(points)
        p = f.point_features
        x = torch.cat([p.x, p.broadcast(f.global_feature)], -1)
        return self.out(self.drop(self.mlp(x))), _regulariser(f, self.reg_weight)

    def forward(self, points: Points) -> Tensor:
        return self.forward_with_aux(points)[0]


@POINT_NETS.register
class sorted_mlp(PointCloudNet):  # noqa: N801
    """The order-dependent baseline of the PointNet paper (Sec. 5.2, Fig. 5): a plain MLP on the
    flattened ``N x D`` coordinates, after sorting the points into a canonical order
    (lexicographic in x, y, z: the paper's "sorted" input) or as given (``sort=False``).

    It needs clouds of exactly ``num_points`` points.

    Args:
        point_dim, num_classes: from the data.
        num_points: the fixed cloud size.
        hidden: widths of the hidden layers (batch norm, ReLU).
        dropout: before the class layer.
        sort: sort the points first.
    """

    def __init__(
        self,
        point_dim: int,
        num_classes: int,
        num_points: int = 1024,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        sort: bool = True,
    ) -> None:
        super().__init__()
        _check(dropout, 0.0)
        if num_points < 1 or not hidden:
            raise ConfigError("model.net: num_points must be >= 1 and hidden non-empty")
        self.point_dim, self.num_points, self.sort = point_dim, num_points, sort
        self.body = _head((num_points * point_dim, *hidden), num_classes, dropout)

    def _flat(self, points: Points) -> Tensor:
        batch = as_point_batch(points, self.point_dim)
        if batch.counts is not None or batch.x.shape[1] != self.num_points:
            raise ShapeError(
                f"sorted_mlp reads clouds of exactly num_points={self.num_points} points"
            )
        x = batch.x
        if self.sort:
            x = lexsort_points(x)
        return x.flatten(1)

    def embed(self, points: Points) -> Tensor:
        return self.body[:-1](self._flat(points))

    def forward(self, points: Points) -> Tensor:
        return self.body(self._flat(points))


def lexsort_points(x: Tensor) -> Tensor:
    """Each cloud's points in lexicographic order of (x, y, z), ``(B, N, D) -> (B, N, D)``.

    Stable sorts from the last key to the first, as ``numpy.lexsort``.

    >>> lexsort_points(torch.tensor([[[1.0, 0, 0], [0, 2, 0], [0, 1, 5]]]))[0].tolist()
    [[0.0, 1.0, 5.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]
    """
    order = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
    for k in (2, 1, 0):
        key = x[..., k].gather(1, order)
        order = order.gather(1, torch.sort(key, dim=1, stable=True).indices)
    return x.gather(1, order[..., None].expand(-1, -1, x.shape[-1]))
