import math

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.losses import (
    ContrastiveLoss,
    TripletLoss,
    all_triplets,
    batch_hard_triplets,
    contrastive_loss,
    hard_pairs,
    pairwise_distances,
    semi_hard_triplets,
    triplet_loss,
)
from visrep.losses.metric import pair_sq_distances


def _pk(p: int, k: int) -> torch.Tensor:
    return torch.arange(p).repeat_interleave(k)


def _brute_distances(x, y):
    return (x[:, None, :] - y[None, :, :]).pow(2).sum(-1).sqrt()


# --- pairwise_distances -------------------------------------------------------------------------


def test_pairwise_distances_equal_brute_force_and_are_exact_for_near_duplicates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64, generator=g)
    y = torch.randn(4, 5, dtype=torch.float64, generator=g)
    torch.testing.assert_close(pairwise_distances(x, y), _brute_distances(x, y))
    torch.testing.assert_close(pairwise_distances(x, y, squared=True), _brute_distances(x, y) ** 2)
    d = pairwise_distances(x)
    torch.testing.assert_close(d, _brute_distances(x, x))
    assert bool((d.diagonal() == 0).all())
    # float32 near-duplicates: |x|^2 + |y|^2 - 2 x.y alone is off by ~3e-4 here (cdist's 7e-4).
    a = F.normalize(torch.randn(40, 64, generator=g), dim=1)
    z = torch.cat([a, a + 1e-5 * torch.randn(40, 64, generator=g)])
    exact = _brute_distances(z.double(), z.double())
    assert float((pairwise_distances(z).double() - exact).abs().max()) < 1e-6


def test_pairwise_distances_gradcheck_including_zero_distance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g)
    y = torch.randn(4, 3, dtype=torch.float64, generator=g)
    x[1] = x[0]  # a zero distance off the diagonal
    y[2] = x[3]
    x.requires_grad_()
    y.requires_grad_()
    for squared in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, s=squared: pairwise_distances(a, b, s), (x, y))
        assert torch.autograd.gradcheck(lambda a, s=squared: pairwise_distances(a, squared=s), (x,))
    grad = torch.autograd.grad(pairwise_distances(x).sum(), x)[0]
    assert bool(torch.isfinite(grad).all())


def test_pairwise_distances_bad_shapes():
    with pytest.raises(ShapeError, match="pairwise_distances"):
        pairwise_distances(torch.zeros(3))
    with pytest.raises(ShapeError, match="pairwise_distances"):
        pairwise_distances(torch.zeros(3, 2), torch.zeros(3, 4))


def test_pair_distances_from_differences_and_from_the_matrix_agree_with_finite_gradients():
    g = torch.Generator().manual_seed(8)
    emb = torch.randn(24, 3, dtype=torch.float64, generator=g)
    emb[5] = emb[4]
    few = (torch.tensor([4, 0, 7]), torch.tensor([5, 9, 3]))  # 3 <= 24^2 / 16: differences
    many = torch.triu_indices(24, 24, 1)  # 276 > 36: the matrix
    for i, j in (few, (many[0], many[1])):
        torch.testing.assert_close(pair_sq_distances(emb, i, j), (emb[i] - emb[j]).pow(2).sum(1))
    x = emb.clone().requires_grad_()
    pairs = (few[0], few[1], torch.tensor([0, 1, 0]))  # the zero distance as a different pair
    assert torch.autograd.gradcheck(lambda e: contrastive_loss(e, pairs), (x,))
    trip = (torch.tensor([4, 2]), torch.tensor([5, 8]), torch.tensor([1, 5]))
    for squared in (False, True):
        f = lambda e, s=squared: triplet_loss(e, trip, 0.3, s)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x,))


# --- contrastive loss ---------------------------------------------------------------------------


