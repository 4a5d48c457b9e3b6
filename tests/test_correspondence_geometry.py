"""Two-view geometry of learned correspondences: the weighted eight-point algorithm and weighted
DLT recover known geometry, ignore zero-weight outliers, and have exact gradients; the
distances and the pose recovery against analytic values and OpenCV."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visrep.errors import ShapeError
from visrep.models.correspondence.geometry import (
    apply_homography,
    corner_error,
    essential_from_pose,
    recover_pose,
    rotation_error_deg,
    sampson_distance,
    smallest_eigenvector,
    symmetric_epipolar_distance,
    transfer_error,
    translation_error_deg,
    weighted_dlt,
    weighted_eight_point,
)


def rotation(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, float64."""
    theta = axis_angle.norm()
    k = axis_angle / theta
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + theta.sin() * K + (1 - theta.cos()) * K @ K


def two_views(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``n`` points seen by two calibrated cameras (``X2 = R X1 + t``, both depths > 0):
    normalised image points ``x1, x2`` ``(n, 2)``, ``R``, ``t``."""
    g = torch.Generator().manual_seed(seed)
    R = rotation(0.3 * (torch.rand(3, generator=g, dtype=torch.float64) - 0.5))
    t = torch.rand(3, generator=g, dtype=torch.float64) - 0.5
    t[0] += 1.0  # a sideways baseline
    X = torch.rand(4 * n, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 4.0])
    X = X - torch.tensor([1.0, 1.0, -2.0])  # depth in [2, 6]
    X2 = X @ R.T + t
    keep = X2[:, 2] > 0.5
    X, X2 = X[keep][:n], X2[keep][:n]
    return X[:, :2] / X[:, 2:], X2[:, :2] / X2[:, 2:], R, t


def random_homography(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    H = torch.eye(3, dtype=torch.float64) + 0.2 * (
        torch.rand(3, 3, generator=g, dtype=torch.float64) - 0.5
    )
    H[:2, 2] = 40 * (torch.rand(2, generator=g, dtype=torch.float64) - 0.5)
    H[2, :2] = 4e-4 * (torch.rand(2, generator=g, dtype=torch.float64) - 0.5)
    return H


def unit(M: torch.Tensor) -> torch.Tensor:
    return M / M.norm()


def same_up_to_sign(A: torch.Tensor, B: torch.Tensor, atol: float) -> bool:
    A, B = unit(A), unit(B)
    return bool(torch.allclose(A, B, atol=atol) or torch.allclose(A, -B, atol=atol))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_point_recovers_a_known_essential_matrix(seed):
    x1, x2, R, t = two_views(40, seed)
    E = weighted_eight_point(x1, x2)
    assert E.shape == (3, 3) and math.isclose(float(E.norm()), 1.0, rel_tol=1e-9)
    assert same_up_to_sign(E, essential_from_pose(R, t), atol=1e-8)
    # batched, float32
    Eb = weighted_eight_point(torch.stack([x1, x1]).float(), torch.stack([x2, x2]).float())
    assert Eb.shape == (2, 3, 3) and same_up_to_sign(
        Eb[1].double(), essential_from_pose(R, t), 1e-3
    )


def test_zero_weight_outliers_do_not_change_the_estimates():
    x1, x2, R, t = two_views(30, 3)
    g = torch.Generator().manual_seed(9)
    o1, o2 = (
        torch.rand(20, 2, generator=g, dtype=torch.float64),
        torch.rand(20, 2, generator=g, dtype=torch.float64),
    )
    w = torch.cat(
        [
            torch.rand(30, generator=g, dtype=torch.float64) + 0.5,
            torch.zeros(20, dtype=torch.float64),
        ]
    )
    E_in = weighted_eight_point(x1, x2, w[:30])
    E_all = weighted_eight_point(torch.cat([x1, o1]), torch.cat([x2, o2]), w)
    assert same_up_to_sign(E_all, E_in, atol=1e-10)
    assert same_up_to_sign(E_all, essential_from_pose(R, t), atol=1e-8)
    # with unit weights the outliers do change it
    assert not same_up_to_sign(
        weighted_eight_point(torch.cat([x1, o1]), torch.cat([x2, o2])), E_in, atol=1e-3
    )
    H = random_homography(4)
    p1 = torch.rand(30, 2, generator=g, dtype=torch.float64) * 500
    p2 = apply_homography(H, p1)
    q1, q2 = (
        torch.rand(20, 2, generator=g, dtype=torch.float64) * 500,
        torch.rand(20, 2, generator=g, dtype=torch.float64) * 500,
    )
    H_in = weighted_dlt(p1, p2, w[:30])
    H_all = weighted_dlt(torch.cat([p1, q1]), torch.cat([p2, q2]), w)
    assert torch.allclose(H_all, H_in, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_dlt_recovers_a_known_homography(seed):
    H = random_homography(seed)
    g = torch.Generator().manual_seed(seed + 10)
    x1 = torch.rand(25, 2, generator=g, dtype=torch.float64) * torch.tensor([640.0, 480.0])
    x2 = apply_homography(H, x1)
    w = torch.rand(25, generator=g, dtype=torch.float64) + 0.1
    H_est = weighted_dlt(x1, x2, w)
    assert math.isclose(float(H_est.norm()), 1.0, rel_tol=1e-9) and H_est[2, 2] > 0
    assert torch.allclose(H_est, unit(H) * torch.sign(H[2, 2]), atol=1e-9)
    assert float(transfer_error(x1, x2, H_est).max()) < 1e-6
    # exactly four points determine it
    assert torch.allclose(weighted_dlt(x1[:4], x2[:4]), unit(H), atol=1e-8)
    # float32, batched
    Hb = weighted_dlt(x1[None].float(), x2[None].float(), w[None].float())
    assert Hb.shape == (1, 3, 3) and torch.allclose(Hb[0].double(), unit(H), atol=1e-4)


def test_smallest_eigenvector_gradient_matches_eigh_autograd():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2) + torch.diag(torch.arange(6, dtype=torch.float64))
    probe = torch.randn(3, 6, generator=g, dtype=torch.float64)
    a1 = A.clone().requires_grad_()
    (smallest_eigenvector(a1) * probe).sum().backward()
    a2 = A.clone().requires_grad_()
    (torch.linalg.eigh(a2)[1][..., 0] * probe).sum().backward()
    # eigh's gradient is for symmetric perturbations too: compare the symmetric parts
    sym = lambda G: 0.5 * (G + G.transpose(1, 2))  # noqa: E731
    assert torch.allclose(sym(a1.grad), sym(a2.grad), atol=1e-10)


def test_degenerate_weights_give_a_finite_gradient():
    x1, x2, _, _ = two_views(12, 5)
    w = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    E = weighted_eight_point(x1, x2, w)
    (E * torch.arange(9.0, dtype=torch.float64).reshape(3, 3)).sum().backward()
    assert torch.isfinite(E).all() and torch.isfinite(w.grad).all()
    for dtype in (torch.float32, torch.float64):
        w = torch.zeros(12, dtype=dtype, requires_grad=True)
        H = weighted_dlt((100 * x1).to(dtype), (100 * x2).to(dtype), w)
        (H * torch.arange(9.0, dtype=dtype).reshape(3, 3)).sum().backward()
        assert torch.isfinite(H).all() and torch.isfinite(w.grad).all()


def test_gradcheck_weighted_eight_point():
    x1, x2, R, t = two_views(10, 6)
    g = torch.Generator().manual_seed(1)
    w = torch.rand(10, generator=g, dtype=torch.float64) + 0.5
    x1 = x1 + 1e-2 * torch.randn(x1.shape, generator=g, dtype=torch.float64)  # a full-rank X
    ref = essential_from_pose(R, t)

    def f(a, b, ww):
        E = weighted_eight_point(a, b, ww)
        return E * torch.sign((E * ref).sum())  # the eigenvector's sign is arbitrary

    inputs = tuple(v.clone().requires_grad_() for v in (x1, x2, w))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_gradcheck_weighted_dlt():
    g = torch.Generator().manual_seed(2)
    H = torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(
        3, 3, generator=g, dtype=torch.float64
    )
    x1 = torch.rand(6, 2, generator=g, dtype=torch.float64) * 4 - 2  # well-conditioned units
    x2 = apply_homography(H, x1)
    x2 = x2 + 1e-2 * torch.randn(x2.shape, generator=g, dtype=torch.float64)
    w = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    inputs = tuple(v.clone().requires_grad_() for v in (x1, x2, w))
    assert torch.autograd.gradcheck(weighted_dlt, inputs, eps=1e-6, atol=1e-5)


def test_epipolar_distances_on_an_analytic_case():
    # R = I, t = (1, 0, 0): epipolar lines are horizontal, v' = v; an offset of d in v' is a
    # distance d to the line in each image
    E = essential_from_pose(
        torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    )
    x1 = torch.tensor([[[0.3, 0.2], [-0.5, 0.1]]], dtype=torch.float64)
    d = torch.tensor([0.0, 0.05], dtype=torch.float64)
    x2 = torch.stack([x1[0, :, 0] - 0.4, x1[0, :, 1] + d], -1)[None]
    assert torch.allclose(symmetric_epipolar_distance(x1, x2, E)[0], 2 * d**2)
    assert torch.allclose(sampson_distance(x1, x2, E)[0], d**2 / 2)


def test_transfer_and_corner_errors():
    H = torch.eye(3, dtype=torch.float64)
    H[:2, 2] = torch.tensor([3.0, 4.0])
    x1 = torch.tensor([[[1.0, 1.0], [2.0, 5.0]]], dtype=torch.float64)
    assert torch.allclose(
        transfer_error(x1, x1, H[None]), torch.full((1, 2), 5.0, dtype=torch.float64)
    )
    assert torch.allclose(
        transfer_error(x1, x1, H[None], symmetric=True),
        torch.full((1, 2), 10.0, dtype=torch.float64),
    )
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(corner_error(H, eye, 640, 480), torch.tensor([5.0], dtype=torch.float64))
    # the scale of H does not matter
    P = random_homography(3)
    assert float(corner_error(P * -7.0, P, 640, 480)) < 1e-9


@pytest.mark.parametrize("seed", [0, 1])
def test_recover_pose_picks_the_cheiral_candidate(seed):
    x1, x2, R, t = two_views(50, seed)
    E = weighted_eight_point(x1, x2)
    R_est, t_est, n = recover_pose(E, x1, x2)
    assert int(n) == 50
    assert float(rotation_error_deg(R_est, R)) < 1e-5
    assert float(translation_error_deg(t_est, t)) < 1e-5  # the sign too
    cv2 = pytest.importorskip("cv2")
    _, R_cv, t_cv, _ = cv2.recoverPose(E.numpy(), x1.numpy(), x2.numpy())
    assert np.allclose(R_cv, R_est.numpy(), atol=1e-6)
    assert np.allclose(t_cv[:, 0], t_est.numpy(), atol=1e-6)


def test_bad_input_is_one_shape_error():
    x = torch.zeros(2, 10, 2)
    with pytest.raises(
        ShapeError, match=r"weighted_eight_point: needs at least 8 correspondences, got 7"
    ):
        weighted_eight_point(x[:, :7], x[:, :7])
    with pytest.raises(ShapeError, match=r"weighted_dlt: needs at least 4 correspondences, got 3"):
        weighted_dlt(x[:, :3], x[:, :3])
    with pytest.raises(ShapeError, match=r"\(B, N, 2\) or \(N, 2\) points, got \(2, 10, 3\)"):
        weighted_dlt(torch.zeros(2, 10, 3), torch.zeros(2, 10, 3))
    with pytest.raises(ShapeError, match=r"weights must be \(B, N\) = \(2, 10\), got \(10,\)"):
        weighted_eight_point(x, x, torch.ones(10))
    with pytest.raises(ShapeError, match=r"smallest_eigenvector: a must be \(B, K, K\)"):
        smallest_eigenvector(torch.zeros(3, 4))
