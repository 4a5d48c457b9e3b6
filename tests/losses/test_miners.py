import math

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, DataError, ShapeError
from visrep.losses import (
    PAIR_MINERS,
    TRIPLET_MINERS,
    AllPairsMiner,
    AllTripletsMiner,
    BatchHardMiner,
    DistanceWeightedMiner,
    HardPairMiner,
    RandomPairMiner,
    SemiHardMiner,
    all_pairs,
    all_triplets,
    batch_hard_triplets,
    distance_weighted_triplets,
    distance_weights,
    hard_pairs,
    pairwise_distances,
    random_pairs,
    semi_hard_triplets,
)

UNEVEN = torch.tensor([3, 0, 1, 0, 2, 1, 0, 3, 3, 1, 4, 0])  # class sizes 4, 3, 1, 3, 1


def _pk(p: int, k: int) -> torch.Tensor:
    return torch.arange(p).repeat_interleave(k)


def _batch(labels: torch.Tensor, dim: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(len(labels), dim, dtype=torch.float64, generator=g), dim=1)


def _set(*cols: torch.Tensor) -> set[tuple[int, ...]]:
    return set(zip(*(c.tolist() for c in cols), strict=True))


def _pml():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import miners
    from pytorch_metric_learning.distances import LpDistance

    # LpDistance normalises embeddings by default: ours are unit-norm already, say it anyway.
    return miners, LpDistance(normalize_embeddings=False)


# --- all pairs / all triplets: counts and PML's enumeration -------------------------------------