def test_contrastive_loss_on_hand_computed_pairs():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.0, 0.2], [1.2, 0.0]], dtype=torch.float64)
    i, j, same = torch.tensor([0, 0, 0, 1]), torch.tensor([1, 2, 3, 2]), torch.tensor([1, 0, 0, 1])
    # d01 = 0.5 (same): 1/2 0.25 = 0.125;  d02 = 0.2 (different): 1/2 (1 - 0.2)^2 = 0.32;
    # d03 = 1.2 (different, beyond m = 1): 0;  d12 = sqrt(0.13) (same): 1/2 0.13 = 0.065.
    expected = (0.125 + 0.32 + 0.0 + 0.065) / 4
    assert float(contrastive_loss(emb, (i, j, same), margin=1.0)) == pytest.approx(expected)
    # m = 2: d02 -> 1/2 1.8^2 = 1.62, d03 -> 1/2 0.8^2 = 0.32.
    expected = (0.125 + 1.62 + 0.32 + 0.065) / 4
    assert float(contrastive_loss(emb, (i, j, same), margin=2.0)) == pytest.approx(expected)
    # gradient of a lone different pair inside the margin: -(m - d) (x_i - x_j) / d on x_i.
    x = emb.clone().requires_grad_()
    contrastive_loss(x, (torch.tensor([0]), torch.tensor([2]), torch.tensor([0]))).backward()
    torch.testing.assert_close(x.grad[0], torch.tensor([0.0, 0.8], dtype=torch.float64))
    torch.testing.assert_close(x.grad[2], torch.tensor([0.0, -0.8], dtype=torch.float64))


def test_contrastive_loss_gradcheck_including_zero_distance():
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(6, 4, dtype=torch.float64, generator=g) * 0.3
    emb[1] = emb[0]  # zero distance, used as a same pair and as a different pair
    emb.requires_grad_()
    i = torch.tensor([0, 0, 2, 3, 4, 1])
    j = torch.tensor([1, 1, 5, 4, 5, 3])
    same = torch.tensor([1, 0, 1, 0, 0, 1])
    assert torch.autograd.gradcheck(lambda e: contrastive_loss(e, (i, j, same), 1.0), (emb,))
    grad = torch.autograd.grad(contrastive_loss(emb, (i, j, same)), emb)[0]
    assert bool(torch.isfinite(grad).all())


def test_contrastive_module_equals_function_with_each_miner():
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(12, 5, generator=g)
    labels = _pk(4, 3)
    torch.testing.assert_close(
        ContrastiveLoss(0.7, miner="hard")(emb, labels),
        contrastive_loss(emb, hard_pairs(emb, labels), 0.7),
    )
    pairs = (torch.tensor([0, 1]), torch.tensor([5, 2]), torch.tensor([0, 1]))
    torch.testing.assert_close(
        ContrastiveLoss(0.7)(emb, pairs=pairs), contrastive_loss(emb, pairs, 0.7)
    )
    torch.manual_seed(5)
    a = ContrastiveLoss(miner="random")(emb, labels)
    torch.manual_seed(5)
    from visrep.losses import random_pairs

    torch.testing.assert_close(a, contrastive_loss(emb, random_pairs(labels)))


