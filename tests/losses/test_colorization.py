"""The colourisation core (Zhang et al. 2016): Lab, ab bins, soft-encoding, rebalancing, annealed
mean, PSNR, against analytic values and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.losses.colorization import (
    ABQuantizer,
    RebalancedCrossEntropy,
    _knn,
    ab_gamut_bins,
    annealed_mean,
    bin_histogram,
    merge_lab,
    nearest_bins,
    psnr,
    rebalance_weights,
    rebalanced_cross_entropy,
    smooth_distribution,
    soft_encode,
    soft_encode_sparse,
    split_lab,
)


def _lab_reference(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab of sRGB ``(N, 3)`` in [0, 1] from the published formulas (IEC 61966-2-1 sRGB,
    D65 white of the sRGB matrix, CIE 1976 L*a*b*), written here independently of kornia."""
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array(
        [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
         [0.019334, 0.119193, 0.950227]]
    )  # fmt: skip
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])  # the D65 white point
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d**2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def _rgb(n: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, n, 1, generator=torch.Generator().manual_seed(seed))


def test_lab_matches_the_cie_formulas_and_round_trips():
    rgb = _rgb()
    L, ab = split_lab(rgb)
    ref = _lab_reference(rgb[0, :, :, 0].T.double().numpy())
    got = torch.cat([L, ab], 1)[0, :, :, 0].T.double().numpy()
    np.testing.assert_allclose(got, ref, atol=2e-3)
    red = torch.cat(split_lab(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)), 1).flatten()
    assert torch.allclose(red, torch.tensor([53.2408, 80.0925, 67.2032]), atol=2e-3)
    assert torch.allclose(merge_lab(L, ab), rgb, atol=1e-4)


def test_lab_bad_shapes_raise():
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\)"):
        split_lab(torch.rand(1, 1, 4, 4))
    with pytest.raises(ShapeError, match="differ"):
        merge_lab(torch.rand(1, 1, 4, 4), torch.rand(1, 2, 4, 5))


def test_gamut_bins_cover_every_srgb_colour():
    c = ab_gamut_bins()
    assert c.shape == (262, 2) and torch.equal(c, (c / 10).round() * 10)
    assert (c == 0).all(1).any()  # the grey axis
    _, ab = split_lab(_rgb(5000, seed=1))
    d = torch.cdist(ab[0, :, :, 0].T, c).min(1).values
    assert float(d.max()) <= 5 * math.sqrt(2) + 1e-4  # each colour lies in its bin's cell
    with pytest.raises(ConfigError, match="grid"):
        ab_gamut_bins(0)


@pytest.mark.parametrize("k", [1, 5, 7])
def test_nearest_bins_match_brute_force(k: int):
    g = torch.Generator().manual_seed(0)
    c = ab_gamut_bins()
    pts = torch.cat(
        [torch.randn(3000, 2, generator=g) * 40, torch.randn(200, 2, generator=g) * 150]
    )
    d2, idx = _knn(pts, c, k)
    ref = torch.cdist(pts, c).square().topk(k, 1, largest=False)
    assert torch.allclose(d2, ref.values, rtol=1e-4, atol=1e-2)
    assert torch.allclose(c[idx], c[ref.indices]) or torch.allclose(
        (pts[:, None] - c[idx]).square().sum(-1), ref.values, rtol=1e-4, atol=1e-2
    )
    # centres that are not a lattice take the exhaustive path
    irregular = c + torch.rand(c.shape, generator=g)
    d2, _ = _knn(pts, irregular, k)
    ref = torch.cdist(pts, irregular).square().topk(k, 1, largest=False)[0]
    assert torch.allclose(d2, ref, rtol=1e-4, atol=1e-2)


def test_soft_encoding_sums_to_one_on_the_nearest_bins_centred_on_the_true_bin():
    c = ab_gamut_bins()
    _, ab = split_lab(torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(2)))
    z = soft_encode(ab, c)
    assert z.shape == (2, 262, 6, 5)
    assert torch.allclose(z.sum(1), torch.ones(2, 6, 5))
    assert torch.equal((z > 0).sum(1), torch.full((2, 6, 5), 5))
    assert torch.equal(z.argmax(1), nearest_bins(ab, c))
    # a pixel on a bin centre: weight 1 on it and exp(-10^2 / (2 * 5^2)) on its 4 neighbours
    z = soft_encode(torch.tensor([10.0, 20.0]).view(1, 2, 1, 1), c).flatten()
    q = int(((c - torch.tensor([10.0, 20.0])).abs().sum(1) == 0).nonzero())
    assert z[q] == pytest.approx(1 / (1 + 4 * math.exp(-2)), abs=1e-6)
    idx, w = soft_encode_sparse(ab, c)
    dense = torch.zeros(2, 262, 6, 5).scatter_(1, idx, w)
    assert torch.allclose(dense, soft_encode(ab, c))
    with pytest.raises(ConfigError, match="neighbours"):
        soft_encode(ab, c, neighbours=0)


