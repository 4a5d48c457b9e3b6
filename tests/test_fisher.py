"""Fisher vectors (visrep.models.shallow.fisher): analytic cases (a GMM's own means, one Gaussian),
a naive per-descriptor reference with scikit-learn's posteriors, the encoder, save/load, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.shallow import FisherEncoder, fisher_vectors, gmm_log_posteriors, pyramid_cells

F64 = torch.float64


def _separated_gmm():
    """Four Gaussians 10 apart with variance <= 0.5: each mean's posterior is one-hot to e^-100."""
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    means = torch.tensor([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=F64)
    variances = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.4, 0.5], [0.3, 0.3, 0.3], [0.5, 0.1, 0.2]])
    return weights, means, variances.to(F64)


def test_fisher_vector_of_the_gmm_means_is_the_formula():
    """x_t = mu_t, T = G, gamma_t(i) = delta_ti:  G_mu = 0,  G_sigma,i = -1 / (T sqrt(2 w_i)),
    G_alpha,i = (1 - T w_i) / (T sqrt(w_i))."""
    w, mu, var = _separated_gmm()
    t, d = len(mu), mu.shape[1]
    raw = fisher_vectors(mu[None], w, mu, var, include_weights=True, power=1.0, l2=False)[0]
    g_alpha = (1 - t * w) / (t * w.sqrt())
    g_mu = torch.zeros(t * d, dtype=F64)
    g_sigma = (-1 / (t * (2 * w).sqrt()))[:, None].expand(t, d).reshape(-1)
    expected = torch.cat([g_alpha, g_mu, g_sigma])
    torch.testing.assert_close(raw, expected, rtol=1e-12, atol=1e-12)
    improved = fisher_vectors(mu[None], w, mu, var, include_weights=True)[0]
    signed_sqrt = expected.sign() * expected.abs().sqrt()
    torch.testing.assert_close(improved, signed_sqrt / signed_sqrt.norm(), rtol=1e-12, atol=1e-12)


def test_one_gaussian_gives_normalised_moments():
    """G = 1: gamma = 1, so G_mu = mean((x - mu) / sigma), G_sigma = mean(z^2 - 1) / sqrt(2)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 4, generator=g, dtype=F64) * 3 + 1
    mu = torch.tensor([[0.5, 1.0, -1.0, 2.0]], dtype=F64)
    var = torch.tensor([[4.0, 9.0, 1.0, 2.0]], dtype=F64)
    w = torch.ones(1, dtype=F64)
    fv = fisher_vectors(x, w, mu, var, include_weights=True, power=1.0, l2=False)
    z = (x - mu) / var.sqrt()
    expected = torch.cat(
        [torch.zeros(2, 1, dtype=F64), z.mean(1), (z.square() - 1).mean(1) / math.sqrt(2)], 1
    )
    torch.testing.assert_close(fv, expected, rtol=1e-12, atol=1e-12)


def _sklearn_gmm(d: int = 3, g: int = 5, seed: int = 0) -> GaussianMixture:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(400, d)) + rng.integers(0, 3, size=(400, 1)) * 1.5
    return GaussianMixture(g, covariance_type="diag", random_state=seed).fit(data)


def _params(gmm: GaussianMixture):
    return tuple(torch.from_numpy(a) for a in (gmm.weights_, gmm.means_, gmm.covariances_))


def test_posteriors_equal_sklearn():
    gmm = _sklearn_gmm()
    x = np.random.default_rng(1).normal(size=(60, 3)) * 2
    got = gmm_log_posteriors(torch.from_numpy(x), *_params(gmm)).exp()
    np.testing.assert_allclose(got.numpy(), gmm.predict_proba(x), rtol=1e-9, atol=1e-12)


def _naive_fisher(x, pos, size, grids, gmm, include_weights):
    """Per image, per cell, per descriptor, per Gaussian: the formulas of Perronnin et al. 2010
    with scikit-learn's posteriors; then signed square root and L2."""
    h, w = size
    wts, mus, sig = gmm.weights_, gmm.means_, np.sqrt(gmm.covariances_)
    out = []
    for i in range(len(x)):
        vec = []
        for rows, cols in grids:
            for r in range(rows):
                for c in range(cols):
                    inside = [
                        j
                        for j in range(x.shape[1])
                        if min(int((pos[i, j, 0] + 0.5) * cols / w), cols - 1) == c
                        and min(int((pos[i, j, 1] + 0.5) * rows / h), rows - 1) == r
                    ]
                    t = max(len(inside), 1)
                    ga, gm, gs = np.zeros(len(wts)), [], []
                    for k in range(len(wts)):
                        a, m, s = 0.0, np.zeros(x.shape[2]), np.zeros(x.shape[2])
                        for j in inside:
                            gamma = gmm.predict_proba(x[i, j][None])[0, k]
                            u = (x[i, j] - mus[k]) / sig[k]
                            a += gamma - wts[k]
                            m += gamma * u
                            s += gamma * (u**2 - 1)
                        ga[k] = a / (t * np.sqrt(wts[k]))
                        gm.append(m / (t * np.sqrt(wts[k])))
                        gs.append(s / (t * np.sqrt(2 * wts[k])))
                    if include_weights:
                        vec.append(ga)
                    vec += [np.concatenate(gm), np.concatenate(gs)]
        v = np.concatenate(vec)
        v = np.sign(v) * np.sqrt(np.abs(v))
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.mark.parametrize("include_weights", [False, True])
@pytest.mark.parametrize("grids", [[(1, 1)], [(1, 1), (2, 2), (3, 1)]])
def test_fisher_vectors_equal_naive_reference(include_weights, grids):
    gmm = _sklearn_gmm()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 12, 3)) * 2
    pos = rng.uniform(0, 20, size=(3, 12, 2))
    cells, n = pyramid_cells(torch.from_numpy(pos), (20, 20), grids)
    got = fisher_vectors(torch.from_numpy(x), *_params(gmm), None, cells, n, include_weights)
    ref = _naive_fisher(x, pos, (20, 20), grids, gmm, include_weights)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)


