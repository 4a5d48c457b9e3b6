"""Distance matrices and the pair / triplet miners of metric learning (seed 001, "Siamese
Networks": "need hard-example mining to avoid flat gradients").

A batch is ``(B, D)`` embeddings with ``(B,)`` int64 labels. Pair miners return ``(i, j, same)``
(three ``(n,)`` int64 tensors, ``same`` in {0, 1}, ``i != j``); triplet miners return
``(a, p, n)`` (three ``(n,)`` int64 tensors: ``labels[a] == labels[p]``, ``a != p``,
``labels[a] != labels[n]``). Every miner is vectorised over the batch (one distance matrix and
boolean masks), runs without gradient, and raises a one-line :class:`~visrep.errors.DataError`
when the batch has no class with two samples or only one class (nothing to mine).

Pair miners: :func:`all_pairs`, :func:`random_pairs`, :func:`hard_pairs`.
Triplet miners: :func:`all_triplets`, :func:`batch_hard_triplets` (Hermans et al. 2017),
:func:`semi_hard_triplets` (Schroff et al. 2015, FaceNet), :func:`distance_weighted_triplets`
(Wu et al. 2017).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError

Pairs = tuple[Tensor, Tensor, Tensor]
Triplets = tuple[Tensor, Tensor, Tensor]


class _Distances(torch.autograd.Function):
    """``|x_i - y_j|`` (or its square; ``y = x`` when None) as one matrix product, with the
    entries it cannot resolve recomputed from the differences, and the gradient as matrix
    products (O(N M) memory)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, y: Tensor | None, squared: bool
    ) -> Tensor:
        same = y is None
        y = x if y is None else y
        x2, y2 = x.pow(2).sum(1), y.pow(2).sum(1)
        scale = x2[:, None] + y2[None, :]
        d = torch.addmm(scale, x, y.T, alpha=-2).clamp_min_(0)
        close = d < scale.mul_(1e-3)
        if same:  # a row's distance to itself is 0
            d.fill_diagonal_(0)
            close.fill_diagonal_(False)
        if bool(close.any()):
            i, j = close.nonzero(as_tuple=True)
            step = max(1, 2**22 // max(1, x.shape[1]))  # bounded memory for a collapsed batch
            for s in range(0, i.numel(), step):
                ii, jj = i[s : s + step], j[s : s + step]
                d[ii, jj] = (x[ii] - y[jj]).pow(2).sum(1)
        if not squared:
            d.sqrt_()
        ctx.squared, ctx.same = squared, same
        ctx.save_for_backward(x, d) if same else ctx.save_for_backward(x, y, d)
        return d

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor | None, None]:  # type: ignore[override]
        # d(d^2)/dx_i = 2 (x_i - y_j); dd/dx_i = (x_i - y_j) / d, taken as 0 at d = 0
        d = ctx.saved_tensors[-1]
        g = 2 * g if ctx.squared else torch.where(d > 0, g / torch.where(d > 0, d, 1), 0)
        if ctx.same:  # x is both sides: one product with the symmetrised gradient
            x = ctx.saved_tensors[0]
            g = g + g.T
            return x * g.sum(1, keepdim=True) - g @ x, None, None
        x, y, _ = ctx.saved_tensors
        gx = x * g.sum(1, keepdim=True) - g @ y
        gy = y * g.sum(0)[:, None] - g.T @ x
        return gx, gy, None


def pairwise_distances(x: Tensor, y: Tensor | None = None, squared: bool = False) -> Tensor:
    """Euclidean distances between the rows of ``x`` and ``y`` (``x`` itself when None).

    ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product) loses every digit when two rows nearly
    coincide (float32: ``d^2`` off by ~1e-7 |x|^2, so ``d`` by ~3e-4 and ``dd/dx = (x - y) / d``
    by orders of magnitude), so entries with ``d^2 <= 1e-3 (|x|^2 + |y|^2)`` are recomputed from
    the differences (``x``'s self-distances are then exactly 0), and the gradient is formed from
    these distances as matrix products. At ``d = 0`` the gradient of ``d`` is 0 (the symmetric
    subgradient, what central differences see), so it is finite everywhere.

    Args:
        x: ``(N, D)``.
        y: ``(M, D)`` or None for ``x``.
        squared: return ``d^2`` instead of ``d``.

    Returns:
        ``(N, M)`` distances, differentiable.

    >>> pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    tensor([[0., 5.],
            [5., 0.]])
    """
    if x.dim() != 2 or (y is not None and (y.dim() != 2 or y.shape[1] != x.shape[1])):
        got = tuple(x.shape) if y is None else f"{tuple(x.shape)} and {tuple(y.shape)}"
        raise ShapeError(f"pairwise_distances: expected (N, D) and (M, D) rows, got {got}")
    return _Distances.apply(x, y, squared)


