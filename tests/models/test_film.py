"""FiLM (visrep.models.layers.film): module == function, gradcheck, shapes; mask moments and the
Gaussian spatial prior against the mask's moments."""

from __future__ import annotations

import math

import pytest
import torch

from visrep.errors import ShapeError
from visrep.models.layers.film import FiLM, film, gaussian_map, mask_gaussian, mask_moments


def test_film_per_channel_and_per_pixel() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=g)
    gamma, beta = torch.randn(2, 3, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    out = film(x, gamma, beta)
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(out[b, c], gamma[b, c] * x[b, c] + beta[b, c])
    torch.testing.assert_close(FiLM()(x, gamma, beta), out)
    assert torch.equal(film(x), x) and torch.equal(film(x, None, beta), x + beta)
    with pytest.raises(ShapeError, match="gamma"):
        film(x, torch.ones(2, 4))
    with pytest.raises(ShapeError, match="beta"):
        film(x, None, torch.ones(2, 3, 4))


def test_film_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
            for s in ((2, 3, 2, 2), (2, 3), (2, 3, 2, 2))]  # fmt: skip
    assert torch.autograd.gradcheck(film, args)


def test_mask_moments_of_a_rectangle() -> None:
    m = torch.zeros(1, 20, 30)
    m[0, 5:10, 3:15] = 1  # 5 rows (y 5..9), 12 columns (x 3..14)
    mass, mu, cov = mask_moments(m)
    assert mass.item() == 60
    torch.testing.assert_close(mu[0], torch.tensor([8.5, 7.0]))
    # variance of a discrete uniform over n consecutive integers: (n^2 - 1) / 12
    torch.testing.assert_close(cov[0], torch.tensor([[(144 - 1) / 12, 0.0], [0.0, (25 - 1) / 12]]))


def test_gaussian_prior_matches_the_mask_moments() -> None:
    """The prior's own moments (as a density) are the mask's centroid and covariance."""
    h, w = 120, 160
    ys, xs = torch.meshgrid(torch.arange(h).double(), torch.arange(w).double(), indexing="ij")
    # a tilted ellipse, well inside the image
    u, v = (
        (xs - 70) * math.cos(0.5) + (ys - 55) * math.sin(0.5),
        -(xs - 70) * math.sin(0.5) + (ys - 55) * math.cos(0.5),
    )
    mask = ((u / 20) ** 2 + (v / 8) ** 2 <= 1).double()[None]
    _, mu, cov = mask_moments(mask)
    g = mask_gaussian(mask, scale=1.0, min_var=0.0)
    assert g.max().item() == pytest.approx(1.0, abs=1e-3)
    _, mu_g, cov_g = mask_moments(g)
    torch.testing.assert_close(mu_g, mu, atol=1e-3, rtol=0)
    torch.testing.assert_close(cov_g, cov, atol=0.05, rtol=0.01)
    assert cov[0, 0, 1] > 10  # tilted: the off-diagonal term is used
    wide = mask_moments(mask_gaussian(mask, scale=2.0, min_var=0.0))[2]
    torch.testing.assert_close(wide, 2 * cov, atol=0.1, rtol=0.01)


def test_gaussian_map_values_and_empty_masks() -> None:
    g = gaussian_map(torch.tensor([[1.0, 2.0]]), torch.tensor([[[4.0, 0.0], [0.0, 1.0]]]), (4, 4))
    assert g[0, 2, 1] == 1.0
    assert g[0, 2, 3].item() == pytest.approx(math.exp(-0.5 * 4 / 4))
    assert g[0, 3, 1].item() == pytest.approx(math.exp(-0.5))
    assert not mask_gaussian(torch.zeros(2, 5, 5)).any()
    with pytest.raises(ShapeError, match="mu"):
        gaussian_map(torch.zeros(2, 3), torch.eye(2).expand(2, 2, 2), (3, 3))
    with pytest.raises(ShapeError, match="B, H, W"):
        mask_moments(torch.zeros(5, 5))
