"""Latent interpolation: slerp keeps the ends, interpolates the norm linearly, and stays on the
plane of its two ends; the linear path is the chord."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import ShapeError
from visrep.models.generative.latent import interpolate_latents


def test_slerp_keeps_the_ends_and_interpolates_the_norm_linearly():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    path = interpolate_latents(a, b, 7)
    assert path.shape == (4, 7, 16)
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)
    t = torch.linspace(0, 1, 7)
    want = a.norm(dim=1)[:, None] * (1 - t) + b.norm(dim=1)[:, None] * t
    torch.testing.assert_close(path.norm(dim=2), want)
    # the angle to a grows linearly (constant angular speed along the great circle)
    cos = torch.nn.functional.cosine_similarity(path, a[:, None].expand_as(path), dim=2)
    angle = torch.arccos(cos.clamp(-1, 1))
    omega = angle[:, -1:]
    torch.testing.assert_close(angle, omega * t, atol=2e-3, rtol=0)  # arccos near 1


def test_linear_and_parallel_fallback():
    a = torch.tensor([[1.0, 2.0]])
    line = interpolate_latents(a, 3 * a, 3, spherical=False)
    torch.testing.assert_close(line[0], torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]))
    torch.testing.assert_close(interpolate_latents(a, 3 * a, 3), line)  # parallel: the line


def test_bad_shapes():
    with pytest.raises(ShapeError, match="steps must be >= 2"):
        interpolate_latents(torch.zeros(1, 2), torch.ones(1, 2), 1)
    with pytest.raises(ShapeError, match=r"both be \(R, D\)"):
        interpolate_latents(torch.zeros(2), torch.ones(2), 3)
