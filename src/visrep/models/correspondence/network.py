"""The per-correspondence network of Yi et al. 2018 ("Learning to Find Good Correspondences",
CVPR, sec. 3.2, fig. 2): a PointNet-like stack of shared perceptrons (1x1 convolutions over the
N correspondences) with Context Normalization, which outputs one inlier logit per match.

Input: ``N`` putative matches ``q_i = (u_i, v_i, u'_i, v'_i)`` in normalised coordinates. A 1x1
convolution lifts them to ``width`` channels, then ``depth`` residual blocks each apply twice
(1x1 conv -> Context Normalization -> Batch Normalization -> ReLU) and add their input; a last
1x1 convolution gives the logits ``o_i``. Weights are ``w_i = tanh(ReLU(o_i))`` (sec. 3.3). The
paper's network is ``depth=12``, ``width=128``. Batch Normalization here learns its scale and
offset (torch's default); the authors' TensorFlow code keeps them fixed at 1 and 0.

Context Normalization (CN, sec. 3.2) normalises each channel of each pair over its ``N``
matches, ``(o_i - mu) / sigma``: the only way information flows between matches, and it keeps
the network equivariant to their order. Batches of pairs with different ``N`` are padded and
carry a mask ``(B, N)``: CN and Batch Normalization then use the valid matches only, so a
padded batch gives the same outputs on its valid matches as each pair alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "CNResidualBlock",
    "ContextNorm",
    "CorrespondenceNet",
    "MaskedBatchNorm1d",
    "as_match_tensor",
    "context_norm",
    "inlier_weights",
]


def context_norm(x: Tensor, mask: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    """Context Normalization (Yi et al. 2018, sec. 3.2): ``(x - mu) / sqrt(var + eps)`` with
    the mean and (biased) variance of each sample and channel over the ``N`` correspondences.

    Args:
        x: ``(B, C, N)`` features.
        mask: ``(B, N)`` valid correspondences (padded ones count in no statistic and come
            out as 0); None: all valid.
        eps: added to the variance (1e-3 as the authors' code).

    >>> x = torch.tensor([[[1.0, 2.0, 3.0, 100.0]]]); m = torch.tensor([[True, True, True, False]])
    >>> context_norm(x, m, eps=0.0)
    tensor([[[-1.2247,  0.0000,  1.2247,  0.0000]]])
    """
    if x.dim() != 3:
        raise ShapeError(f"context_norm: x must be (B, C, N), got {tuple(x.shape)}")
    if mask is None:
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).square().mean(-1, keepdim=True)
        return (x - mean) / (var + eps).sqrt()
    m = mask[:, None, :].to(x.dtype)
    count = m.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(-1, keepdim=True) / count
    var = ((x - mean).square() * m).sum(-1, keepdim=True) / count
    return (x - mean) / (var + eps).sqrt() * m


class ContextNorm(nn.Module):
    """Module form of :func:`context_norm` (no parameters)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return context_norm(x, mask, self.eps)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` over ``(B, C, N)`` whose statistics (training) use only the valid
    entries of ``mask`` ``(B, N)``; padded entries come out as 0. Without a mask it is
    ``nn.BatchNorm1d`` (an all-true mask gives the same numbers the slower way: the caller,
    :meth:`CorrespondenceNet.forward`, drops such a mask once per forward, not per layer)."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return super().forward(x)
        rows = x.transpose(1, 2)[mask]  # (M, C): the valid correspondences of the batch
        out = x.new_zeros(x.shape[0], x.shape[2], x.shape[1])
        out[mask] = super().forward(rows)
        return out.transpose(1, 2)


class CNResidualBlock(nn.Module):
    """Two (1x1 conv -> CN -> BN -> ReLU) perceptrons plus the identity (Yi et al. 2018,
    fig. 2: the ResNet block of their network)."""

    def __init__(self, width: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 1)
        self.bn1 = MaskedBatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 1)
        self.bn2 = MaskedBatchNorm1d(width)
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = F.relu(self.bn1(context_norm(self.conv1(x), mask, self.eps), mask))
        h = F.relu(self.bn2(context_norm(self.conv2(h), mask, self.eps), mask))
        out = x + h
        return out if mask is None else out * mask[:, None].to(out.dtype)


def as_match_tensor(matches: Tensor, name: str = "matches") -> Tensor:
    """``(B, N, 4)`` matches from ``(B, N, 4)`` or the paper's ``(B, 4, N, 1)`` layout
    (``ShapeError`` otherwise)."""
    if matches.dim() == 4 and matches.shape[1] == 4 and matches.shape[3] == 1:
        return matches[..., 0].transpose(1, 2)
    if matches.dim() == 3 and matches.shape[2] == 4:
        return matches
    raise ShapeError(
        f"{name} must be (B, N, 4) (u1, v1, u2, v2 per match) or (B, 4, N, 1), got "
        f"{tuple(matches.shape)}"
    )


def inlier_weights(logits: Tensor) -> Tensor:
    """``w = tanh(ReLU(logits))`` (Yi et al. 2018, sec. 3.3): 0 for ``logit <= 0``, in [0, 1)."""
    return torch.tanh(F.relu(logits))


class CorrespondenceNet(nn.Module):
    """Yi et al.'s correspondence classifier: logits ``(B, N)`` for matches ``(B, N, 4)``.

    Args:
        depth: residual blocks (12 in the paper).
        width: channels of every perceptron (128 in the paper).
        in_features: numbers per match (4: ``u1, v1, u2, v2``).
        eps: the variance epsilon of Context Normalization.

    Shape:
        matches ``(B, N, 4)`` or ``(B, 4, N, 1)``; mask ``(B, N)`` bool or None -> logits
        ``(B, N)`` (0 at padded matches).

    >>> net = CorrespondenceNet(depth=2, width=8).eval()
    >>> net(torch.randn(3, 50, 4)).shape
    torch.Size([3, 50])
    """

    def __init__(self, depth: int = 12, width: int = 128, in_features: int = 4, eps: float = 1e-3):
        super().__init__()
        if depth < 0 or width < 1 or in_features < 1:
            raise ConfigError(
                f"CorrespondenceNet: depth >= 0, width >= 1 and in_features >= 1 expected, got "
                f"depth={depth}, width={width}, in_features={in_features}"
            )
        self.in_features = in_features
        self.stem = nn.Conv1d(in_features, width, 1)
        self.blocks = nn.ModuleList(CNResidualBlock(width, eps) for _ in range(depth))
        self.head = nn.Conv1d(width, 1, 1)

    def forward(self, matches: Tensor, mask: Tensor | None = None) -> Tensor:
        x = as_match_tensor(matches)
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"matches: {self.in_features} numbers per match expected, got {x.shape[-1]}"
            )
        if mask is not None and mask.shape != x.shape[:2]:
            raise ShapeError(f"mask must be (B, N) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        if mask is not None and bool(mask.all()):  # one device sync per forward, not per layer
            mask = None  # all valid: the unmasked (faster) path gives the same numbers
        h = self.stem(x.transpose(1, 2))
        if mask is not None:
            mask = mask.bool()
            h = h * mask[:, None].to(h.dtype)
        for block in self.blocks:
            h = block(h, mask)
        logits = self.head(h)[:, 0]
        return logits if mask is None else logits * mask.to(logits.dtype)

    def weights(self, matches: Tensor, mask: Tensor | None = None) -> Tensor:
        """The inlier weights ``tanh(relu(logits))`` ``(B, N)``."""
        return inlier_weights(self(matches, mask))
