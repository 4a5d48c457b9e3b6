"""Two-view geometry for learned correspondences: the weighted eight-point algorithm and weighted
DLT (differentiable, batched), the distances that label and score matches, and pose recovery.

Yi et al. 2018, "Learning to Find Good Correspondences" (CVPR), sec. 3.3: with ``q_i = (u_i,
v_i, u'_i, v'_i)`` the i-th correspondence in normalised (intrinsics-removed) coordinates, the
epipolar constraint ``x'_i^T E x_i = 0`` is one row ``X_i = kron(x'_i, x_i)`` of the ``N x 9``
matrix ``X`` with ``X vec(E) = 0``; given weights ``w`` the estimate is the eigenvector of
``X^T diag(w) X`` with the smallest eigenvalue (their ``g(x, w)``; no rank-2 projection, as the
paper). The homography analogue stacks the two DLT rows per correspondence (Hartley and
Zisserman, "Multiple View Geometry", 2nd ed., algorithm 4.2) on Hartley-normalised points
(their sec. 4.4.4, with weighted centroids and scales, so the normalisation is differentiable
too).

Every function takes batches ``(B, N, 2)`` of points (``(N, 2)`` is one pair) and returns
``(B, ...)``; points ``x1`` live in image 1 and ``x2 = T(x1)`` in image 2. Conventions:
``E`` maps ``x1`` to the epipolar line ``E x1`` in image 2; ``E`` and ``H`` returned by the
estimators have unit Frobenius norm (``H`` with ``H[2, 2] >= 0``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visrep.errors import ShapeError

__all__ = [
    "MIN_MATCHES",
    "apply_homography",
    "corner_error",
    "decompose_essential",
    "dlt_matrix",
    "eight_point_matrix",
    "essential_from_pose",
    "hartley_normalization",
    "recover_pose",
    "rotation_error_deg",
    "sampson_distance",
    "skew",
    "smallest_eigenvector",
    "symmetric_epipolar_distance",
    "transfer_error",
    "translation_error_deg",
    "weighted_dlt",
    "weighted_eight_point",
]

MIN_MATCHES = {"essential": 8, "homography": 4}


def _points(x1: Tensor, x2: Tensor, w: Tensor | None, name: str, minimum: int = 1):
    """``x1, x2, w`` as ``(B, N, 2), (B, N, 2), (B, N)``; checks shapes (``ShapeError``)."""
    if x1.dim() == 2:
        x1, x2 = x1[None], x2[None]
        w = None if w is None else w[None]
    if x1.dim() != 3 or x1.shape[-1] != 2 or x1.shape != x2.shape:
        raise ShapeError(
            f"{name}: x1 and x2 must both be (B, N, 2) or (N, 2) points, got "
            f"{tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    if x1.shape[1] < minimum:
        raise ShapeError(f"{name}: needs at least {minimum} correspondences, got {x1.shape[1]}")
    if w is None:
        w = x1.new_ones(x1.shape[:2])
    if w.shape != x1.shape[:2]:
        raise ShapeError(
            f"{name}: weights must be (B, N) = {tuple(x1.shape[:2])}, got {tuple(w.shape)}"
        )
    return x1, x2, w.to(x1.dtype)


def _homogeneous(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], -1)


class _SmallestEigenvector(torch.autograd.Function):
    """The unit eigenvector of the smallest eigenvalue of a symmetric ``(B, K, K)`` matrix.

    Backward: for ``A v_0 = l_0 v_0``, ``dv_0 = sum_{j>0} v_j (v_j^T dA v_0) / (l_0 - l_j)``
    (first-order perturbation), so ``dL/dA = sym(V' diag(c) v_0^T)`` with ``c_j = (g . v_j) /
    (l_0 - l_j)``. Close eigenvalues make ``1 / (l_0 - l_j)`` explode (torch's ``eigh`` backward
    returns inf/NaN there): a direction ``j`` whose gap ``l_j - l_0`` is at most ``eps * l_max``
    gets no gradient (``c_j = 0``; within a (near-)degenerate eigenspace the eigenvector is not
    determined, so there is nothing to follow). Well-separated cases stay exact (gradcheck);
    all-zero weights give a zero gradient instead of NaN. Computed in float64.
    """

    @staticmethod
    def forward(ctx, a: Tensor, eps: float) -> Tensor:
        evals, evecs = torch.linalg.eigh(a.double())
        ctx.save_for_backward(evals, evecs)
        ctx.eps = eps
        return evecs[..., :, 0].to(a.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        evals, evecs = ctx.saved_tensors
        v0, rest = evecs[..., :, :1], evecs[..., :, 1:]
        gap = evals[..., 1:] - evals[..., :1]  # l_j - l_0 >= 0
        floor = ctx.eps * evals[..., -1:].abs()
        inv = torch.where(gap > floor, 1.0 / gap.clamp_min(torch.finfo(gap.dtype).tiny), 0.0)
        inv = torch.where(gap > 0, inv, 0.0)
        c = -(rest.transpose(-1, -2) @ grad.double()[..., None])[..., 0] * inv
        g = (rest @ c[..., None]) @ v0.transpose(-1, -2)
        return (0.5 * (g + g.transpose(-1, -2))).to(grad.dtype), None


def smallest_eigenvector(a: Tensor, eps: float = 1e-9) -> Tensor:
    """The unit eigenvector of the smallest eigenvalue of symmetric ``a`` ``(B, K, K)`` ->
    ``(B, K)`` (sign as ``torch.linalg.eigh`` gives it), with a gradient that drops eigen-gaps
    of at most ``eps`` times the largest eigenvalue (see :class:`_SmallestEigenvector`).

    >>> smallest_eigenvector(torch.diag(torch.tensor([3.0, 1.0, 2.0]))[None]).abs()
    tensor([[0., 1., 0.]])
    """
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"smallest_eigenvector: a must be (B, K, K), got {tuple(a.shape)}")
    return _SmallestEigenvector.apply(a, eps)


def eight_point_matrix(x1: Tensor, x2: Tensor) -> Tensor:
    """The rows ``kron(x2_h, x1_h)`` of the epipolar constraint: ``(B, N, 9)`` with
    ``X @ E.reshape(9) = x2_h^T E x1_h`` (Yi et al. 2018, sec. 3.3; ``E`` row-major).

    >>> x = torch.tensor([[[0.5, -1.0]]]); X = eight_point_matrix(x, 2 * x)
    >>> X.tolist()
    [[[0.5, -1.0, 1.0, -1.0, 2.0, -2.0, 0.5, -1.0, 1.0]]]
    """
    a, b = _homogeneous(x1), _homogeneous(x2)
    return (b[..., :, None] * a[..., None, :]).flatten(-2)


def weighted_eight_point(
    x1: Tensor, x2: Tensor, w: Tensor | None = None, eps: float = 1e-9
) -> Tensor:
    """The essential matrix from weighted correspondences (Yi et al. 2018, sec. 3.3: the
    eigenvector of ``X^T diag(w) X`` with the smallest eigenvalue, reshaped to 3 x 3).

    Args:
        x1, x2: ``(B, N, 2)`` (or ``(N, 2)``) normalised coordinates ``K^-1 p`` in images 1
            and 2, ``N >= 8``.
        w: ``(B, N)`` non-negative weights (e.g. ``tanh(relu(logits))``); None: all 1 (the
            plain eight-point algorithm).
        eps: relative eigen-gap below which the gradient is dropped (:func:`smallest_eigenvector`).

    Returns:
        ``E`` ``(B, 3, 3)`` (``(3, 3)`` for unbatched input), unit Frobenius norm, sign
        arbitrary; ``x2_h^T E x1_h = 0`` for noise-free inliers.
    """
    batched = x1.dim() == 3
    x1, x2, w = _points(x1, x2, w, "weighted_eight_point", MIN_MATCHES["essential"])
    X = eight_point_matrix(x1, x2)
    e = smallest_eigenvector(X.transpose(1, 2) @ (w[..., None] * X), eps)
    e = e / e.norm(dim=-1, keepdim=True)
    E = e.reshape(-1, 3, 3)
    return E if batched else E[0]


def hartley_normalization(x: Tensor, w: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """Hartley's similarity ``T`` ``(B, 3, 3)`` moving the weighted centroid of ``x`` ``(B, N,
    2)`` to the origin and making the weighted mean distance to it ``sqrt(2)`` (Hartley and
    Zisserman, sec. 4.4.4; weights make it differentiable in ``w`` and ``x``).

    >>> x = torch.tensor([[[1.0, 1.0], [3.0, 1.0]]])
    >>> T = hartley_normalization(x); (T[0, :2, :2] @ x[0].T + T[0, :2, 2:]).T
    tensor([[-1.4142,  0.0000],
            [ 1.4142,  0.0000]])
    """
    if w is None:
        w = x.new_ones(x.shape[:2])
    total = w.sum(1, keepdim=True).clamp_min(eps)
    c = (w[..., None] * x).sum(1) / total  # (B, 2)
    d = (w * ((x - c[:, None]).square().sum(-1) + eps).sqrt()).sum(1) / total[:, 0]
    s = math.sqrt(2.0) / d.clamp_min(eps)
    T = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    T[:, 0, 0] = s
    T[:, 1, 1] = s
    T[:, :2, 2] = -s[:, None] * c
    T[:, 2, 2] = 1.0
    return T


def _apply(T: Tensor, x: Tensor) -> Tensor:
    """``T`` ``(B, 3, 3)`` applied to points ``(B, N, 2)`` (projective division)."""
    y = _homogeneous(x) @ T.transpose(1, 2)
    return y[..., :2] / y[..., 2:]


def dlt_matrix(x1: Tensor, x2: Tensor) -> Tensor:
    """The two DLT rows per correspondence ``(B, 2N, 9)``: with ``h = H.reshape(9)`` row-major,
    ``A h`` is the first two components of ``x2_h x (H x1_h)`` (Hartley and Zisserman,
    eq. 4.3), zero for an exact correspondence."""
    a = _homogeneous(x1)
    u, v = x2[..., :1], x2[..., 1:]
    zero = torch.zeros_like(a)
    r1 = torch.cat([zero, -a, v * a], -1)
    r2 = torch.cat([a, zero, -u * a], -1)
    return torch.stack([r1, r2], 2).flatten(1, 2)


def weighted_dlt(x1: Tensor, x2: Tensor, w: Tensor | None = None, eps: float = 1e-9) -> Tensor:
    """The homography from weighted correspondences: the weighted analogue of Yi et al.'s
    eight-point step for ``x2 ~ H x1`` (normalised DLT, Hartley and Zisserman algorithm 4.2).

    Both point sets are Hartley-normalised with the weights (:func:`hartley_normalization`),
    ``H_n`` is the eigenvector of ``A^T diag(w) A`` with the smallest eigenvalue (each weight
    counts for both rows of its correspondence), and ``H = T2^-1 H_n T1``.

    Args:
        x1, x2: ``(B, N, 2)`` (or ``(N, 2)``) points, ``N >= 4``.
        w: ``(B, N)`` non-negative weights; None: all 1.
        eps: relative eigen-gap below which the gradient is dropped (:func:`smallest_eigenvector`).

    Returns:
        ``H`` ``(B, 3, 3)`` (or ``(3, 3)``) with ``||H||_F = 1`` and ``H[2, 2] >= 0``.
    """
    batched = x1.dim() == 3
    x1, x2, w = _points(x1, x2, w, "weighted_dlt", MIN_MATCHES["homography"])
    T1, T2 = hartley_normalization(x1, w), hartley_normalization(x2, w)
    A = dlt_matrix(_apply(T1, x1), _apply(T2, x2))
    w2 = w.repeat_interleave(2, dim=1)
    h = smallest_eigenvector(A.transpose(1, 2) @ (w2[..., None] * A), eps)
    T2_inv = torch.zeros_like(T2)
    T2_inv[:, 0, 0] = 1 / T2[:, 0, 0]
    T2_inv[:, 1, 1] = 1 / T2[:, 1, 1]
    T2_inv[:, :2, 2] = -T2[:, :2, 2] / T2[:, :1, :1].squeeze(-1)
    T2_inv[:, 2, 2] = 1.0
    H = T2_inv @ h.reshape(-1, 3, 3) @ T1
    H = H / H.flatten(1).norm(dim=1)[:, None, None]
    sign = torch.where(H[:, 2, 2] < 0, -1.0, 1.0).to(H.dtype)
    H = H * sign[:, None, None]
    return H if batched else H[0]


def apply_homography(H: Tensor, x: Tensor) -> Tensor:
    """``H`` ``(B, 3, 3)`` applied to points ``(B, N, 2)``, or ``(3, 3)`` to ``(N, 2)``.

    >>> apply_homography(2 * torch.eye(3), torch.tensor([[1.0, 2.0]]))
    tensor([[1., 2.]])
    """
    if H.dim() == 2:
        return _apply(H[None], x[None])[0]
    return _apply(H, x)


def transfer_error(x1: Tensor, x2: Tensor, H: Tensor, symmetric: bool = False) -> Tensor:
    """The transfer error ``||x2 - H x1||`` ``(B, N)`` (Hartley and Zisserman eq. 4.6), or the
    symmetric transfer error ``||x1 - H^-1 x2|| + ||x2 - H x1||`` (eq. 4.7 without squares).

    >>> H = torch.eye(3); H[0, 2] = 2.0
    >>> transfer_error(torch.zeros(1, 1, 2), torch.tensor([[[2.0, 1.0]]]), H[None])
    tensor([[1.]])
    """
    if H.dim() == 2:
        H = H[None]
    x1, x2, _ = _points(x1, x2, None, "transfer_error")
    err = (x2 - _apply(H, x1)).norm(dim=-1)
    if symmetric:
        err = err + (x1 - _apply(torch.linalg.inv(H), x2)).norm(dim=-1)
    return err


def corner_error(
    H_est: Tensor, H_true: Tensor, width: Tensor | float, height: Tensor | float
) -> Tensor:
    """Mean distance ``(B,)`` between the four image-1 corners mapped by ``H_est`` and by
    ``H_true`` (DeTone et al. 2016's mean corner error; SuperPoint's homography accuracy).

    ``width``, ``height``: image 1's size, scalars or ``(B,)``; corners are ``(0, 0), (w, 0),
    (w, h), (0, h)``.
    """
    if H_est.dim() == 2:
        H_est, H_true = H_est[None], H_true[None]
    B = H_est.shape[0]
    w = torch.as_tensor(width, dtype=H_est.dtype, device=H_est.device).expand(B)
    h = torch.as_tensor(height, dtype=H_est.dtype, device=H_est.device).expand(B)
    z = torch.zeros_like(w)
    corners = torch.stack([torch.stack(c, -1) for c in ((z, z), (w, z), (w, h), (z, h))], 1)
    return (_apply(H_est, corners) - _apply(H_true.to(H_est.dtype), corners)).norm(dim=-1).mean(1)


def _epipolar_terms(x1: Tensor, x2: Tensor, E: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if E.dim() == 2:
        E = E[None]
    x1, x2, _ = _points(x1, x2, None, "epipolar distance")
    a, b = _homogeneous(x1), _homogeneous(x2)
    Ex1 = a @ E.transpose(1, 2)  # epipolar lines in image 2, (B, N, 3)
    Etx2 = b @ E  # epipolar lines in image 1
    return (b * Ex1).sum(-1), Ex1, Etx2


def symmetric_epipolar_distance(x1: Tensor, x2: Tensor, E: Tensor) -> Tensor:
    """Squared symmetric epipolar distance ``(B, N)``: ``(x2^T E x1)^2 (1 / |(E x1)_12|^2 + 1 /
    |(E^T x2)_12|^2)``, the sum of squared point-to-epipolar-line distances in both images (the
    ``episym`` distance Yi et al. label inliers with, threshold 1e-4 on normalised points)."""
    r, l2, l1 = _epipolar_terms(x1, x2, E)
    tiny = torch.finfo(r.dtype).tiny
    return r.square() * (
        1 / l2[..., :2].square().sum(-1).clamp_min(tiny)
        + 1 / l1[..., :2].square().sum(-1).clamp_min(tiny)
    )


def sampson_distance(x1: Tensor, x2: Tensor, E: Tensor) -> Tensor:
    """Sampson distance ``(B, N)``: ``(x2^T E x1)^2 / (|(E x1)_12|^2 + |(E^T x2)_12|^2)``, the
    first-order geometric error (Hartley and Zisserman eq. 11.9); squared units.

    Library API (exported, tested): nothing in visrep's pipelines calls it; the labels and
    scores use :func:`symmetric_epipolar_distance` (Yi et al.'s choice)."""
    r, l2, l1 = _epipolar_terms(x1, x2, E)
    den = l2[..., :2].square().sum(-1) + l1[..., :2].square().sum(-1)
    return r.square() / den.clamp_min(torch.finfo(r.dtype).tiny)


def skew(t: Tensor) -> Tensor:
    """The cross-product matrix ``[t]_x`` ``(..., 3, 3)`` of ``t`` ``(..., 3)``."""
    z = torch.zeros_like(t[..., 0])
    rows = [(z, -t[..., 2], t[..., 1]), (t[..., 2], z, -t[..., 0]), (-t[..., 1], t[..., 0], z)]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def essential_from_pose(R: Tensor, t: Tensor) -> Tensor:
    """``E = [t]_x R`` for the pose ``X2 = R X1 + t`` (Hartley and Zisserman eq. 9.12)."""
    return skew(t) @ R


def decompose_essential(E: Tensor) -> tuple[Tensor, Tensor]:
    """The four pose candidates of an essential matrix ``(B, 3, 3)``: rotations ``(B, 4, 3, 3)``
    and unit translations ``(B, 4, 3)``, ordered ``(R1, t), (R1, -t), (R2, t), (R2, -t)``
    (Hartley and Zisserman result 9.19; ``E`` need not be exactly rank 2)."""
    if E.dim() == 2:
        E = E[None]
    U, _, Vh = torch.linalg.svd(E)
    # proper rotations: flip the sign of U / V^T where their determinant is -1
    U = U * torch.where(torch.linalg.det(U) < 0, -1.0, 1.0).to(E.dtype)[:, None, None]
    Vh = Vh * torch.where(torch.linalg.det(Vh) < 0, -1.0, 1.0).to(E.dtype)[:, None, None]
    W = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=E.dtype,
                     device=E.device)  # fmt: skip
    R1, R2 = U @ W @ Vh, U @ W.T @ Vh
    t = U[:, :, 2]
    Rs = torch.stack([R1, R1, R2, R2], 1)
    ts = torch.stack([t, -t, t, -t], 1)
    return Rs, ts


