"""Colourisation in CIE Lab: the chroma ``ab`` of an image predicted from its lightness ``L``.

Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016 (seed 003, "Image
Colourization"). The functional core of :class:`visrep.tasks.ColorizationTask`:

- Lab conversion (kornia's sRGB / D65 formulas): :func:`split_lab`, :func:`merge_lab`,
  :func:`normalize_l`; ``L`` in [0, 100], ``a, b`` roughly in [-86, 98] x [-108, 94] for sRGB.
- the quantised ab output space (Sec. 2.1): :func:`ab_gamut_bins`, the centres of the grid-10
  bins that sRGB colours reach; :func:`nearest_bins`, :func:`bin_histogram`;
- the soft-encoding ``Z = H_gt^{-1}(Y)`` of a target (Sec. 2.1): :func:`soft_encode`, a Gaussian
  (sigma 5) over the 5 nearest bins;
- class rebalancing (Sec. 2.2, Eq. 3, 4): :func:`smooth_distribution`, :func:`rebalance_weights`,
  and the rebalanced multinomial cross-entropy (Eq. 2): :func:`rebalanced_cross_entropy`;
- decoding by the annealed mean (Sec. 2.3, Eq. 5): :func:`annealed_mean`;
- the ab PSNR metric: :func:`psnr`.

Every function is the source of truth; :class:`ABQuantizer` and :class:`RebalancedCrossEntropy`
are thin modules that hold the bins and weights as buffers.
"""

from __future__ import annotations

import functools
import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = [
    "AB_DATA_RANGE",
    "AB_SCALE",
    "ABQuantizer",
    "RebalancedCrossEntropy",
    "ab_gamut_bins",
    "annealed_mean",
    "bin_histogram",
    "merge_lab",
    "nearest_bins",
    "normalize_l",
    "psnr",
    "rebalance_weights",
    "rebalanced_cross_entropy",
    "smooth_distribution",
    "soft_encode",
    "soft_encode_sparse",
    "split_lab",
]

AB_SCALE = 110.0  # a, b / AB_SCALE lie in [-1, 1] for every sRGB colour: the regression target
AB_DATA_RANGE = 200.0  # the peak of the ab PSNR: a, b taken as spanning [-100, 100]


