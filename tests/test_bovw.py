"""Bag of visual words (visrep.models.shallow.bovw): assignments and (pyramid) histograms against
per-descriptor loops, normalisations, padding, fitting, save/load and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.models.shallow import (
    Codebook,
    bovw_histograms,
    hard_assign,
    lazebnik_weights,
    normalise,
    pyramid_cells,
    soft_assign,
)


def _data(n: int = 5, k: int = 30, d: int = 6, v: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, k, d, generator=g, dtype=torch.float64)
    centers = torch.rand(v, d, generator=g, dtype=torch.float64)
    pos = torch.rand(n, k, 2, generator=g, dtype=torch.float64) * torch.tensor([23.0, 15.0])
    return x, centers, pos.float()


def _naive_cell(x: float, y: float, rows: int, cols: int, h: int, w: int) -> int:
    """The cell of one point by comparing it with the cell borders one by one."""
    col = next(c for c in range(cols) if x + 0.5 < (c + 1) * w / cols or c == cols - 1)
    row = next(r for r in range(rows) if y + 0.5 < (r + 1) * h / rows or r == rows - 1)
    return row * cols + col


def _naive_histograms(x, centers, pos, size, grids, soft_sigma=None, weights=None):
    """Per image, per descriptor, per level: the straightforward loops."""
    h, w = size
    v = len(centers)
    cells = sum(r * c for r, c in grids)
    out = np.zeros((len(x), cells * v))
    for i in range(len(x)):
        for j in range(x.shape[1]):
            d2 = ((centers.numpy() - x[i, j].numpy()) ** 2).sum(1)
            if soft_sigma is None:
                vote = np.eye(v)[d2.argmin()]
            else:
                e = np.exp(-(d2 - d2.min()) / (2 * soft_sigma**2))
                vote = e / e.sum()
            offset = 0
            for lvl, (rows, cols) in enumerate(grids):
                c = _naive_cell(*pos[i, j].tolist(), rows, cols, h, w)
                wt = 1.0 if weights is None else weights[lvl]
                out[i, (offset + c) * v : (offset + c + 1) * v] += wt * vote
                offset += rows * cols
    return out


def test_hard_assignment_is_the_nearest_word():
    x, centers, _ = _data()
    ref = torch.cdist(x, centers[None].expand(len(x), -1, -1)).argmin(-1)
    assert torch.equal(hard_assign(x, centers), ref)


def test_soft_assignment_sums_to_one_and_tends_to_hard():
    x, centers, _ = _data()
    s = soft_assign(x, centers, sigma=0.3)
    torch.testing.assert_close(s.sum(-1), torch.ones(x.shape[:2], dtype=torch.float64))
    sharp = soft_assign(x, centers, sigma=1e-4).argmax(-1)
    assert torch.equal(sharp, hard_assign(x, centers))


@pytest.mark.parametrize("grids", [[(1, 1)], [(1, 1), (2, 2), (4, 4)], [(1, 1), (3, 1)]])
@pytest.mark.parametrize("sigma", [None, 0.25])
def test_pyramid_histograms_equal_naive_loops(grids, sigma):
    x, centers, pos = _data()
    size = (15, 23)
    cells, n = pyramid_cells(pos, size, grids)
    weights = lazebnik_weights(len(grids))
    got = bovw_histograms(
        x, centers, "hard" if sigma is None else "soft", sigma, None, cells, n, weights
    )
    ref = _naive_histograms(x, centers, pos, size, grids, sigma, weights)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_pyramid_cells_at_borders():
    pos = torch.tensor([[-0.5, -0.5], [3.49, 0.0], [3.5, 0.0], [7.0, 7.0], [9.0, -3.0]])
    cells, n = pyramid_cells(pos, (8, 8), [(2, 2)])
    assert n == 4 and cells[:, 0].tolist() == [0, 0, 1, 3, 1]  # outside: clamped to the edge
    assert lazebnik_weights(1) == [1.0] and lazebnik_weights(3) == [0.25, 0.25, 0.5]


def test_normalisations():
    v = torch.tensor([[4.0, 0.0, 1.0, 4.0]])
    torch.testing.assert_close(normalise(v, norm="l1"), v / 9)
    torch.testing.assert_close(normalise(v, norm="l2"), v / math.sqrt(33))
    torch.testing.assert_close(normalise(v, 0.5, "l2"), torch.tensor([[2.0, 0, 1, 2]]) / 3)
    torch.testing.assert_close(normalise(-v, 0.5, "none"), -v.sqrt())
    assert normalise(torch.zeros(1, 3)).abs().sum() == 0


def _fitted(num_words: int = 6, **kwargs) -> tuple[Codebook, torch.Tensor, torch.Tensor]:
    x, _, pos = _data(n=6, k=40, d=5)
    return Codebook(num_words=num_words, **kwargs).fit(x.float()), x.float(), pos


def test_encode_equals_function_and_normalises():
    book, x, pos = _fitted(pyramid=(1, 2), power=0.5, norm="l2", batch_size=4)
    got = book.encode(x, pos, image_size=(15, 23))
    cells, n = pyramid_cells(pos, (15, 23), [(1, 1), (2, 2)])
    h = bovw_histograms(x, book.centers, "hard", None, None, cells, n)
    torch.testing.assert_close(got, normalise(h, 0.5, "l2"))
    assert got.shape == (6, book.num_features) == (6, 30)
    plain = Codebook(num_words=6).fit(x).encode(x)  # the default: word frequencies (L1)
    torch.testing.assert_close(plain.sum(-1), torch.ones(6))


def test_variable_numbers_of_descriptors_equal_per_image_encoding():
    book, x, pos = _fitted(assignment="soft", pyramid=(1, 2), pyramid_weights="lazebnik")
    lengths = [40, 3, 17, 0, 25, 1]
    sets = [x[i, :n] for i, n in enumerate(lengths)]
    where = [pos[i, :n] for i, n in enumerate(lengths)]
    batched = book.encode(sets, where, (15, 23))
    for i in range(len(sets)):
        alone = book.encode(x[i : i + 1, : lengths[i]], pos[i : i + 1, : lengths[i]], (15, 23))
        torch.testing.assert_close(batched[i : i + 1], alone)
    assert batched[3].abs().sum() == 0  # no descriptors: a zero vector
    assert book.encode([]).shape == (0, book.num_features)


def test_fit_is_seeded_and_uses_the_sample():
    x, _, _ = _data(n=20, k=50, d=4)
    a = Codebook(num_words=5, seed=3, max_descriptors=300).fit(x.float())
    b = Codebook(num_words=5, seed=3, max_descriptors=300).fit([d for d in x.float()])
    torch.testing.assert_close(a.centers, b.centers)
    assert a.centers.shape == (5, 4) and a.centers.dtype == torch.float32


def test_soft_sigma_is_set_by_fit():
    book, x, _ = _fitted(assignment="soft")
    d = torch.cdist(x.reshape(-1, x.shape[-1]).double(), book.centers.double()).sort(-1).values
    gap = d[:, 1].square() - d[:, 0].square()  # second-nearest minus nearest, squared
    assert book.sigma == pytest.approx(float(gap.median().sqrt()), rel=1e-4)
    assert Codebook(1, assignment="soft").fit(x).sigma == 1.0


def test_save_and_load(tmp_path):
    book, x, pos = _fitted(assignment="soft", pyramid=[(1, 1), (3, 1)], power=0.5, norm="l2")
    path = book.save(tmp_path / "codebook.npz")
    again = Codebook.load(path)
    torch.testing.assert_close(again.encode(x, pos, (15, 23)), book.encode(x, pos, (15, 23)))
    assert again.pyramid == [(1, 1), (3, 1)] and again.sigma == book.sigma
    np.savez(tmp_path / "other.npz", kind=np.array("visrep.fisher"))
    with pytest.raises(DataError, match=r"not a visrep\.codebook"):
        Codebook.load(tmp_path / "other.npz")
    with pytest.raises(DataError, match="no such file"):
        Codebook.load(tmp_path / "missing.npz")


def test_codebook_larger_than_the_descriptors_is_one_config_error():
    x = torch.rand(2, 10, 8)
    with pytest.raises(ConfigError) as e:
        Codebook(num_words=1000).fit(x)
    msg = str(e.value)
    assert "num_words=1000" in msg and "(20)" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: Codebook(num_words=0), ConfigError, "num_words"),
        (lambda: Codebook(assignment="fuzzy"), ConfigError, "assignment"),
        (lambda: Codebook(pyramid=(0,)), ConfigError, "pyramid"),
        (lambda: Codebook(norm="l3"), ConfigError, "norm"),
        (lambda: Codebook().encode(torch.rand(1, 3, 2)), ConfigError, "before fit"),
        (lambda: _fitted()[0].encode(torch.rand(2, 3)), ShapeError, "(N, K, D)"),
        (lambda: _fitted()[0].encode(torch.rand(1, 3, 2)), ShapeError, "dimensions"),
        (lambda: _fitted(pyramid=(1, 2))[0].encode(torch.rand(1, 3, 5)), ConfigError, "needs"),
        (lambda: Codebook(num_words=1).fit(torch.tensor([[float("nan")]])), DataError, "NaN"),
    ],
)
def test_bad_input(make, error, words):
    with pytest.raises(error) as e:
        make()
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("assignment", ["hard", "soft"])
def test_cuda_equals_cpu(assignment):
    book, x, pos = _fitted(assignment=assignment, pyramid=(1, 2))
    cpu = book.encode(x, pos, (15, 23))
    gpu = book.to("cuda").encode(x.cuda(), pos.cuda(), (15, 23))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
