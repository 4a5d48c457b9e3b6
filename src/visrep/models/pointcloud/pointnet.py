"""PointNet (Qi et al. 2017, "PointNet: Deep learning on point sets for 3D classification and
segmentation"; seed 001, "Dealing with unstructured input").

A point set is classified by a symmetric function ``f({x_1..x_n}) ~ gamma(MAX_i h(x_i))``
(eq. 1 of the paper; seed 001 eq. 19-22): ``h`` a shared per-point MLP (the paper's "mlp" of
1x1 convolutions, here ``nn.Linear`` on the points' last dimension, the same map), ``MAX`` the
channel-wise max over the points, ``gamma`` an MLP. Two T-Nets predict a 3x3 input transform and
a 64x64 feature transform, the latter pulled towards orthogonality by
``L_reg = ||I - A A^T||_F^2`` (eq. 2). The segmentation network concatenates each point's
64-d feature with the 1024-d global feature (the paper's Fig. 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.pointcloud.points import PointBatch

__all__ = [
    "PointNet",
    "PointNetFeatures",
    "SharedMLP",
    "TNet",
    "critical_point_indices",
    "orthogonality_loss",
]


def orthogonality_loss(a: Tensor) -> Tensor:
    """The feature-transform regulariser of eq. 2, ``||I - A A^T||_F^2``, averaged over the batch.

    The squared Frobenius norm itself (the sum of squares, no 1/2), a mean over the clouds: the
    paper's per-cloud term, weighted 0.001 by :class:`~visrep.models.pointcloud.pointnet`. The
    authors' TensorFlow code adds ``0.001 * tf.nn.l2_loss(I - A A^T)`` to a batch-mean
    cross-entropy; ``l2_loss`` is half the sum over the whole batch, so its per-cloud weight is
    ``0.0005 * B`` (0.016 at their batch of 32): 16 times this one at that batch size.

    Shape:
        ``(B, k, k) -> ()``.

    >>> q, _ = torch.linalg.qr(torch.randn(2, 4, 4, dtype=torch.float64))
    >>> float(orthogonality_loss(q)) < 1e-20
    True
    >>> float(orthogonality_loss(2 * torch.eye(3)[None]))  # (1 - 4)^2 * 3
    27.0
    """
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return (eye - a @ a.transpose(-1, -2)).square().sum((-2, -1)).mean()


class SharedMLP(nn.Sequential):
    """Per-point fully connected layers with batch norm and ReLU (the paper's "shared mlp").

    Batch norm statistics run over every point of every cloud. Acts on the last dimension of
    ``(B, N, C)`` or packed ``(M, C)`` features.

    Args:
        channels: ``(C_in, C_1, ..., C_out)``.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        if len(channels) < 2:
            raise ConfigError(f"a shared MLP needs input and output widths, got {list(channels)}")
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise(channels):
            layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)


class TNet(nn.Module):
    """A mini-PointNet predicting a ``k x k`` transform per cloud (the paper's T-Net, Sec. 4.2).

    Shared MLP (64, 128, 1024), max pool, fully connected (512, 256), then a linear layer to
    ``k * k`` initialised to zero so the transform starts as the identity (as the authors' code).

    Shape:
        ``PointBatch`` of ``k``-d features ``-> (B, k, k)``.
    """

    def __init__(self, k: int, width: int = 1024) -> None:
        super().__init__()
        self.k = k
        self.mlp = SharedMLP((k, 64, 128, width))
        self.fc = nn.Sequential(
            nn.Linear(width, 512, bias=False),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, 256, bias=False),
            nn.BatchNorm1d(256),
            nn.ReLU(),
        )
        self.out = nn.Linear(256, k * k)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, points: PointBatch) -> Tensor:
        g, _ = points.with_features(self.mlp(points.x)).max_pool()
        eye = torch.eye(self.k, dtype=g.dtype, device=g.device)
        return self.out(self.fc(g)).view(-1, self.k, self.k) + eye


@dataclass
class PointNetFeatures:
    """What the PointNet encoder computes for a batch.

    Attributes:
        global_feature: ``(B, width)``, the max-pooled symmetric feature.
        point_features: ``(B, N, 64)`` / packed ``(M, 64)`` per-point features after the
            feature transform (what the segmentation network concatenates).
        critical: ``(B, width)`` index of the point that wins each channel's max (its critical
            point set, Sec. 4.3 / Fig. 7 of the paper).
        input_transform, feature_transform: ``(B, 3, 3)`` / ``(B, 64, 64)``, or None when off.
    """

    global_feature: Tensor
    point_features: PointBatch
    critical: Tensor
    input_transform: Tensor | None
    feature_transform: Tensor | None


class PointNet(nn.Module):
    """The PointNet encoder: input T-Net, mlp(64, 64), feature T-Net, mlp(64, 128, width), max pool.

    Args:
        point_dim: ``D`` of the input points; columns 0..2 are x, y, z and the input transform
            acts on them, any further columns (normals, intensity) pass through untransformed.
        input_transform: the 3x3 T-Net on the coordinates.
        feature_transform: the 64x64 T-Net on the per-point features.
        width: channels of the global feature (1024 in the paper).
    """

    def __init__(
        self,
        point_dim: int = 3,
        input_transform: bool = True,
        feature_transform: bool = True,
        width: int = 1024,
    ) -> None:
        super().__init__()
        if point_dim < 3:
            raise ConfigError(
                f"PointNet reads points with x, y, z first: point_dim >= 3, got {point_dim}"
            )
        if width < 1:
            raise ConfigError(f"PointNet width must be >= 1, got {width}")
        self.point_dim, self.width = point_dim, width
        self.input_tnet = TNet(3) if input_transform else None
        self.mlp1 = SharedMLP((point_dim, 64, 64))
        self.feature_tnet = TNet(64) if feature_transform else None
        self.mlp2 = SharedMLP((64, 128, width))

    def forward(self, points: PointBatch) -> PointNetFeatures:
        a_in = a_feat = None
        x = points.x
        if self.input_tnet is not None:
            xyz = points.with_features(x[..., :3])
            a_in = self.input_tnet(xyz)
            x = torch.cat([xyz.transform(a_in).x, x[..., 3:]], -1)
        f = points.with_features(self.mlp1(x))
        if self.feature_tnet is not None:
            a_feat = self.feature_tnet(f)
            f = f.transform(a_feat)
        g, critical = f.with_features(self.mlp2(f.x)).max_pool()
        return PointNetFeatures(g, f, critical, a_in, a_feat)


def critical_point_indices(critical: Tensor) -> list[Tensor]:
    """The critical point set of each cloud: the sorted distinct points that win at least one
    channel of the max pool (Sec. 4.3 of the paper: they alone determine the global feature).

    >>> [c.tolist() for c in critical_point_indices(torch.tensor([[3, 1, 3], [0, 0, 0]]))]
    [[1, 3], [0]]
    """
    return [torch.unique(row) for row in critical]