def _descriptors(n: int = 8, k: int = 40, d: int = 10, scale: float = 1.0):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, k, d, generator=g) * scale
    pos = torch.rand(n, k, 2, generator=g) * 31
    return x, pos


def test_encoder_equals_function_with_pca():
    x, pos = _descriptors()
    enc = FisherEncoder(num_components=3, pca_dim=4, pyramid=(1, 2), dtype="float64").fit(x)
    got = enc.encode(x, pos, (32, 32))
    z = (x.double() - enc.pca_mean) @ enc.pca_components.T
    cells, n = pyramid_cells(pos, (32, 32), [(1, 1), (2, 2)])
    ref = fisher_vectors(z, enc.weights, enc.means, enc.variances, None, cells, n)
    torch.testing.assert_close(got, ref)
    assert got.shape == (8, enc.num_features) == (8, 5 * 2 * 4 * 3)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(8, dtype=F64))


def test_float32_matches_float64_at_sift_scale():
    x, _ = _descriptors(scale=255.0)
    enc = FisherEncoder(num_components=4, pca_dim=None, dtype="float64").fit(x)
    ref = enc.encode(x)
    enc.dtype = "float32"
    torch.testing.assert_close(enc.encode(x), ref.float(), rtol=0, atol=1e-4)


def test_variable_lengths_and_save_load(tmp_path):
    x, pos = _descriptors()
    enc = FisherEncoder(num_components=3, pca_dim=5, include_weights=True, pyramid=(1, 2)).fit(x)
    lengths = [40, 1, 0, 7, 40, 3, 12, 9]
    sets = [x[i, :n] for i, n in enumerate(lengths)]
    where = [pos[i, :n] for i, n in enumerate(lengths)]
    batched = enc.encode(sets, where, (32, 32))
    for i, n in enumerate(lengths):
        alone = enc.encode(x[i : i + 1, :n], pos[i : i + 1, :n], (32, 32))
        torch.testing.assert_close(batched[i : i + 1], alone)
    assert batched[2].abs().sum() == 0
    assert enc.encode([]).shape == (0, enc.num_features)
    again = FisherEncoder.load(enc.save(tmp_path / "gmm"))
    torch.testing.assert_close(again.encode(sets, where, (32, 32)), batched)
    assert again.pca_dim == 5 and again.include_weights and again.pyramid == [(1, 1), (2, 2)]
    with pytest.raises(DataError, match=r"not a visrep\.fisher"):
        FisherEncoder.load(_codebook_file(tmp_path))


def _codebook_file(tmp_path):
    path = tmp_path / "codebook.npz"
    np.savez(path, kind=np.array("visrep.codebook"))
    return path


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: FisherEncoder(num_components=50).fit(torch.rand(2, 10, 4)), ConfigError, "(20)"),
        (lambda: FisherEncoder(4, pca_dim=64).fit(torch.rand(20, 10, 4)), ConfigError, "pca_dim"),
        (lambda: FisherEncoder(num_components=0), ConfigError, "num_components"),
        (lambda: FisherEncoder().encode(torch.rand(1, 3, 4)), ConfigError, "before fit"),
        (
            lambda: (
                FisherEncoder(2, pca_dim=None).fit(torch.rand(9, 4)).encode(torch.rand(1, 3, 5))
            ),
            ShapeError,
            "dimensions",
        ),
    ],
)
def test_bad_input(make, error, words):
    with pytest.raises(error) as e:
        make()
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    x, pos = _descriptors()
    enc = FisherEncoder(num_components=3, pca_dim=4, pyramid=(1, 2), dtype="float64").fit(x)
    cpu = enc.encode(x, pos, (32, 32))
    gpu = enc.to("cuda").encode(x.cuda(), pos.cuda(), (32, 32))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_shared_grid_path_equals_per_image_cells():
    """A keypoint grid shared by all images takes the per-cell path; one image with other cells
    in the batch sends it down the membership-matrix path: the same vectors."""
    x, pos = _descriptors()
    enc = FisherEncoder(num_components=3, pca_dim=None, pyramid=[(1, 1), (2, 2), (3, 1)]).fit(x)
    enc.dtype = "float64"
    shared = enc.encode(x, pos[0], (32, 32))
    mixed_pos = torch.cat([pos[0].expand(len(x), -1, -1), pos[1:2]])
    mixed = enc.encode(torch.cat([x, x[:1]]), mixed_pos, (32, 32))
    torch.testing.assert_close(mixed[:-1], shared)
    torch.testing.assert_close(mixed[-1:], enc.encode(x[:1], pos[1], (32, 32)))
