"""Verification and retrieval metrics (visrep.tasks.embedding_metrics) against scikit-learn,
pytorch-metric-learning (test-only reference) and analytic cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from visrep.errors import DataError, ShapeError
from visrep.tasks.embedding_metrics import (
    equal_error_rate,
    far_key,
    pair_distances,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    split_pairs,
    tar_at_far,
    verification_metrics,
)
from visrep.utils.embedding import nearest_indices


def _random_pairs(n: int = 400, seed: int = 0, ties: bool = False):
    g = torch.Generator().manual_seed(seed)
    same = (torch.rand(n, generator=g) < 0.3).long()
    d = torch.rand(n, generator=g) + 0.4 * (1 - same)  # different pairs are farther
    if ties:
        d = (d * 10).round() / 10  # many equal distances
    return d.double(), same


@pytest.mark.parametrize("ties", [False, True])
def test_roc_equals_sklearn(ties):
    d, same = _random_pairs(ties=ties)
    far, tar, thr = roc_curve(d, same)
    fpr, tpr, sk_thr = sk_roc_curve(same.numpy(), -d.numpy(), drop_intermediate=False)
    np.testing.assert_allclose(far.numpy(), fpr)
    np.testing.assert_allclose(tar.numpy(), tpr)
    np.testing.assert_allclose(thr.numpy()[1:], -sk_thr[1:])
    assert thr[0] == -np.inf and np.isinf(sk_thr[0])
    assert roc_auc(far, tar) == pytest.approx(roc_auc_score(same.numpy(), -d.numpy()), abs=1e-12)


def test_perfectly_separated_distances():
    d = torch.tensor([0.1, 0.2, 0.3, 1.0, 1.5, 2.0])
    same = torch.tensor([1, 1, 1, 0, 0, 0])
    m = verification_metrics(d, same, fars=(1e-3, 0.5))
    assert m["auc"] == 1.0 and m["eer"] == 0.0 and m["accuracy"] == 1.0
    assert m["tar@far=1e-3"] == 1.0 and m["tar@far=5e-1"] == 1.0
    assert 0.3 <= m["threshold"] < 1.0


def test_inverted_distances_are_all_wrong():
    d = torch.tensor([1.0, 1.5, 0.1, 0.2])
    same = torch.tensor([1, 1, 0, 0])
    m = verification_metrics(d, same, fars=(0.1,))
    assert m["auc"] == 0.0 and m["eer"] == 1.0 and m["tar@far=1e-1"] == 0.0


def test_identical_distributions_give_chance():
    # every distance equal: one threshold accepts all or nothing -> the diagonal
    d = torch.ones(10)
    same = torch.tensor([1] * 4 + [0] * 6)
    m = verification_metrics(d, same, fars=(0.01,))
    assert m["auc"] == 0.5 and m["eer"] == pytest.approx(0.5) and m["tar@far=1e-2"] == 0.0
    # large samples of one distribution: AUC ~ 0.5, EER ~ 0.5
    g = torch.Generator().manual_seed(1)
    d = torch.rand(20000, generator=g)
    same = (torch.rand(20000, generator=g) < 0.5).long()
    m = verification_metrics(d, same)
    assert m["auc"] == pytest.approx(0.5, abs=0.01) and m["eer"] == pytest.approx(0.5, abs=0.01)


def test_eer_interpolates_and_tar_at_far_is_a_reachable_point():
    # hand-made: P = 2, N = 2; distances 0.1 (same), 0.2 (diff), 0.3 (same), 0.4 (diff)
    d = torch.tensor([0.1, 0.2, 0.3, 0.4])
    same = torch.tensor([1, 0, 1, 0])
    far, tar, _ = roc_curve(d, same)
    assert far.tolist() == [0, 0, 0.5, 0.5, 1] and tar.tolist() == [0, 0.5, 0.5, 1, 1]
    # FAR - FRR: -1, -0.5, 0, 0.5, 1 -> crosses 0 at the point (0.5, 0.5)
    assert equal_error_rate(far, tar) == pytest.approx(0.5)
    assert tar_at_far(far, tar, 0.49) == 0.5 and tar_at_far(far, tar, 0.5) == 1.0
    assert roc_auc(far, tar) == pytest.approx(0.75)
    # EER between points: (0, 0.5) -> (1, 1) crosses FAR = 1 - TAR at FAR = 1/3
    far, tar, _ = roc_curve(torch.tensor([0.1, 0.2]), torch.tensor([1, 0]))
    assert equal_error_rate(far, tar) == 0.0
    far = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    tar = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert equal_error_rate(far, tar) == pytest.approx(1 / 3)


def test_far_key_spelling():
    assert far_key(1e-2) == "1e-2" and far_key(1e-3) == "1e-3" and far_key(0.25) == "0.25"


def test_roc_refuses_one_sided_pairs():
    with pytest.raises(DataError, match="same and different pairs"):
        roc_curve(torch.rand(5), torch.ones(5, dtype=torch.long))


def test_split_pairs_all_and_sampled():
    labels = torch.tensor([0, 0, 1, 1, 1])
    p = split_pairs(labels)
    assert p.shape == (10, 3)
    want = [(i, j, int(labels[i] == labels[j])) for i, j in itertools.combinations(range(5), 2)]
    assert sorted(map(tuple, p.tolist())) == want
    labels = torch.arange(1000) % 7
    s = split_pairs(labels, max_pairs=5000, seed=3)
    assert s.shape == (5000, 3) and (s[:, 0] < s[:, 1]).all()
    assert torch.equal(s[:, 2], (labels[s[:, 0]] == labels[s[:, 1]]).long())
    assert torch.equal(s, split_pairs(labels, max_pairs=5000, seed=3))
    assert s[:, 2].double().mean().item() == pytest.approx(1 / 7, abs=0.02)


def test_pair_distances():
    e = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    pairs = torch.tensor([[0, 1, 0], [0, 2, 1], [1, 2, 0]])
    torch.testing.assert_close(pair_distances(e, pairs), torch.tensor([5.0, 1.0, 20**0.5]))
    with pytest.raises(DataError, match="there are 3"):
        pair_distances(e, torch.tensor([[0, 3, 1]]))


def _pml(emb: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    return calc.get_accuracy(emb, labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_equals_pytorch_metric_learning(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (120,), generator=g)
    labels[0] = 99  # a singleton class: counted in neither metric
    emb = torch.randn(120, 5, generator=g, dtype=torch.float64) + labels[:, None] % 3 * 0.8
    ref = _pml(emb, labels)
    got = retrieval_metrics(emb, labels, ks=(1, 3), chunk=37)
    assert got["recall@1"] == pytest.approx(ref["precision_at_1"], abs=1e-12)
    assert got["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-12)


def test_recall_at_k_against_brute_force():
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (50,), generator=g)
    emb = torch.randn(50, 3, generator=g, dtype=torch.float64)
    d = torch.cdist(emb, emb)
    d.fill_diagonal_(float("inf"))
    order = d.argsort(1)
    for k in (1, 2, 5):
        want = (labels[order[:, :k]] == labels[:, None]).any(1).double().mean().item()
        assert retrieval_metrics(emb, labels, ks=(k,))[f"recall@{k}"] == pytest.approx(want)
    assert torch.equal(nearest_indices(emb, emb, 4, chunk=7, exclude_self=True), order[:, :4])


def test_retrieval_analytic_and_errors():
    # two tight, far-apart clusters: perfect retrieval
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    m = retrieval_metrics(emb, labels, ks=(1, 8))
    assert m == {"recall@1": 1.0, "recall@8": 1.0, "map@r": 1.0}
    # points 0, 1, 2, 10 on a line, classes 0, 1, 0, 0 (the class-1 query has R = 0: skipped).
    # Neighbours (first R = 2 relevant?): q0 [1, 2] -> [no, yes], AP 1/2 * 1/2 = 0.25;
    # q2 [1, 0] -> the same, 0.25; q3 [2, 1] -> [yes, no], AP 1/2.
    line = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    m = retrieval_metrics(line, torch.tensor([0, 1, 0, 0]), ks=(1, 2))
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@2"] == 1.0
    assert m["map@r"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    with pytest.raises(DataError, match="at least 2 samples"):
        retrieval_metrics(emb, torch.arange(5))
    with pytest.raises(ShapeError):
        retrieval_metrics(emb, torch.zeros(4, dtype=torch.long))