def recover_pose(
    E: Tensor, x1: Tensor, x2: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The pose ``(R, t)`` of ``E`` that puts the most (masked) correspondences in front of
    both cameras (the cheirality check of OpenCV's ``recoverPose``).

    Each point's depth in camera 1 is the least-squares ``d1`` of ``x2_h ~ d1 R x1_h + t``;
    its depth in camera 2 is the third component of ``d1 R x1_h + t``.

    Args:
        E: ``(B, 3, 3)``; x1, x2: ``(B, N, 2)`` normalised points; mask: ``(B, N)`` points that
            vote (default all).

    Returns:
        ``R`` ``(B, 3, 3)``, unit ``t`` ``(B, 3)`` and the number of points in front ``(B,)``.
    """
    batched = E.dim() == 3
    x1, x2, m = _points(x1, x2, mask, "recover_pose")
    E = E if batched else E[None]
    Rs, ts = decompose_essential(E)  # (B, 4, 3, 3), (B, 4, 3)
    a, b = _homogeneous(x1), _homogeneous(x2)
    Ra = torch.einsum("bkij,bnj->bkni", Rs, a)  # (B, 4, N, 3)
    c1 = torch.linalg.cross(b[:, None].expand_as(Ra), Ra)
    c2 = torch.linalg.cross(b[:, None].expand_as(Ra), ts[:, :, None].expand_as(Ra))
    d1 = -(c1 * c2).sum(-1) / c1.square().sum(-1).clamp_min(torch.finfo(E.dtype).tiny)
    d2 = d1 * Ra[..., 2] + ts[:, :, None, 2]
    front = ((d1 > 0) & (d2 > 0)).to(E.dtype) * m[:, None]
    count = front.sum(-1)  # (B, 4)
    best = count.argmax(1)
    idx = torch.arange(E.shape[0], device=E.device)
    R, t, n = Rs[idx, best], ts[idx, best], count[idx, best]
    return (R, t, n) if batched else (R[0], t[0], n[0])


def rotation_error_deg(R_est: Tensor, R_true: Tensor) -> Tensor:
    """The angle (degrees) of ``R_est^T R_true``: ``arccos((tr - 1) / 2)``, clamped to [-1, 1]."""
    tr = (R_est.transpose(-1, -2) @ R_true).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.arccos(((tr - 1) / 2).clamp(-1.0, 1.0)))


def translation_error_deg(t_est: Tensor, t_true: Tensor, sign_invariant: bool = False) -> Tensor:
    """The angle (degrees) between two translation directions (``t`` of ``E`` has no scale);
    ``sign_invariant``: of ``+-t_est``, the closer (Yi et al.'s evaluation)."""
    cos = (t_est * t_true).sum(-1) / (t_est.norm(dim=-1) * t_true.norm(dim=-1)).clamp_min(1e-30)
    if sign_invariant:
        cos = cos.abs()
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