def test_contrastive_bad_input():
    emb, pairs = torch.zeros(3, 2), (torch.tensor([0]), torch.tensor([1]), torch.tensor([1]))
    for m in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="margin"):
            contrastive_loss(emb, pairs, margin=m)
    with pytest.raises(ConfigError, match="margin"):
        ContrastiveLoss(margin=0)
    with pytest.raises(ConfigError, match="miner"):
        ContrastiveLoss(miner="semi_hard")
    with pytest.raises(ShapeError, match="embeddings"):
        contrastive_loss(torch.zeros(3), pairs)
    with pytest.raises(ShapeError, match="outside the batch"):
        contrastive_loss(emb, (torch.tensor([0]), torch.tensor([3]), torch.tensor([1])))
    with pytest.raises(ShapeError, match="0 or 1"):
        contrastive_loss(emb, (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ShapeError, match="pairs"):
        contrastive_loss(emb, (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([1])))


# --- triplet loss -------------------------------------------------------------------------------


def test_triplet_loss_equals_pytorch_metric_learning():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import AvgNonZeroReducer, MeanReducer

    g = torch.Generator().manual_seed(4)
    emb = torch.randn(24, 8, dtype=torch.float64, generator=g)
    labels = _pk(6, 4)
    for squared in (False, True):
        # PML's LpDistance normalises embeddings by default; ours does not; power=2 is d^2.
        dist = LpDistance(normalize_embeddings=False, power=2 if squared else 1)
        for trip in (all_triplets(labels), batch_hard_triplets(emb, labels)):
            # PML's default reducer, AvgNonZeroReducer, averages over the triplets with a
            # positive loss only; ours (and FaceNet's / Hermans et al.'s) over all of them, which
            # is PML's MeanReducer.
            ref = pml_losses.TripletMarginLoss(margin=0.3, distance=dist, reducer=MeanReducer())
            torch.testing.assert_close(
                triplet_loss(emb, trip, 0.3, squared=squared), ref(emb, labels, trip)
            )
        trip = all_triplets(labels)
        nonzero = pml_losses.TripletMarginLoss(0.3, distance=dist, reducer=AvgNonZeroReducer())
        assert float(nonzero(emb, labels, trip)) > float(triplet_loss(emb, trip, 0.3, squared))


def test_triplet_loss_squared_and_not_equal_brute_force():
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(9, 3, dtype=torch.float64, generator=g)
    a, p, n = all_triplets(_pk(3, 3))
    for squared in (False, True):
        terms = []
        for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
            dap = float((emb[ai] - emb[pi]).norm())
            dan = float((emb[ai] - emb[ni]).norm())
            if squared:
                dap, dan = dap**2, dan**2
            terms.append(max(0.0, dap - dan + 0.5))
        expected = sum(terms) / len(terms)
        assert float(triplet_loss(emb, (a, p, n), 0.5, squared)) == pytest.approx(expected)


def test_triplet_loss_gradcheck_including_zero_distance():
    g = torch.Generator().manual_seed(6)
    emb = torch.randn(6, 3, dtype=torch.float64, generator=g) * 0.2
    emb[1] = emb[0]  # d_ap = 0 for (0, 1, .)
    emb[3] = emb[2]  # d_an = 0 for (2, ., 3)
    emb.requires_grad_()
    a, p, n = torch.tensor([0, 2, 4, 0]), torch.tensor([1, 5, 5, 1]), torch.tensor([2, 3, 0, 4])
    for squared in (False, True):
        f = lambda e, s=squared: triplet_loss(e, (a, p, n), 0.4, s)  # noqa: E731
        assert torch.autograd.gradcheck(f, (emb,))
        assert bool(torch.isfinite(torch.autograd.grad(f(emb), emb)[0]).all())


def test_triplet_module_equals_function_and_empty_triplets_give_zero():
    g = torch.Generator().manual_seed(7)
    emb = torch.randn(16, 4, generator=g)
    labels = _pk(4, 4)
    torch.testing.assert_close(
        TripletLoss(0.3)(emb, labels), triplet_loss(emb, batch_hard_triplets(emb, labels), 0.3)
    )
    torch.testing.assert_close(
        TripletLoss(0.3, squared=True, miner="semi_hard")(emb, labels),
        triplet_loss(emb, semi_hard_triplets(emb, labels, 0.3, squared=True), 0.3, True),
    )
    torch.testing.assert_close(
        TripletLoss(0.3, miner="all")(emb, labels), triplet_loss(emb, all_triplets(labels), 0.3)
    )
    x = emb.clone().requires_grad_()
    empty = torch.zeros(0, dtype=torch.long)
    loss = triplet_loss(x, (empty, empty, empty))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert bool((x.grad == 0).all())


def test_triplet_bad_input():
    emb = torch.zeros(4, 2)
    t = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    for m in (0.0, -0.2):
        with pytest.raises(ConfigError, match="margin"):
            triplet_loss(emb, t, margin=m)
        with pytest.raises(ConfigError, match="margin"):
            TripletLoss(margin=m)
    with pytest.raises(ConfigError, match="miner"):
        TripletLoss(miner="hard")
    with pytest.raises(ShapeError, match="outside the batch"):
        triplet_loss(emb, (torch.tensor([0]), torch.tensor([1]), torch.tensor([4])))
    with pytest.raises(ShapeError, match="triplets"):
        triplet_loss(emb, (torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ConfigError, match="labels"):
        TripletLoss()(emb)