@pytest.mark.parametrize("labels", [_pk(5, 4), UNEVEN, torch.tensor([0, 0, 1])])
def test_all_pairs_and_all_triplets_counts(labels):
    b = len(labels)
    sizes = torch.bincount(labels)
    sizes = sizes[sizes > 0]
    i, j, same = all_pairs(labels)
    assert len(i) == b * (b - 1) // 2
    assert int(same.sum()) == int((sizes * (sizes - 1) // 2).sum())
    assert bool((i < j).all()) and len(_set(i, j)) == len(i)
    assert torch.equal(same, (labels[i] == labels[j]).long())
    a, p, n = all_triplets(labels)
    assert len(a) == int((sizes * (sizes - 1) * (b - sizes)).sum())
    assert bool((labels[a] == labels[p]).all() & (a != p).all() & (labels[a] != labels[n]).all())
    assert len(_set(a, p, n)) == len(a)


def test_all_pairs_and_triplets_equal_pml_enumeration():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    a1, p, a2, n = lmu.get_all_pairs_indices(UNEVEN)
    i, j, same = all_pairs(UNEVEN)
    pos, neg = same == 1, same == 0
    # PML lists ordered pairs; ours are the unordered ones (i < j).
    assert _set(a1, p) == _set(i[pos], j[pos]) | _set(j[pos], i[pos])
    assert _set(a2, n) == _set(i[neg], j[neg]) | _set(j[neg], i[neg])
    ref = lmu.get_all_triplets_indices(UNEVEN)
    for mine, theirs in zip(all_triplets(UNEVEN), ref, strict=True):
        assert torch.equal(mine, theirs)


def test_random_pairs_are_balanced_correct_and_uniform():
    labels = _pk(4, 3)  # 12 positive pairs, 54 negative ones
    i, j, same = random_pairs(labels, torch.Generator().manual_seed(0))
    assert int(same.sum()) == int((same == 0).sum()) == 12
    assert torch.equal(same, (labels[i] == labels[j]).long())
    assert bool((i < j).all()) and len(_set(i, j)) == len(i)
    ai, aj, asame = all_pairs(labels)
    assert _set(i[same == 1], j[same == 1]) == _set(ai[asame == 1], aj[asame == 1])
    # more positive than negative pairs: as many of each as there are negative ones
    few = torch.tensor([0, 0, 0, 0, 1])
    i, j, same = random_pairs(few)
    assert int(same.sum()) == int((same == 0).sum()) == 4
    assert torch.equal(same, (few[i] == few[j]).long()) and len(_set(i, j)) == 8
    # each of the 54 negative pairs is drawn with probability 12 / 54
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(12, 12)
    runs = 600
    for _ in range(runs):
        i, j, same = random_pairs(labels, g)
        counts.index_put_((i[same == 0], j[same == 0]), torch.ones(12), accumulate=True)
    freq = counts[ai[asame == 0], aj[asame == 0]] / runs
    p = 12 / 54
    assert float((freq - p).abs().max()) < 5 * math.sqrt(p * (1 - p) / runs)
    a = random_pairs(labels, torch.Generator().manual_seed(3))
    b = random_pairs(labels, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --- hard pairs / batch hard --------------------------------------------------------------------


def _brute_hard(emb, labels):
    d = torch.cdist(emb, emb)
    hp, hn = {}, {}
    for a in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        if pos:
            hp[a] = max(pos, key=lambda j: float(d[a, j]))
        if neg:
            hn[a] = min(neg, key=lambda j: float(d[a, j]))
    return hp, hn


def test_batch_hard_and_hard_pairs_equal_pml():
    miners, dist = _pml()
    labels = _pk(8, 4)
    emb = _batch(labels, 16, seed=2)
    ref = miners.BatchHardMiner(distance=dist)(emb, labels)
    for mine, theirs in zip(batch_hard_triplets(emb, labels), ref, strict=True):
        assert torch.equal(mine, theirs)
    a1, p, a2, n = miners.BatchEasyHardMiner(
        pos_strategy="hard", neg_strategy="hard", distance=dist
    )(emb, labels)
    i, j, same = hard_pairs(emb, labels)
    assert torch.equal(i[same == 1], a1) and torch.equal(j[same == 1], p)
    assert torch.equal(i[same == 0], a2) and torch.equal(j[same == 0], n)


def test_batch_hard_and_hard_pairs_equal_brute_force_with_singleton_classes():
    emb = _batch(UNEVEN, 5, seed=3) * 3  # not unit norm: the miners do not need it
    hp, hn = _brute_hard(emb, UNEVEN)
    a, p, n = batch_hard_triplets(emb, UNEVEN)
    assert a.tolist() == sorted(hp) and p.tolist() == [hp[k] for k in sorted(hp)]
    assert n.tolist() == [hn[k] for k in sorted(hp)]  # anchors of one-sample classes left out
    i, j, same = hard_pairs(emb, UNEVEN)
    assert _set(i[same == 1], j[same == 1]) == set(hp.items())
    assert _set(i[same == 0], j[same == 0]) == set(hn.items())  # every anchor has a negative


# --- semi-hard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("squared", [False, True])
def test_semi_hard_is_facenet_selection_of_pml_semihard_triplets(squared):
    miners, _ = _pml()
    from pytorch_metric_learning.distances import LpDistance

    labels = _pk(6, 5)
    emb = _batch(labels, 8, seed=4)
    margin = 0.3
    dist = LpDistance(normalize_embeddings=False, power=2 if squared else 1)
    ref = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=dist)
    ra, rp, rn = ref(emb, labels)
    # PML keeps every semi-hard triplet; FaceNet one per anchor-positive pair, the nearest negative.
    d = pairwise_distances(emb, squared=squared)
    best: dict[tuple[int, int], int] = {}
    for a, p, n in zip(ra.tolist(), rp.tolist(), rn.tolist(), strict=True):
        if (a, p) not in best or d[a, n] < d[a, best[(a, p)]]:
            best[(a, p)] = n
    a, p, n = semi_hard_triplets(emb, labels, margin, squared=squared)
    assert len(a) > 20
    assert {(x, y): z for x, y, z in zip(a.tolist(), p.tolist(), n.tolist(), strict=True)} == best
    assert len(a) == len(best)


def test_pml_all_triplets_that_violate_the_margin_are_our_nonzero_loss_triplets():
    miners, dist = _pml()
    labels = _pk(5, 4)
    emb = _batch(labels, 6, seed=5)
    a, p, n = all_triplets(labels)
    d = pairwise_distances(emb)
    keep = d[a, p] - d[a, n] + 0.4 > 0
    ref = miners.TripletMarginMiner(margin=0.4, type_of_triplets="all", distance=dist)(emb, labels)
    for mine, theirs in zip((a[keep], p[keep], n[keep]), ref, strict=True):
        assert torch.equal(mine, theirs)


# --- distance-weighted sampling -----------------------------------------------------------------


def test_distance_weights_equal_wu_et_al_formula_and_pml():
    miners, _ = _pml()
    from pytorch_metric_learning.miners import distance_weighted_miner

    labels = _pk(6, 4)
    dim = 6  # distances of random unit vectors in R^6 spread on both sides of 0.5 and 1.4
    emb = _batch(labels, dim, seed=6)
    emb[4:6] = F.normalize(emb[0:2] + 0.15 * emb[8:10], dim=1)  # negatives nearer than 0.5
    w = distance_weights(emb, labels)
    # Wu et al. eq. 4: q(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2); weight ∝ 1 / q(max(d, 0.5)) for
    # negatives with d < 1.4, normalised per anchor.
    d = torch.cdist(emb, emb)
    dc = d.clamp_min(0.5)
    inv_q = dc ** (2 - dim) * (1 - dc**2 / 4) ** (-(dim - 3) / 2)
    neg = labels[:, None] != labels[None, :]
    ok = neg & (d < 1.4)
    expected = torch.where(ok, inv_q, 0)
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(w, expected)
    assert int((neg & (d < 0.5)).sum()) > 0 and int((neg & (d >= 1.4)).sum()) > 0
    # PML computes the same weights inside DistanceWeightedMiner: capture them.
    seen = {}
    original = distance_weighted_miner.lmu.get_random_triplet_indices

    def capture(labels, ref_labels=None, t_per_anchor=None, weights=None):
        seen["w"] = weights
        return original(labels, ref_labels=ref_labels, t_per_anchor=t_per_anchor, weights=weights)

    distance_weighted_miner.lmu.get_random_triplet_indices = capture
    try:
        miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(emb, labels)
    finally:
        distance_weighted_miner.lmu.get_random_triplet_indices = original
    torch.testing.assert_close(w, seen["w"])


def test_distance_weighted_sampling_frequencies_match_the_weights():
    labels = torch.cat([torch.zeros(60, dtype=torch.long), _pk(4, 3) + 1])  # 59 positives each
    emb = _batch(labels, 4, seed=7)
    w = distance_weights(emb, labels)
    g = torch.Generator().manual_seed(8)
    counts = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    runs = 20
    for _ in range(runs):
        a, p, n = distance_weighted_triplets(emb, labels, generator=g)
        assert bool((labels[a] == labels[p]).all() & (a != p).all())
        assert bool((w[a, n] > 0).all())
        counts.index_put_((a, n), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    kept = w.sum(1) > 0
    pos = (labels[:, None] == labels[None, :]).sum(1) - 1
    draws = (runs * pos).to(torch.float64)[:, None]
    # each (a, p) pair of a kept anchor appears once per call, none of a dropped anchor
    assert torch.equal(counts.sum(1)[kept], draws[kept, 0])
    assert float(counts.sum(1)[~kept].sum()) == 0.0
    rows = (labels == 0) & kept  # 1180 draws per anchor
    freq, wr = counts[rows] / draws[rows], w[rows]
    tol = 5 * torch.sqrt(wr * (1 - wr) / draws[rows]) + 1e-3
    assert bool(((freq - wr).abs() <= tol).all())


# --- modules, tables and bad input --------------------------------------------------------------


def test_modules_equal_functions_and_tables():
    labels = _pk(4, 3)
    emb = _batch(labels, 5, seed=9).float()
    cases = [
        (AllPairsMiner(), all_pairs(labels)),
        (HardPairMiner(), hard_pairs(emb, labels)),
        (AllTripletsMiner(), all_triplets(labels)),
        (BatchHardMiner(), batch_hard_triplets(emb, labels)),
        (SemiHardMiner(0.5, squared=True), semi_hard_triplets(emb, labels, 0.5, squared=True)),
    ]
    for module, expected in cases:
        for x, y in zip(module(emb, labels), expected, strict=True):
            assert torch.equal(x, y)
    torch.manual_seed(0)
    got = RandomPairMiner()(emb, labels) + DistanceWeightedMiner(0.3, 1.6)(emb, labels)
    torch.manual_seed(0)
    expected = random_pairs(labels) + distance_weighted_triplets(emb, labels, 0.3, 1.6)
    assert all(torch.equal(x, y) for x, y in zip(got, expected, strict=True))
    assert set(PAIR_MINERS) == {"all", "random", "hard"}
    assert set(TRIPLET_MINERS) == {"all", "batch_hard", "semi_hard", "distance_weighted"}


@pytest.mark.parametrize(
    "mine",
    [
        lambda e, y: all_pairs(y),
        lambda e, y: random_pairs(y),
        hard_pairs,
        lambda e, y: all_triplets(y),
        batch_hard_triplets,
        semi_hard_triplets,
        distance_weighted_triplets,
        *[lambda e, y, c=c: c()(e, y) for c in (*PAIR_MINERS.values(), *TRIPLET_MINERS.values())],
    ],
)
def test_miners_bad_input(mine):
    emb = torch.randn(4, 3)
    with pytest.raises(DataError, match=">= 2 samples"):
        mine(emb, torch.tensor([0, 1, 2, 3]))  # no class with two samples
    with pytest.raises(DataError, match=">= 2 classes"):
        mine(emb, torch.tensor([1, 1, 1, 1]))  # nothing to contrast with
    with pytest.raises(ShapeError, match="labels"):
        mine(emb, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ShapeError, match="labels"):
        mine(emb, torch.tensor([[0, 0], [1, 1]]))


@pytest.mark.parametrize(
    "mine", [hard_pairs, batch_hard_triplets, semi_hard_triplets, distance_weighted_triplets]
)
def test_embedding_miners_bad_embeddings(mine):
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ShapeError, match="embeddings"):
        mine(torch.randn(5, 3), labels)
    bad = torch.randn(4, 3)
    bad[2, 1] = math.nan
    with pytest.raises(DataError, match="NaN"):
        mine(bad, labels)


def test_miner_options_bad_values():
    emb, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    for m in (0.0, -1.0, math.inf):
        with pytest.raises(ConfigError, match="margin"):
            semi_hard_triplets(emb, labels, m)
        with pytest.raises(ConfigError, match="margin"):
            SemiHardMiner(m)
    for c, nz in ((0.0, 1.4), (1.5, 1.4), (0.5, 2.5), (math.nan, 1.4)):
        with pytest.raises(ConfigError, match="cutoff") as fn:
            distance_weighted_triplets(emb, labels, c, nz)
        with pytest.raises(ConfigError, match="cutoff") as module:
            DistanceWeightedMiner(c, nz)
        # one check (check_cutoffs) behind both: the same message but for who asks
        assert str(fn.value).replace("distance_weighted_triplets", "DistanceWeightedMiner") == str(
            module.value
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_miners_and_losses_on_cuda_equal_cpu():
    from visrep.losses import contrastive_loss, triplet_loss

    labels = _pk(6, 4)
    emb = _batch(labels, 16, seed=11)
    cuda = emb.cuda().requires_grad_()
    for mine in (hard_pairs, batch_hard_triplets, semi_hard_triplets):
        for x, y in zip(mine(emb, labels), mine(cuda, labels.cuda()), strict=True):
            assert torch.equal(x, y.cpu())
    trip = batch_hard_triplets(emb, labels)
    loss = triplet_loss(cuda, tuple(t.cuda() for t in trip), 0.3)
    torch.testing.assert_close(loss.cpu(), triplet_loss(emb, trip, 0.3))
    loss.backward()
    cpu = emb.clone().requires_grad_()
    triplet_loss(cpu, trip, 0.3).backward()
    torch.testing.assert_close(cuda.grad.cpu(), cpu.grad)
    g = torch.Generator("cuda").manual_seed(0)
    i, _, same = random_pairs(labels.cuda(), g)
    assert i.is_cuda and int(same.sum()) == int((same == 0).sum())
    a, _, n = distance_weighted_triplets(cuda, labels.cuda(), generator=g)
    assert bool((distance_weights(emb, labels)[a.cpu(), n.cpu()] > 0).all())
    pairs = hard_pairs(emb, labels)
    torch.testing.assert_close(
        contrastive_loss(cuda, tuple(t.cuda() for t in pairs)).cpu(),
        contrastive_loss(emb, pairs),
    )