def test_rebalancing_weights_have_unit_expectation_and_favour_rare_bins():
    c = ab_gamut_bins()
    _, ab = split_lab(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)) ** 3)
    counts = bin_histogram(ab, c)
    assert counts.sum() == 4 * 16 * 16
    pt = smooth_distribution(counts, c, 5.0)
    assert float(pt.sum()) == pytest.approx(1.0)
    w = rebalance_weights(counts, c, lam=0.5, sigma=5.0).double()
    assert float((pt * w).sum()) == pytest.approx(1.0, abs=1e-6)
    order = pt.argsort()
    assert bool((w[order].diff() <= 1e-6).all())  # rarer (smaller p~) never weighs less
    assert float(w.max()) > 1 > float(w[pt.argmax()])
    assert torch.allclose(rebalance_weights(counts, c, lam=1.0), torch.ones(262))
    # sigma 0: the raw distribution; w = 1 / (0.5 p + 0.5 / Q), normalised
    p = counts / counts.sum()
    raw = 1 / (0.5 * p + 0.5 / 262)
    assert torch.allclose(rebalance_weights(counts, c, sigma=0.0).double(), raw / (p * raw).sum())
    with pytest.raises(ConfigError, match="lam"):
        rebalance_weights(counts, c, lam=0.0)


def test_annealed_mean_from_the_mode_to_the_mean():
    c = ab_gamut_bins()
    logits = torch.randn(2, 262, 3, 4, generator=torch.Generator().manual_seed(4)) * 3
    mode = c[logits.argmax(1)].permute(0, 3, 1, 2)
    mean = torch.einsum("bqhw,qc->bchw", logits.softmax(1), c)
    assert torch.allclose(annealed_mean(logits, c, 1.0), mean, atol=1e-4)
    assert torch.equal(annealed_mean(logits, c, 0.0), mode)
    assert torch.allclose(annealed_mean(logits, c, 1e-3), mode, atol=1e-3)
    assert torch.allclose(ABQuantizer(temperature=0.38)(logits), annealed_mean(logits, c, 0.38))
    with pytest.raises(ShapeError, match="262"):
        annealed_mean(logits[:, :10], c)


def test_rebalanced_cross_entropy_dense_sparse_and_module_agree():
    c = ab_gamut_bins()
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 262, 4, 4, generator=g)
    _, ab = split_lab(torch.rand(2, 3, 4, 4, generator=g))
    w = torch.rand(262, generator=g) + 0.5
    dense, sparse = soft_encode(ab, c), soft_encode_sparse(ab, c)
    loss = rebalanced_cross_entropy(logits, dense, w)
    assert torch.allclose(loss, rebalanced_cross_entropy(logits, sparse, w))
    assert torch.allclose(loss, RebalancedCrossEntropy(w)(logits, dense))
    # a one-hot target without weights is the ordinary cross-entropy
    y = nearest_bins(ab, c)
    onehot = F.one_hot(y, 262).permute(0, 3, 1, 2).float()
    assert torch.allclose(rebalanced_cross_entropy(logits, onehot), F.cross_entropy(logits, y))
    # with weights, each pixel's term is scaled by the weight of its nearest bin
    ref = (F.cross_entropy(logits, y, reduction="none") * w[y]).mean()
    assert torch.allclose(rebalanced_cross_entropy(logits, onehot, w), ref)
    with pytest.raises(ShapeError):
        rebalanced_cross_entropy(logits, dense[:, :5])


def test_psnr_analytic():
    pred, target = torch.zeros(2, 2, 3, 3), torch.zeros(2, 2, 3, 3)
    target[0] = 10.0  # MSE 100 -> 10 log10(200^2 / 100) = 26.0206 dB
    target[1, 0] = 20.0  # MSE 200 -> 23.0103 dB
    got = psnr(pred, target)
    assert torch.allclose(got, torch.tensor([26.0206, 23.0103]), atol=1e-4)
    assert math.isinf(float(psnr(pred, pred)[0]))
    assert float(
        psnr(torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2), 1.0)
    ) == pytest.approx(10 * math.log10(4))
    with pytest.raises(ShapeError):
        psnr(pred, target[:1])
