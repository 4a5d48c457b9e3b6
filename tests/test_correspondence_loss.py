"""Yi et al. 2018's losses: class-balanced cross-entropy on an analytic case, the geometry
term's sign invariance and zero at the truth, and the step that switches it on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.test_correspondence_geometry import random_homography, two_views
from visrep.errors import ConfigError, ShapeError
from visrep.losses.correspondence import (
    CorrespondenceLoss,
    balanced_classification_loss,
    correspondence_loss,
    geometry_loss,
)
from visrep.models.correspondence.geometry import apply_homography, essential_from_pose


def test_classification_loss_on_an_analytic_case():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [1.0, 1.0, -2.0, 3.0]])
    labels = torch.tensor([[True, False, False, False], [True, True, True, False]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    pair0 = 0.5 * sp(-2.0) + 0.5 * (sp(-1.0) + sp(0.5) + sp(0.0)) / 3
    pair1 = 0.5 * (sp(-1.0) + sp(-1.0) + sp(2.0)) / 3 + 0.5 * sp(3.0)
    got = balanced_classification_loss(logits, labels)
    assert math.isclose(float(got), (pair0 + pair1) / 2, rel_tol=1e-6)
    # = BCE with the balancing weights gamma = 1 / (2 n_class)
    n_pos = labels.sum(1, keepdim=True).float()
    gamma = torch.where(labels, 0.5 / n_pos, 0.5 / (4 - n_pos))
    bce = F.binary_cross_entropy_with_logits(logits, labels.float(), weight=gamma, reduction="none")
    assert torch.allclose(got, bce.sum(1).mean())
    # padded matches do not count
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    m0 = 0.5 * sp(-2.0) + 0.5 * sp(-1.0)
    assert math.isclose(
        float(balanced_classification_loss(logits, labels, mask)), (m0 + pair1) / 2, rel_tol=1e-6
    )
    # a pair with one class only weighs it by one half too, as the authors' code
    # (0.5 / max(num_pos, 1) and 0.5 / max(num_neg, 1), the empty class contributing 0)
    only_pos = balanced_classification_loss(logits[:1, :1], labels[:1, :1])
    assert math.isclose(float(only_pos), 0.5 * sp(-2.0), rel_tol=1e-6)
    only_neg = balanced_classification_loss(logits[:1, 1:], labels[:1, 1:])
    assert math.isclose(float(only_neg), 0.5 * (sp(-1.0) + sp(0.5) + sp(0.0)) / 3, rel_tol=1e-6)


def test_geometry_loss_is_sign_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    E = torch.randn(4, 3, 3, generator=g)
    assert float(geometry_loss(-3 * E, E)) < 1e-10 and float(geometry_loss(E, 0.1 * E)) < 1e-10
    other = torch.randn(4, 3, 3, generator=g)
    e, t = E.flatten(1) / E.flatten(1).norm(dim=1, keepdim=True), other.flatten(1)
    t = t / t.norm(dim=1, keepdim=True)
    want = torch.minimum((e - t).square().sum(1), (e + t).square().sum(1))
    assert torch.allclose(geometry_loss(E, other), want.mean())
    assert torch.allclose(geometry_loss(E, other, squared=False), want.sqrt().mean())


def test_the_geometry_term_is_zero_for_inlier_weights_on_exact_geometry():
    x1, x2, R, t = two_views(30, 0)
    matches = torch.cat([x1, x2], 1)[None].float()
    labels = torch.ones(1, 30, dtype=torch.bool)
    logits = torch.full((1, 30), 3.0)
    E = essential_from_pose(R, t)[None].float()
    total, parts = correspondence_loss(logits, labels, matches, E, "essential")
    assert float(parts["geometry"]) < 1e-5
    assert math.isclose(
        float(total), float(parts["classification"]) + 0.1 * float(parts["geometry"]), rel_tol=1e-6
    )
    H = random_homography(1)
    p1 = torch.rand(20, 2, dtype=torch.float64) * 2 - 1
    p2 = apply_homography(H / H[2, 2], p1)
    m = torch.cat([p1, p2], 1)[None]
    _, parts = correspondence_loss(
        torch.full((1, 20), 3.0, dtype=torch.float64),
        torch.ones(1, 20, dtype=torch.bool),
        m,
        H[None],
        "homography",
    )
    assert float(parts["geometry"]) < 1e-12


def test_the_geometry_term_switches_on_after_the_configured_steps():
    x1, x2, R, t = two_views(12, 1)
    args = (
        torch.randn(1, 12),
        torch.ones(1, 12, dtype=torch.bool),
        torch.cat([x1, x2], 1)[None].float(),
        essential_from_pose(R, t)[None].float(),
    )
    loss = CorrespondenceLoss("essential", alpha=1.0, beta=0.1, geometry_after_steps=100)
    before, parts_before = loss(*args, step=99)
    after, parts_after = loss(*args, step=100)
    assert "geometry" not in parts_before and "geometry" in parts_after
    assert torch.allclose(before, parts_before["classification"])
    assert torch.allclose(after, parts_after["classification"] + 0.1 * parts_after["geometry"])
    # the module is the function
    total, _ = correspondence_loss(*args, kind="essential")
    assert torch.allclose(after, total)


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="geometry must be one of essential, homography"):
        CorrespondenceLoss("fundamental")
    with pytest.raises(ConfigError, match="alpha and beta must be >= 0"):
        CorrespondenceLoss(alpha=-1.0)
    with pytest.raises(ShapeError, match=r"logits and labels must both be \(B, N\)"):
        balanced_classification_loss(torch.zeros(2, 5), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"estimate and truth must both be \(B, 3, 3\)"):
        geometry_loss(torch.zeros(2, 3, 3), torch.zeros(2, 9))