def sqrt0(d2: Tensor) -> Tensor:
    """``sqrt(d2)`` for ``d2 >= 0``, with gradient 0 (not inf) where ``d2 == 0``."""
    tiny = torch.finfo(d2.dtype).tiny
    return torch.where(d2 > 0, d2.clamp_min(tiny).sqrt(), d2.new_zeros(()))


def check_batch(emb: Tensor | None, labels: Tensor, who: str) -> None:
    """Raise unless ``labels`` is ``(B,)`` integers matching ``emb`` ``(B, D)`` (finite), with at
    least one class of two samples and at least two classes."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ShapeError(f"{who}: labels must be a (B,) integer tensor, got {shape}")
    if emb is not None and (emb.dim() != 2 or emb.shape[0] != labels.shape[0]):
        raise ShapeError(
            f"{who}: embeddings must be (B, D) with B = {labels.shape[0]} labels, "
            f"got {tuple(emb.shape)}"
        )
    _, counts = torch.unique(labels, return_counts=True)
    if counts.numel() < 2 or int(counts.max()) < 2:
        raise DataError(
            f"{who}: a batch needs a class with >= 2 samples and >= 2 classes, got class "
            f"sizes {counts.tolist()[:16]} (P x K batches: the loader's classes_per_batch)"
        )
    if emb is not None and not bool(torch.isfinite(emb).all()):
        raise DataError(f"{who}: embeddings contain NaN or infinite values")


def check_margin(margin: float, who: str) -> float:
    """``margin`` as a float; ConfigError unless finite and > 0."""
    if not isinstance(margin, int | float) or not math.isfinite(margin) or margin <= 0:
        raise ConfigError(f"{who}: margin must be a finite number > 0, got {margin!r}")
    return float(margin)


def check_cutoffs(cutoff: float, nonzero_loss_cutoff: float, who: str) -> None:
    """ConfigError unless ``0 < cutoff < nonzero_loss_cutoff <= 2``, the distance clips of
    distance-weighted sampling (distances on the unit sphere lie in [0, 2])."""
    if not 0 < cutoff < nonzero_loss_cutoff <= 2:
        raise ConfigError(
            f"{who}: need 0 < cutoff < nonzero_loss_cutoff <= 2 (distances on the unit sphere), "
            f"got cutoff={cutoff}, nonzero_loss_cutoff={nonzero_loss_cutoff}"
        )


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, B)`` masks of positive pairs (same class, ``i != j``) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    dev = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=dev).to(device)


def all_pairs(labels: Tensor) -> Pairs:
    """Every unordered pair ``i < j`` of the batch, flagged same (1) or different (0).

    Args:
        labels: ``(B,)`` class ids.

    Returns:
        ``(i, j, same)``, ``B (B - 1) / 2`` pairs of which ``sum_c n_c (n_c - 1) / 2`` same.

    >>> all_pairs(torch.tensor([0, 0, 1]))
    (tensor([0, 0, 1]), tensor([1, 2, 2]), tensor([1, 0, 0]))
    """
    check_batch(None, labels, "all_pairs")
    i, j = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
    return i, j, (labels[i] == labels[j]).long()


def random_pairs(labels: Tensor, generator: torch.Generator | None = None) -> Pairs:
    """A balanced random set of pairs: ``n = min(#positive, #negative)`` unordered pairs of each
    kind, drawn uniformly without replacement from all ``i < j`` pairs of that kind (all the
    positive pairs when there are at least as many negative ones, as in P x K batches).

    Args:
        labels: ``(B,)`` class ids.
        generator: source of randomness (the global one when None).

    Returns:
        ``(i, j, same)``: ``n`` positive pairs, then ``n`` negative pairs.
    """
    i, j, same = all_pairs(labels)
    pos, neg = same.nonzero().squeeze(1), (same == 0).nonzero().squeeze(1)
    n = min(len(pos), len(neg))
    pos = pos[_randperm(len(pos), generator, labels.device)[:n]]
    neg = neg[_randperm(len(neg), generator, labels.device)[:n]]
    keep = torch.cat([pos, neg])
    return i[keep], j[keep], same[keep]


def hard_pairs(emb: Tensor, labels: Tensor) -> Pairs:
    """Per anchor, its hardest positive pair (the farthest sample of its class) and its hardest
    negative pair (the nearest sample of another class): the pair form of batch-hard mining
    (Hermans et al. 2017, "In Defense of the Triplet Loss", "Batch Hard"). pytorch-metric-learning's
    ``BatchEasyHardMiner(pos_strategy="hard", neg_strategy="hard")`` gives the same pairs when
    every anchor has a positive; it drops an anchor without one from both sets, here such an
    anchor (a class of one sample) still gives its hardest negative pair.

    Args:
        emb: ``(B, D)`` embeddings.
        labels: ``(B,)`` class ids.

    Returns:
        ``(i, j, same)``: the positive pairs ``(anchor, hardest positive, 1)`` of the anchors that
        have one, then the negative pairs ``(anchor, hardest negative, 0)``; ties go to the
        lowest index.
    """
    check_batch(emb, labels, "hard_pairs")
    with torch.no_grad():
        d = pairwise_distances(emb.detach())
        pos, neg = _masks(labels)
        hp = d.masked_fill(~pos, -math.inf).argmax(1)
        hn = d.masked_fill(~neg, math.inf).argmin(1)
    a = torch.arange(len(labels), device=labels.device)
    ap, an = a[pos.any(1)], a[neg.any(1)]
    i, j = torch.cat([ap, an]), torch.cat([hp[ap], hn[an]])
    same = torch.cat([torch.ones_like(ap), torch.zeros_like(an)])
    return i, j, same


def all_triplets(labels: Tensor) -> Triplets:
    """Every valid triplet ``(a, p, n)`` of the batch, in lexicographic order.

    Args:
        labels: ``(B,)`` class ids.

    Returns:
        ``(a, p, n)``, ``sum_c n_c (n_c - 1) (B - n_c)`` triplets.

    >>> all_triplets(torch.tensor([0, 0, 1]))
    (tensor([0, 1]), tensor([1, 0]), tensor([2, 2]))
    """
    check_batch(None, labels, "all_triplets")
    pos, neg = _masks(labels)
    a, p, n = (pos[:, :, None] & neg[:, None, :]).nonzero(as_tuple=True)
    return a, p, n


def batch_hard_triplets(emb: Tensor, labels: Tensor) -> Triplets:
    """Batch-hard triplets (Hermans et al. 2017, "In Defense of the Triplet Loss for Person
    Re-Identification", section 2): for every anchor, the farthest positive and the nearest
    negative of the batch. Equal to pytorch-metric-learning's ``BatchHardMiner``.

    Args:
        emb: ``(B, D)`` embeddings.
        labels: ``(B,)`` class ids.

    Returns:
        ``(a, p, n)``, one triplet per anchor that has a positive (ties to the lowest index).
    """
    check_batch(emb, labels, "batch_hard_triplets")
    with torch.no_grad():
        d = pairwise_distances(emb.detach())
        pos, neg = _masks(labels)
        hp = d.masked_fill(~pos, -math.inf).argmax(1)
        hn = d.masked_fill(~neg, math.inf).argmin(1)
    a = pos.any(1).nonzero().squeeze(1)
    return a, hp[a], hn[a]


def semi_hard_triplets(
    emb: Tensor, labels: Tensor, margin: float = 0.2, squared: bool = False
) -> Triplets:
    """FaceNet's semi-hard triplets (Schroff et al. 2015, section 3.2): every
    anchor-positive pair of the batch, each with the nearest negative that is farther from the
    anchor than the positive but inside the margin, ``d_ap < d_an < d_ap + margin``.

    pytorch-metric-learning's ``TripletMarginMiner(type_of_triplets="semihard")`` returns *all*
    such triplets (``0 < d_an - d_ap <= margin``); FaceNet (and this miner) keeps one negative
    per anchor-positive pair, the hardest of them; pairs without a semi-hard negative are
    dropped (their triplets would be easy, or hard ones FaceNet avoids early in training).

    Args:
        emb: ``(B, D)`` embeddings.
        labels: ``(B,)`` class ids.
        margin: the triplet loss margin ``alpha`` (> 0).
        squared: compare squared distances, as FaceNet's loss does.

    Returns:
        ``(a, p, n)``, at most one triplet per ordered anchor-positive pair.
    """
    margin = check_margin(margin, "semi_hard_triplets")
    check_batch(emb, labels, "semi_hard_triplets")
    with torch.no_grad():
        d = pairwise_distances(emb.detach(), squared=squared)
        pos, neg = _masks(labels)
        a, p = pos.nonzero(as_tuple=True)
        dap = d[a, p][:, None]
        dan = d[a]
        ok = neg[a] & (dan > dap) & (dan < dap + margin)
        n = dan.masked_fill(~ok, math.inf).argmin(1)
        keep = ok.any(1)
    return a[keep], p[keep], n[keep]


def distance_weights(
    emb: Tensor, labels: Tensor, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4
) -> Tensor:
    """The negative-sampling distribution of distance-weighted sampling (Wu et al. 2017,
    "Sampling Matters in Deep Embedding Learning", section 4).

    On the unit sphere of ``R^n`` pairwise distances follow ``q(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2)``
    (section 4); a negative is drawn with probability ``∝ q(d_an)^-1``, clipped by evaluating it at
    ``max(d, cutoff)`` (the paper's ``min(lambda, q^-1)``), and 0 for ``d >= nonzero_loss_cutoff``
    (no loss there) and for same-class samples, exactly as the authors' code and
    pytorch-metric-learning's ``DistanceWeightedMiner`` weight them. Distances are taken between
    the L2-normalised embeddings (the sphere ``q`` is derived for).

    Args:
        emb: ``(B, n)`` embeddings.
        labels: ``(B,)`` class ids.
        cutoff: lower clip of the distance (0.5 in the paper).
        nonzero_loss_cutoff: distance beyond which a negative is never drawn (1.4).

    Returns:
        ``(B, B)``: row ``a`` is the distribution over negatives of anchor ``a`` (sums to 1), or
        all zeros when ``a`` has no negative nearer than ``nonzero_loss_cutoff``.
    """
    check_cutoffs(cutoff, nonzero_loss_cutoff, "distance_weighted_triplets")
    check_batch(emb, labels, "distance_weighted_triplets")
    with torch.no_grad():
        x = torch.nn.functional.normalize(emb.detach(), dim=1)
        d = pairwise_distances(x)
        dim = x.shape[1]
        dc = d.clamp(min=cutoff, max=nonzero_loss_cutoff)
        # log q(d)^-1 up to a constant; the allowed d < nonzero_loss_cutoff <= 2 keep it finite.
        log_w = (2.0 - dim) * dc.log() - (dim - 3) / 2 * torch.log1p(-0.25 * dc * dc)
        _, neg = _masks(labels)
        allowed = neg & (d < nonzero_loss_cutoff)
        log_w = log_w.masked_fill(~allowed, -math.inf)
        w = torch.softmax(log_w, dim=1)
        return torch.where(allowed.any(1, keepdim=True), w, torch.zeros_like(w))


def distance_weighted_triplets(
    emb: Tensor,
    labels: Tensor,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    generator: torch.Generator | None = None,
) -> Triplets:
    """Distance-weighted sampling (Wu et al. 2017, section 4): every anchor-positive pair of the
    batch with one negative drawn from :func:`distance_weights` of its anchor.

    This follows the authors' code (every positive of the anchor once, one negative drawn for
    each). pytorch-metric-learning's ``DistanceWeightedMiner`` weights negatives the same way
    but draws ``n_c`` positives per anchor at random with replacement, so the two agree in the
    weights (tested), not in the triplets; anchors whose negatives all lie beyond
    ``nonzero_loss_cutoff`` are dropped in both.

    Args:
        emb: ``(B, D)`` embeddings (distances for sampling are taken after L2 normalisation).
        labels: ``(B,)`` class ids.
        cutoff: lower clip of the distance (0.5 in the paper).
        nonzero_loss_cutoff: distance beyond which a negative is never drawn (1.4).
        generator: source of randomness (the global one when None).

    Returns:
        ``(a, p, n)``, one triplet per ordered anchor-positive pair of the kept anchors.
    """
    w = distance_weights(emb, labels, cutoff, nonzero_loss_cutoff)
    pos, _ = _masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    keep = w.sum(1)[a] > 0
    a, p = a[keep], p[keep]
    if a.numel() == 0:
        return a, p, a.clone()
    # inverse-CDF draws from row a of w (torch.multinomial's per-row sampling is ~10x slower)
    cdf = w.cumsum(1)
    dev = generator.device if generator is not None else w.device
    u = torch.rand(a.shape[0], generator=generator, device=dev, dtype=w.dtype).to(w.device)
    n = torch.searchsorted(cdf[a], (u * cdf[a, -1])[:, None], right=True).squeeze(1)
    last = (torch.arange(w.shape[1], device=w.device) * (w > 0)).argmax(1)  # rounding at u -> 1
    return a, p, torch.minimum(n, last[a])


class AllPairsMiner(nn.Module):
    """Module form of :func:`all_pairs` (``forward(emb, labels)``)."""

    def forward(self, emb: Tensor, labels: Tensor) -> Pairs:
        check_batch(emb, labels, "AllPairsMiner")
        return all_pairs(labels)


class RandomPairMiner(nn.Module):
    """Module form of :func:`random_pairs` (the global random generator)."""

    def forward(self, emb: Tensor, labels: Tensor) -> Pairs:
        check_batch(emb, labels, "RandomPairMiner")
        return random_pairs(labels)


class HardPairMiner(nn.Module):
    """Module form of :func:`hard_pairs`."""

    def forward(self, emb: Tensor, labels: Tensor) -> Pairs:
        return hard_pairs(emb, labels)


class AllTripletsMiner(nn.Module):
    """Module form of :func:`all_triplets`."""

    def forward(self, emb: Tensor, labels: Tensor) -> Triplets:
        check_batch(emb, labels, "AllTripletsMiner")
        return all_triplets(labels)


class BatchHardMiner(nn.Module):
    """Module form of :func:`batch_hard_triplets`."""

    def forward(self, emb: Tensor, labels: Tensor) -> Triplets:
        return batch_hard_triplets(emb, labels)


class SemiHardMiner(nn.Module):
    """Module form of :func:`semi_hard_triplets`."""

    def __init__(self, margin: float = 0.2, squared: bool = False) -> None:
        super().__init__()
        self.margin = check_margin(margin, "SemiHardMiner")
        self.squared = squared

    def forward(self, emb: Tensor, labels: Tensor) -> Triplets:
        return semi_hard_triplets(emb, labels, self.margin, self.squared)


class DistanceWeightedMiner(nn.Module):
    """Module form of :func:`distance_weighted_triplets` (the global random generator)."""

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4) -> None:
        super().__init__()
        check_cutoffs(cutoff, nonzero_loss_cutoff, "DistanceWeightedMiner")
        self.cutoff = cutoff
        self.nonzero_loss_cutoff = nonzero_loss_cutoff

    def forward(self, emb: Tensor, labels: Tensor) -> Triplets:
        return distance_weighted_triplets(emb, labels, self.cutoff, self.nonzero_loss_cutoff)


PAIR_MINERS: dict[str, type[nn.Module]] = {
    "all": AllPairsMiner,
    "random": RandomPairMiner,
    "hard": HardPairMiner,
}
TRIPLET_MINERS: dict[str, type[nn.Module]] = {
    "all": AllTripletsMiner,
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
    "distance_weighted": DistanceWeightedMiner,
}