def _check_images(x: Tensor, chans: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != chans:
        raise ShapeError(f"{name}: expected (B, {chans}, H, W), got {tuple(x.shape)}")


def split_lab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """Lightness and chroma of sRGB images (kornia's ``rgb_to_lab``, D65 white).

    Args:
        rgb: ``(B, 3, H, W)`` sRGB in [0, 1].

    Returns:
        ``L`` ``(B, 1, H, W)`` in [0, 100] and ``ab`` ``(B, 2, H, W)``.

    >>> L, ab = split_lab(torch.ones(1, 3, 1, 1))
    >>> round(float(L), 3), [round(v, 1) + 0.0 for v in ab.flatten().tolist()]
    (100.0, [0.0, 0.0])
    """
    _check_images(rgb, 3, "split_lab")
    lab = kornia.color.rgb_to_lab(rgb.clamp(0, 1))
    return lab[:, :1], lab[:, 1:]


def merge_lab(L: Tensor, ab: Tensor) -> Tensor:
    """sRGB images ``(B, 3, H, W)`` in [0, 1] of lightness ``L`` ``(B, 1, H, W)`` and chroma
    ``ab`` ``(B, 2, H, W)``; colours outside the sRGB gamut are clipped."""
    _check_images(L, 1, "merge_lab (L)")
    _check_images(ab, 2, "merge_lab (ab)")
    if L.shape[0] != ab.shape[0] or L.shape[2:] != ab.shape[2:]:
        raise ShapeError(f"merge_lab: L {tuple(L.shape)} and ab {tuple(ab.shape)} differ")
    return kornia.color.lab_to_rgb(torch.cat([L, ab.to(L.dtype)], 1), clip=True)


def normalize_l(L: Tensor) -> Tensor:
    """The network input: ``L`` centred as Zhang et al. do (``L - 50``), scaled to [-1, 1]."""
    return (L - 50.0) / 50.0


@functools.lru_cache(maxsize=8)
def _gamut_bins(grid: int, samples: int) -> Tensor:
    # The ab projection of the sRGB solid is the projection of its surface (every vertical line
    # through the solid meets its boundary), so the six faces of the RGB cube suffice.
    v = torch.linspace(0, 1, samples, dtype=torch.float64)
    u, w = torch.meshgrid(v, v, indexing="ij")
    u, w = u.flatten(), w.flatten()
    faces = []
    for axis in range(3):  # the two faces where channel ``axis`` is 0 or 1
        for level in (0.0, 1.0):
            others = iter((u, w))
            faces.append(
                torch.stack(
                    [torch.full_like(u, level) if c == axis else next(others) for c in range(3)]
                )
            )
    rgb = torch.cat(faces, 1)[None, :, :, None]  # (1, 3, N, 1)
    ab = kornia.color.rgb_to_lab(rgb)[0, 1:, :, 0].T
    cells = torch.unique(torch.round(ab / grid).long(), dim=0)  # sorted by a, then b
    return cells.to(torch.float32) * grid


def ab_gamut_bins(grid: int = 10, samples: int = 257) -> Tensor:
    """Centres ``(Q, 2)`` of the ab bins of side ``grid`` that sRGB colours reach (Sec. 2.1).

    Zhang et al. quantise ab "into bins with grid size 10 and keep the Q = 313 values which are
    in-gamut"; their list (``pts_in_hull.npy``) is a file whose construction the paper does not
    give. Here a bin, centred on a multiple of ``grid``, is kept when the ab of some sRGB colour
    rounds to it (the faces of the RGB cube sampled ``samples`` x ``samples``, in float64):
    Q = 262 for grid 10. Sorted by a, then b.

    >>> ab_gamut_bins().shape
    torch.Size([262, 2])
    """
    if grid < 1 or samples < 2:
        raise ConfigError(f"ab bins: grid must be >= 1 and samples >= 2, got {grid} and {samples}")
    return _gamut_bins(int(grid), int(samples)).clone()


def _pixels(ab: Tensor) -> Tensor:
    _check_images(ab, 2, "ab")
    return ab.permute(0, 2, 3, 1).reshape(-1, 2)


def _knn(points: Tensor, centers: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Squared distances and indices ``(N, k)`` of the ``k`` nearest centres of each point, nearest
    first (exact).

    Centres on a lattice of step ``g`` (as :func:`ab_gamut_bins` gives) are searched in the 5 x 5
    lattice window around each point's nearest lattice node, looked up in a table: any node
    outside it is at least ``2.5 g`` away, so a row whose ``k``-th distance is below that is
    exact; the other rows (``k`` > 5, or a gamut edge leaving too few bins nearby) are searched
    over all centres.
    """
    pts, c = points.float(), centers.float()
    steps = torch.diff(torch.unique(c[:, 0]))
    g = float(steps.min()) if len(steps) else 0.0
    lattice = g > 0 and bool(((c / g).round() * g - c).abs().max() < 1e-4 * g)
    if not lattice or k > 5:
        d2 = torch.cdist(pts, c, compute_mode="donot_use_mm_for_euclid_dist").square()
        return d2.topk(k, dim=1, largest=False)
    node = (c / g).round().long()
    lo = node.min(0).values - 3
    size = node.max(0).values - lo + 4
    table = torch.full((int(size[0]), int(size[1])), -1, dtype=torch.long, device=c.device)
    table[node[:, 0] - lo[0], node[:, 1] - lo[1]] = torch.arange(len(c), device=c.device)
    near = (pts / g).round().long() - lo  # (N, 2), may fall outside the table
    r = torch.arange(-2, 3, device=c.device)
    win = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).view(1, 25, 2) + near[:, None]
    inside = ((win >= 0) & (win < size)).all(-1)
    win = torch.where(inside[..., None], win, torch.zeros_like(win))
    cand = torch.where(inside, table[win[..., 0], win[..., 1]], -1)  # (N, 25)
    d2 = (pts[:, None] - c[cand.clamp_min(0)]).square().sum(-1)
    d2 = d2.masked_fill(cand < 0, math.inf)
    d2, j = d2.topk(k, dim=1, largest=False)
    idx = cand.gather(1, j)
    far = d2[:, -1] >= (2.5 * g) ** 2
    if bool(far.any()):
        full = torch.cdist(pts[far], c, compute_mode="donot_use_mm_for_euclid_dist").square()
        d2[far], idx[far] = full.topk(k, dim=1, largest=False)
    return d2, idx


def nearest_bins(ab: Tensor, centers: Tensor) -> Tensor:
    """Index ``(B, H, W)`` of the bin nearest to each pixel's ``ab`` ``(B, 2, H, W)``."""
    B, _, H, W = ab.shape if ab.dim() == 4 else (0, 0, 0, 0)
    return _knn(_pixels(ab), centers, 1)[1].view(B, H, W)


def bin_histogram(ab: Tensor, centers: Tensor) -> Tensor:
    """Pixel counts ``(Q,)`` of the nearest bins of ``ab`` ``(B, 2, H, W)`` (float64)."""
    idx = nearest_bins(ab, centers).flatten()
    return torch.bincount(idx, minlength=len(centers)).to(torch.float64)


def soft_encode_sparse(
    ab: Tensor, centers: Tensor, neighbours: int = 5, sigma: float = 5.0
) -> tuple[Tensor, Tensor]:
    """:func:`soft_encode` without the zeros: the ``neighbours`` nearest bins of each pixel,
    nearest first, and their weights, both ``(B, neighbours, H, W)``."""
    if not 1 <= neighbours <= len(centers) or sigma <= 0:
        raise ConfigError(
            f"soft_encode: neighbours must be in [1, {len(centers)}] and sigma > 0, got "
            f"{neighbours} and {sigma}"
        )
    B, _, H, W = ab.shape if ab.dim() == 4 else (0, 0, 0, 0)
    d2, idx = _knn(_pixels(ab), centers, neighbours)
    w = torch.exp(-(d2 - d2[:, :1]) / (2 * sigma**2))  # shifted by the nearest: never all 0
    w = (w / w.sum(1, keepdim=True)).to(ab.dtype)
    return (
        idx.view(B, H, W, -1).permute(0, 3, 1, 2),
        w.view(B, H, W, -1).permute(0, 3, 1, 2),
    )


def soft_encode(ab: Tensor, centers: Tensor, neighbours: int = 5, sigma: float = 5.0) -> Tensor:
    """The soft target ``Z = H_gt^{-1}(Y)`` (Sec. 2.1): for each pixel, Gaussian weights
    ``exp(-d^2 / (2 sigma^2))`` of its distance ``d`` to its ``neighbours`` nearest bins,
    normalised to sum to 1, and 0 on every other bin.

    Args:
        ab: ``(B, 2, H, W)`` chroma.
        centers: ``(Q, 2)`` bin centres.
        neighbours: bins per pixel (paper: 5).
        sigma: the Gaussian's width in ab units (paper: 5).

    Returns:
        ``(B, Q, H, W)``, summing to 1 over ``Q``.

    >>> c = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> z = soft_encode(torch.tensor([5.0, 0.0]).view(1, 2, 1, 1), c, neighbours=2)
    >>> z.flatten().tolist()
    [0.5, 0.5, 0.0]
    """
    idx, w = soft_encode_sparse(ab, centers, neighbours, sigma)
    B, _, H, W = idx.shape
    return ab.new_zeros(B, len(centers), H, W).scatter_(1, idx, w)


def smooth_distribution(p: Tensor, centers: Tensor, sigma: float = 5.0) -> Tensor:
    """``p~``: the bin distribution ``p`` ``(Q,)`` smoothed with a Gaussian kernel ``G_sigma``
    over the ab plane (Sec. 2.2), renormalised to sum to 1.

    ``p~_q = sum_r exp(-|c_q - c_r|^2 / (2 sigma^2)) p_r / Z``. ``sigma`` 0 returns ``p / sum p``.
    """
    if p.shape != (len(centers),):
        raise ShapeError(f"smooth_distribution: p must be ({len(centers)},), got {tuple(p.shape)}")
    if float(p.sum()) <= 0 or bool((p < 0).any()):
        raise ConfigError("smooth_distribution: p must be non-negative with a positive sum")
    p = p.to(torch.float64)
    if sigma > 0:
        c = centers.to(torch.float64)
        kernel = torch.exp(-torch.cdist(c, c).square() / (2 * sigma**2))
        p = kernel @ p
    return p / p.sum()


def rebalance_weights(p: Tensor, centers: Tensor, lam: float = 0.5, sigma: float = 5.0) -> Tensor:
    """Class-rebalancing weights ``w`` ``(Q,)`` of Zhang et al., Eq. 4:
    ``w ∝ ((1 - lam) p~ + lam / Q)^-1``, normalised so that ``E_p~[w] = sum_q p~_q w_q = 1``,
    with ``p~`` = :func:`smooth_distribution` of the empirical distribution (or counts) ``p``.

    ``lam`` 1 gives uniform weights (no rebalancing); rare colours weigh more as ``lam`` falls.

    >>> c = torch.tensor([[0.0, 0.0], [50.0, 0.0]])
    >>> [round(v, 4) for v in rebalance_weights(torch.tensor([3.0, 1.0]), c, sigma=0.0).tolist()]
    [0.8571, 1.4286]
    """
    if not 0 < lam <= 1:
        raise ConfigError(f"rebalance_weights: lam must be in (0, 1], got {lam}")
    pt = smooth_distribution(p, centers, sigma)
    w = 1.0 / ((1 - lam) * pt + lam / len(pt))
    return (w / (pt * w).sum()).to(torch.float32)


def rebalanced_cross_entropy(
    logits: Tensor, target: Tensor | tuple[Tensor, Tensor], weights: Tensor | None = None
) -> Tensor:
    """The multinomial cross-entropy of Eq. 2, ``-sum_{h,w} v(Z_hw) sum_q Z_hwq log Zhat_hwq``,
    with ``v(Z_hw) = w_{q*}``, ``q* = argmax_q Z_hwq`` (Eq. 3), averaged over the pixels.

    Args:
        logits: ``(B, Q, H, W)`` scores (``Zhat`` is their softmax over ``Q``).
        target: ``(B, Q, H, W)`` soft target (:func:`soft_encode`), or its sparse form, the
            pair of :func:`soft_encode_sparse` (bins nearest first; the same loss, without
            the dense target).
        weights: ``(Q,)`` rebalancing weights (:func:`rebalance_weights`); None: all 1.
    """
    logp = F.log_softmax(logits, 1)
    if isinstance(target, tuple):
        idx, w = target
        if (
            logits.dim() != 4
            or idx.shape != w.shape
            or (idx.shape[0], *idx.shape[2:]) != (logits.shape[0], *logits.shape[2:])
        ):
            raise ShapeError(
                f"rebalanced_cross_entropy: logits (B, Q, H, W) and bins / weights (B, K, H, W), "
                f"got {tuple(logits.shape)}, {tuple(idx.shape)} and {tuple(w.shape)}"
            )
        ce = -(w.to(logp.dtype) * logp.gather(1, idx)).sum(1)
        top = idx[:, 0]
    else:
        if logits.dim() != 4 or logits.shape != target.shape:
            raise ShapeError(
                f"rebalanced_cross_entropy: logits and target must be the same (B, Q, H, W), got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        ce = -(target * logp).sum(1)  # (B, H, W)
        top = target.argmax(1)
    if weights is not None:
        ce = ce * weights.to(ce.dtype)[top]
    return ce.mean()


def annealed_mean(logits: Tensor, centers: Tensor, temperature: float = 0.38) -> Tensor:
    """Point estimate ``H(Z) = E[f_T(Z)]`` of the ab distribution (Sec. 2.3, Eq. 5):
    ``f_T(z) = exp(log z / T) / sum_q exp(log z_q / T)``, the mean of the bin centres under the
    re-tempered distribution. ``T = 1`` is the mean, ``T -> 0`` the mode; ``T = 0`` takes the mode.

    Args:
        logits: ``(B, Q, H, W)`` scores (``z`` is their softmax).
        centers: ``(Q, 2)`` bin centres.
        temperature: ``T`` (paper: 0.38).

    Returns:
        ``ab`` ``(B, 2, H, W)``.
    """
    if logits.dim() != 4 or logits.shape[1] != len(centers):
        raise ShapeError(
            f"annealed_mean: logits must be (B, {len(centers)}, H, W), got {tuple(logits.shape)}"
        )
    if temperature < 0:
        raise ConfigError(f"annealed_mean: temperature must be >= 0, got {temperature}")
    c = centers.to(logits.dtype)
    if temperature == 0:
        return c[logits.argmax(1)].permute(0, 3, 1, 2)
    # log z = log_softmax(logits) = logits - const, so f_T(z) = softmax(logits / T)
    f = torch.softmax(logits / temperature, 1)
    return torch.einsum("bqhw,qc->bchw", f, c)


def psnr(pred: Tensor, target: Tensor, data_range: float = AB_DATA_RANGE) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` of each image, in dB.

    Args:
        pred, target: ``(B, C, H, W)``.
        data_range: the peak ``R`` (ab: 200, a and b taken as spanning [-100, 100]; RGB: 1).

    Returns:
        ``(B,)``; an exact prediction gives ``inf``.

    >>> psnr(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 2.0)).item()  # 10 log10(200^2/4)
    40.0
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ShapeError(
            f"psnr: pred and target must be the same (B, C, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).to(pred.dtype)


class ABQuantizer(nn.Module):
    """The quantised ab space of :func:`ab_gamut_bins`: soft-encodes targets and decodes
    scores by the annealed mean (the bin centres are a buffer, rebuilt from ``grid``).

    Args:
        grid: bin side in ab units (paper: 10).
        neighbours, sigma: soft-encoding (:func:`soft_encode`; paper: 5 and 5).
        temperature: annealed-mean ``T`` (:func:`annealed_mean`; paper: 0.38).
    """

    def __init__(
        self, grid: int = 10, neighbours: int = 5, sigma: float = 5.0, temperature: float = 0.38
    ) -> None:
        super().__init__()
        self.register_buffer("centers", ab_gamut_bins(grid), persistent=False)
        if not 1 <= neighbours <= len(self.centers) or sigma <= 0 or temperature < 0:
            raise ConfigError(
                f"ab bins: neighbours must be in [1, {len(self.centers)}], sigma > 0 and "
                f"temperature >= 0, got {neighbours}, {sigma} and {temperature}"
            )
        self.neighbours, self.sigma, self.temperature = neighbours, sigma, temperature

    @property
    def num_bins(self) -> int:
        return len(self.centers)

    def encode(self, ab: Tensor) -> Tensor:
        """:func:`soft_encode` of ``ab`` ``(B, 2, H, W)`` -> ``(B, Q, H, W)``."""
        return soft_encode(ab, self.centers, self.neighbours, self.sigma)

    def encode_sparse(self, ab: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`soft_encode_sparse` of ``ab``: bins and weights ``(B, neighbours, H, W)``."""
        return soft_encode_sparse(ab, self.centers, self.neighbours, self.sigma)

    def forward(self, logits: Tensor) -> Tensor:
        """:func:`annealed_mean` of ``logits`` ``(B, Q, H, W)`` -> ``ab`` ``(B, 2, H, W)``."""
        return annealed_mean(logits, self.centers, self.temperature)


class RebalancedCrossEntropy(nn.Module):
    """Module form of :func:`rebalanced_cross_entropy` holding the weights (a buffer, ``(Q,)``)."""

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights.float().clone())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return rebalanced_cross_entropy(logits, target, self.weights)
