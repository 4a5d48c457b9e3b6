"""Feature-space helpers (visrep.utils.embedding): neighbours against brute force, the seeded
subset, t-SNE's perplexity cap; the one implementation behind the embedding task's evaluation
and plots and the analysis tools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visrep.analysis import interpret as I
from visrep.errors import ConfigError, ShapeError
from visrep.tasks import embedding as task_module
from visrep.tasks import embedding_metrics
from visrep.utils import embedding as E


def _brute(q: torch.Tensor, bank: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "l2":
        return (q[:, None] - bank[None]).norm(dim=-1)
    return 1 - nn.functional.cosine_similarity(q[:, None], bank[None], dim=-1)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("chunk", [3, 1024])
def test_nearest_indices_and_distances_match_brute_force(metric, chunk):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(40, 6, generator=g, dtype=torch.float64)
    q = torch.randn(9, 6, generator=g, dtype=torch.float64)
    ref = _brute(q, bank, metric)
    idx = E.nearest_indices(q, bank, 5, metric, chunk)
    assert torch.equal(idx, ref.argsort(1)[:, :5])
    torch.testing.assert_close(E.neighbour_distances(q, bank, idx, metric), ref.gather(1, idx))
    # leave-one-out: the bank queries itself and a sample is never its own neighbour
    own = _brute(bank, bank, metric)
    own.fill_diagonal_(float("inf"))
    got = E.nearest_indices(bank, bank, 4, metric, chunk, exclude_self=True)
    assert torch.equal(got, own.argsort(1)[:, :4])


def test_nearest_indices_checks_its_inputs():
    bank = torch.zeros(5, 4)
    with pytest.raises(ShapeError, match="share D"):
        E.nearest_indices(torch.zeros(2, 3), bank, 1)
    with pytest.raises(ConfigError, match="between 1 and the bank size 5"):
        E.nearest_indices(torch.zeros(2, 4), bank, 6)
    with pytest.raises(ConfigError, match="between 1 and the other samples 4"):
        E.nearest_indices(bank, bank, 5, exclude_self=True)
    with pytest.raises(ShapeError, match="queries to be the bank"):
        E.nearest_indices(torch.zeros(2, 4), bank, 1, exclude_self=True)
    with pytest.raises(ConfigError, match="metric"):
        E.nearest_indices(torch.zeros(2, 4), bank, 1, "dot")


def test_subsample_is_seeded_sorted_and_whole_when_small():
    assert E.subsample(7, 7).tolist() == list(range(7))
    a = E.subsample(1000, 50, seed=3)
    assert len(a) == len(set(a.tolist())) == 50 and (np.diff(a) > 0).all()
    assert np.array_equal(a, E.subsample(1000, 50, seed=3))
    assert not np.array_equal(a, E.subsample(1000, 50, seed=4))


def test_tsne_caps_the_perplexity_for_small_sets():
    z = np.random.default_rng(0).normal(size=(5, 3))  # perplexity 30 > N: capped at 4/3
    p = E.tsne(z, seed=0)
    assert p.shape == (5, 2) and np.isfinite(p).all()
    with pytest.raises(ShapeError, match="N >= 4"):
        E.tsne(z[:3])


def test_one_implementation_for_the_task_and_the_analysis_tools():
    """The embedding task's t-SNE and neighbours, the retrieval metrics and visrep explain's
    neighbours are this module's; no copies of them remain."""
    assert I.tsne is E.tsne and task_module.tsne is E.tsne
    assert task_module.nearest_indices is E.nearest_indices
    assert embedding_metrics.nearest_indices is E.nearest_indices
    assert not hasattr(embedding_metrics, "nearest_others")
    g = torch.Generator().manual_seed(1)
    bank, q = torch.randn(20, 4, generator=g), torch.randn(3, 4, generator=g)
    d, i = I.nearest_neighbours(q, bank, 3, "l2")
    assert torch.equal(i, E.nearest_indices(q, bank, 3, "l2"))
    torch.testing.assert_close(d, E.neighbour_distances(q, bank, i, "l2"))


def test_analysis_embed_gives_minus_one_for_missing_labels():
    net = nn.Module()
    net.lin = nn.Linear(4, 2)
    net.embed = lambda x: net.lin(x.flatten(1))
    x = torch.rand(5, 1, 2, 2)
    z, y = I.embed(net, [{"image": x[i]} for i in range(5)], batch_size=2)
    assert z.dtype == torch.float32 and z.shape == (5, 2) and y.tolist() == [-1] * 5
    z2, y2 = I.embed(net, [{"image": x[i], "label": i} for i in range(5)], batch_size=3)
    torch.testing.assert_close(z, z2)
    assert y2.dtype == torch.int64 and y2.tolist() == list(range(5))
