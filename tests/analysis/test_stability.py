"""NAIS-Net stability analysis: margins, Jacobian spectral radius, trajectories, noise, depth."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from visrep.analysis.model_stats import model_stats
from visrep.analysis.stability import (
    block_trajectory,
    compute_profile,
    constraint_margins,
    conv_gershgorin_margins,
    dense_spectral_radius,
    depth_histogram,
    fc_frobenius_margin,
    jacobian_spectral_radius,
    model_spectral_radii,
    model_trajectories,
    noise_response,
    step_flops,
    unroll_settings,
)
from visrep.errors import ConfigError, ShapeError
from visrep.models import create_backbone
from visrep.models.layers.naisnet import NaisNetConvBlock, NaisNetFCBlock, iter_naisnet_blocks


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    # Tiny tensors: OpenMP threads only contend on a shared 2-core machine (100x slower convs).
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------- margins
def test_fc_frobenius_margin_reference() -> None:
    R = 0.5 * torch.eye(4, dtype=torch.float64)  # ||R^T R||_F = 0.25 * sqrt(4) = 0.5
    assert torch.isclose(fc_frobenius_margin(R, 0.1), torch.tensor(0.8 - 0.5, dtype=torch.float64))


def test_conv_gershgorin_margins_reference() -> None:
    k = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    k[0, 0, 1, 1], k[1, 1, 1, 1] = -1.2, -0.9  # delta = 0.2, -0.1
    k[0, 1, 0, 0], k[0, 0, 2, 2] = 0.3, -0.1  # off-centre sum of map 0: 0.4
    k[1, 0, 1, 1] = 0.5  # off-centre sum of map 1: 0.5
    m = conv_gershgorin_margins(k, 0.01)
    assert torch.allclose(
        m, torch.tensor([0.99 - 0.2 - 0.4, 0.99 - 0.1 - 0.5], dtype=torch.float64)
    )


def test_constraint_margins_of_a_model() -> None:
    m = create_backbone("naisnet", in_chans=1, num_classes=3, channels=(4, 8), steps=2)
    margins = constraint_margins(m)
    assert [b.name for b in margins] == ["features.2", "features.5"]
    assert all(b.kind == "conv" and b.constrained and b.margin >= -1e-6 for b in margins)
    assert len(margins[1].per_map) == 8
    fc = torch.nn.Sequential(NaisNetFCBlock(3, 5), NaisNetFCBlock(5, 5, unconstrained=True))
    with torch.no_grad():
        fc[0].R.mul_(5)
    out = constraint_margins(fc)
    assert out[0].margin < 0 and out[0].per_map is None  # left the region
    assert not out[1].constrained and len(out[1].per_map) == 5


# --------------------------------------------------------------------------- Jacobian
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_power_iteration_matches_dense_eigenvalues(kind: str) -> None:
    if kind == "fc":
        b = NaisNetFCBlock(3, 5, eps=0.1, activation="tanh").double()
        u, x = torch.randn(3, 3), torch.randn(3, 5)
    else:
        b = NaisNetConvBlock(2, 2, eps=0.1, eta=0.2, activation="tanh").double()
        u, x = torch.randn(3, 2, 3, 3), torch.randn(3, 2, 3, 3)
    u, x = u.double(), x.double()
    est = jacobian_spectral_radius(b, u, x, n_iter=400, generator=_gen())
    ref = dense_spectral_radius(b, u, x)
    assert torch.allclose(est, ref, rtol=1e-2)


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_active_subspace_radius_of_relu_blocks(kind: str) -> None:
    if kind == "fc":
        b = NaisNetFCBlock(3, 6, eps=0.1, activation="relu").double()
        u, x = torch.randn(2, 3), torch.randn(2, 6)
    else:
        b = NaisNetConvBlock(2, 2, eps=0.1, eta=0.2, activation="relu").double()
        u, x = torch.randn(2, 2, 3, 3), torch.randn(2, 2, 3, 3)
    u, x = u.double(), x.double()
    full = jacobian_spectral_radius(b, u, x, n_iter=400, generator=_gen())
    act = jacobian_spectral_radius(b, u, x, n_iter=400, generator=_gen(), active=True)
    assert torch.allclose(full, torch.ones(2, dtype=torch.float64), atol=1e-6)  # inactive units
    with torch.no_grad():
        pre = (b.operator()(x) + b.drive(u)).flatten(1)
    for i in range(2):  # reference: rho(I + h A_SS) from the dense Jacobian on the active set S
        J = torch.autograd.functional.jacobian(
            lambda s, i=i: b.step(s, b.drive(u[i : i + 1])), x[i : i + 1]
        )
        J = J.reshape(pre.shape[1], pre.shape[1])
        S = (pre[i] > 0).nonzero().squeeze(1)
        ref = torch.linalg.eigvals(J[S][:, S]).abs().max()
        assert torch.isclose(act[i], ref, rtol=1e-2) and act[i] < 1


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_projected_tanh_blocks_are_contractive_at_random_states(kind: str) -> None:
    if kind == "fc":
        b = NaisNetFCBlock(4, 16, activation="tanh")
        u = torch.randn(8, 4)
    else:
        b = NaisNetConvBlock(3, 4, activation="tanh")
        u = torch.randn(8, 3, 6, 6)
    with torch.no_grad():  # push the state weights far outside, then project back (Alg. 1-2)
        for n, p in b.named_parameters():
            if not n.startswith("input."):
                p.mul_(20)
    b.reproject_()
    # moderate states: where tanh is saturated sigma' -> 0 and rho(J) -> 1 from below (Sec. 4)
    x = 0.5 * torch.randn(b.drive(u).shape)
    rho = jacobian_spectral_radius(b, u, x, n_iter=200, generator=_gen())
    assert rho.shape == (8,) and (rho < 1).all()


def test_unconstrained_block_can_be_unstable() -> None:
    b = NaisNetFCBlock(2, 4, unconstrained=True, h=1.0, activation="tanh").double()
    with torch.no_grad():
        b.A.copy_(-3.0 * torch.eye(4))  # J = I - 3 sigma' has |eigenvalue| up to 2
        b.input.weight.zero_()
        b.input.bias.zero_()
    u, x = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    rho = jacobian_spectral_radius(b, u, x, n_iter=20, generator=_gen())
    assert torch.allclose(rho, torch.full((2,), 2.0, dtype=torch.float64))


def test_jacobian_bad_input_raises() -> None:
    b = NaisNetFCBlock(2, 4)
    with pytest.raises(ShapeError, match="state shape"):
        jacobian_spectral_radius(b, torch.randn(2, 2), torch.randn(2, 3))
    with pytest.raises(ConfigError, match="n_iter"):
        jacobian_spectral_radius(b, torch.randn(2, 2), n_iter=1)
    with pytest.raises(ShapeError, match="max_dim"):
        dense_spectral_radius(b, torch.randn(1, 2), torch.randn(1, 4), max_dim=2)


# --------------------------------------------------------------------------- trajectories
def test_block_trajectory_converges_to_distinct_fixed_points() -> None:
    b = NaisNetFCBlock(3, 6, eps=0.2, activation="tanh").double()
    u = torch.randn(2, 3, dtype=torch.float64)
    norms, x = block_trajectory(b, u, steps=200)
    assert norms.shape == (2, 200)
    assert (norms[:, -1] < 1e-8).all() and (norms[:, -1] < norms[:, 0]).all()
    assert (x[0] - x[1]).norm() > 1e-2


def test_model_trajectories_and_spectral_radii() -> None:
    m = create_backbone(
        "naisnet", in_chans=1, num_classes=3, channels=(4, 8), steps=3, activation="tanh"
    ).eval()
    x = torch.randn(2, 1, 8, 8)
    traj = model_trajectories(m, x, steps=4)
    assert set(traj) == {"features.2", "features.5"} and traj["features.5"].shape == (2, 4)
    rho = model_spectral_radii(m, x, at_steps=(0, 2), n_iter=30, generator=_gen())
    assert rho["features.2"].shape == (2, 2) and (rho["features.2"] < 1).all()


# --------------------------------------------------------------------------- noise, depth
def test_noise_response() -> None:
    b = NaisNetFCBlock(4, 8, steps=20, activation="tanh").eval()
    x = torch.randn(5, 4)
    r = noise_response(b, x, [0.0, 0.1, 1.0], draws=2, generator=_gen())
    assert r.distances.shape == (3, 10)
    assert r.mean_distance[0] == 0 and r.mean_distance[1] < r.mean_distance[2]
    assert (r.max_distance >= r.mean_distance).all()


def test_depth_histogram_per_class() -> None:
    m = create_backbone(
        "naisnet_fc",
        in_chans=1,
        num_classes=3,
        img_size=4,
        width=8,
        steps=2,
        max_steps=60,
        tol=1e-2,
    )
    m.train()
    g = _gen()
    batches = [
        (torch.randn(6, 1, 4, 4, generator=g) * s, torch.tensor([0, 1, 2, 0, 1, 2]))
        for s in (0.01, 1.0)
    ]
    h = depth_histogram(m, batches)
    assert m.training  # restored
    assert h.classes == [0, 1, 2]
    for counts in h.counts.values():
        assert counts.shape == (3, 61) and counts.sum() == 12 and (counts.sum(1) == 4).all()
    mean = h.mean_depth()["blocks.0"]
    assert mean.shape == (3,) and np.all((mean >= 1) & (mean <= 60))
    with pytest.raises(ConfigError, match="no NAIS-Net"):
        depth_histogram(torch.nn.Linear(2, 2), batches)


# --------------------------------------------------------------------------- compute
def test_step_flops_by_hand() -> None:
    fc = NaisNetFCBlock(3, 6)
    assert step_flops(fc, (6,)) == 2 * 6 * 6 + 6  # A x, then tanh per element
    conv = NaisNetConvBlock(2, 4, kernel_size=3)
    assert step_flops(conv, (4, 5, 5)) == 2 * (4 * 9) * 100 + 100


def test_compute_profile_matches_model_stats_and_depth() -> None:
    m = create_backbone("naisnet_fc", in_chans=1, num_classes=3, img_size=4, width=8, steps=3)
    x = torch.randn(1, 1, 4, 4)
    full = {"blocks.0": 3.0, "blocks.1": 3.0}
    p = compute_profile(m, x, full)
    assert p.block_steps_fixed == 6 and p.saved_fraction == 0 and p.flops_fixed == p.flops_adaptive
    # model_stats counts each stage's matmul (2 n^2) and the R^T R products (2 n^3 per block),
    # not the tanh; the profile counts the tanh (n per stage) and no weight preparation
    total = model_stats(m, x).total_flops
    assert p.flops_fixed == total + 2 * 3 * 8 - 2 * 2 * 8**3
    half = compute_profile(m, x, {"blocks.0": 1.0, "blocks.1": 2.0})
    saved = 3 * p.step_flops["blocks.0"]
    assert half.flops_adaptive == p.flops_fixed - saved
    assert half.saved_fraction == pytest.approx(saved / p.flops_fixed)
    assert half.block_steps_adaptive == 3.0
    with pytest.raises(ConfigError, match="no NAIS-Net"):
        compute_profile(torch.nn.Linear(2, 2), torch.randn(1, 2), {})


def test_unroll_settings_restores_on_error() -> None:
    m = create_backbone("naisnet_fc", in_chans=1, num_classes=3, img_size=4, width=8, steps=3)
    blocks = [b for _, b in iter_naisnet_blocks(m)]
    with pytest.raises(RuntimeError), unroll_settings(m, tol=None, max_steps=7):
        assert all(b.tol is None and b.max_steps == 7 for b in blocks)
        raise RuntimeError
    assert all(b.tol == 1e-3 and b.max_steps == 3 for b in blocks)
    with unroll_settings(m, max_steps=9):  # tol kept
        assert all(b.tol == 1e-3 and b.max_steps == 9 for b in blocks)
    with pytest.raises(ConfigError, match="max_steps"), unroll_settings(m, max_steps=0):
        pass
