"""Fully connected CRF with mean-field inference (dense CRF), as post-processing or a layer.

Krähenbühl and Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials", NeurIPS 2011. The Gibbs energy over labels ``x`` of ``N`` pixels is

    E(x) = sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)                     (Eq. 1-2)
    k(f_i, f_j) = w1 exp(-|p_i-p_j|^2 / (2 theta_alpha^2) - |I_i-I_j|^2 / (2 theta_beta^2))
                + w2 exp(-|p_i-p_j|^2 / (2 theta_gamma^2))                          (Eq. 3)

(appearance and smoothness kernels; Potts ``mu(l, l') = [l != l']`` unless a compatibility
matrix is given). Mean-field inference (their Algorithm 1) starts from ``Q = softmax(-U)`` and
repeats: message passing ``m_i = sum_{j != i} k(f_i, f_j) Q_j`` (each kernel, the self term
excluded), weighting and summing the kernels, the compatibility transform
``P_i(l) = sum_l' mu(l, l') m_i(l')``, and the local update ``Q_i = softmax(-U_i - P_i)``.
DeepLab (Chen et al., ICLR 2015 / TPAMI 2017) runs it as post-processing of the network's
scores; CRF-as-RNN (Zheng et al., ICCV 2015) unrolls the same iterations as a recurrent layer
whose kernel weights and compatibility matrix are learnt (a conditional neural field).

Two message-passing schemes, both pure torch and differentiable:

* :func:`dense_crf_exact`: all ``N^2`` pixel pairs, in row chunks so memory stays bounded;
  ``O(N^2 (D + L))`` time per iteration. The reference, for small images.
* :func:`dense_crf` with ``window=r``: ConvCRF-style local message passing (Teichmann and
  Cipolla, "Convolutional CRFs for Semantic Segmentation", 2018): each pixel exchanges messages
  only with the pixels of the ``(2r+1) x (2r+1)`` square around it; ``O(N r^2 L)`` per iteration.
  **The approximation is truncating both Gaussian kernels to zero outside that window**; with
  the window covering the whole image (``r >= max(H, W) - 1``) it equals the exact CRF. The
  smoothness kernel is nearly unaffected when ``r >= 3 theta_gamma``; the appearance kernel of
  the paper's defaults (``theta_alpha = 80``) reaches much further than a practical window, so
  with those defaults the window version is a *local* bilateral CRF, not the fully connected one.

Units: positions are in pixels; ``image`` is in ``[0, 1]`` and is multiplied by 255 before the
appearance kernel, so ``theta_beta`` is in 0..255 intensity units and the paper's defaults
(``theta_alpha=80, theta_beta=13, theta_gamma=3, w1=10, w2=3``) apply unchanged.

Kernel normalisation (``normalize``). Eq. 3 as written (``"none"``, the default) sums the
kernels unnormalised, so a pixel's message grows with the number of similar pixels around it
(at window 9 up to ~360 appearance terms). The reference implementations divide by the kernel's
response to a field of ones, ``n_i = sum_{j != i} k(f_i, f_j)``: ``"after"``
(``m_i / n_i``, as the CRF-as-RNN layer does: torrvision/crfasrnn,
``multi_stage_meanfield.cpp`` computes ``norm = 1 / (K 1 + 1e-20)`` once and
``meanfield_iteration.cpp`` multiplies each label's filtered ``Q`` by it, "pixel-wise
normalization") and ``"symmetric"`` (``n^{-1/2} K n^{-1/2} Q``, the default of Krähenbühl's
densecrf 2.0: ``src/pairwise.cpp``, ``DenseKernel::initLattice`` / ``filter`` with
``NORMALIZE_SYMMETRIC``; ``NORMALIZE_AFTER`` there is our ``"after"``). Each kernel is
normalised on its own, then weighted by ``w1`` / ``w2``. Unlike the permutohedral filters,
numerator and normaliser here both exclude the self term, so with ``"after"`` the messages of a
constant field equal that constant.

Sign convention: ``unary`` is an energy ``U = -log P`` (lower is more likely). A network's
scores (logits) are fed as ``unary=-logits``: ``softmax(-U)`` is unchanged by adding a
per-pixel constant, so ``-logits`` and ``-log_softmax(logits)`` give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError
from visrep.models.layers.crf_checks import Normalize, check_crf_options, check_inputs

__all__ = [
    "DenseCRF",
    "Normalize",
    "check_crf_options",
    "dense_crf",
    "dense_crf_exact",
    "potts_compatibility",
]


# Elements of one (B, chunk, N) kernel block of the exact version (64 MiB in float32).
_EXACT_BLOCK = 1 << 24
# Elements of Q the window filters process at once (a few images): Q, the accumulator and a
# weight plane stay in cache across the ~(2r+1)^2 passes. Measured, 1 thread, B=8, 11 labels,
# 176x240, r=9: one appearance filter 864 ms on the whole batch, 368-388 ms in such chunks.
_FILTER_BLOCK = 1 << 20


def potts_compatibility(num_labels: int, dtype: torch.dtype | None = None) -> Tensor:
    """The Potts compatibility ``mu(l, l') = [l != l']`` as an ``(L, L)`` matrix.

    >>> potts_compatibility(2)
    tensor([[0., 1.],
            [1., 0.]])
    """
    return 1.0 - torch.eye(num_labels, dtype=dtype)


# --------------------------------------------------------------------------- message passing
Filter = Callable[[Tensor], Tensor]


def _norm_scale(filt: Filter, ones: Tensor, normalize: str) -> Tensor | None:
    """Per-pixel factor of a normalised kernel: ``1 / n`` (after) or ``n^{-1/2}`` (symmetric),
    ``n = K 1`` its response to a field of ones, ``+1e-20`` against an empty neighbourhood as in
    densecrf's ``initLattice``; None for ``"none"``."""
    if normalize == "none":
        return None
    n = filt(ones) + 1e-20
    return n.reciprocal() if normalize == "after" else n.rsqrt()


def _normalised(filt: Filter, q: Tensor, scale: Tensor | None, normalize: str) -> Tensor:
    """``K Q`` (none), ``diag(1/n) K Q`` (after) or ``diag(n^-1/2) K diag(n^-1/2) Q`` (symmetric)."""
    if normalize == "symmetric":
        return scale * filt(scale * q)
    m = filt(q)
    return m if scale is None else scale * m


def _exact_filter(q: Tensor, feat: Tensor) -> Tensor:
    """``m_i = sum_{j != i} exp(-|f_i - f_j|^2 / 2) Q_j`` over all pairs, in row chunks.

    Shape: q ``(B, L, N)``, feat ``(B, N, D)``; returns ``(B, L, N)``.
    """
    b, _, n = q.shape
    chunk = max(1, min(n, _EXACT_BLOCK // (b * n)))
    sq = feat.pow(2).sum(-1)
    cols = torch.arange(n, device=q.device)
    out = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # |f_i - f_j|^2 = |f_i|^2 + |f_j|^2 - 2 f_i.f_j, clamped against round-off below zero.
        d = sq[:, start:stop, None] + sq[:, None, :] - 2 * feat[:, start:stop] @ feat.mT
        k = torch.exp(-0.5 * d.clamp_min(0))
        self_pair = cols[None, :] == torch.arange(start, stop, device=q.device)[:, None]
        out.append(q @ k.masked_fill(self_pair, 0.0).mT)  # (B, L, N) @ (B, N, c) -> (B, L, c)
    return torch.cat(out, dim=2)


def _pixel_features(
    image: Tensor, theta_alpha: float, theta_beta: float, theta_gamma: float
) -> tuple[Tensor, Tensor]:
    """``([y, x] / theta_alpha ++ 255 I / theta_beta, [y, x] / theta_gamma)``, each (B, N, D)."""
    b, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype, device=image.device),
        torch.arange(w, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    pos = torch.stack([ys, xs], dim=-1).reshape(1, h * w, 2).expand(b, -1, -1)
    colour = image.flatten(2).mT * (255.0 / theta_beta)
    feat_a = torch.cat([pos / theta_alpha, colour], dim=-1)
    return feat_a, pos / theta_gamma


def _appearance_weights(colour: Tensor, ry: int, rx: int, theta_alpha: float) -> Tensor:
    """Truncated appearance kernel ``k(i, i + d)`` for the half window ``d > (0, 0)``.

    ``d = (dy, dx)`` runs over ``dy = 0, dx = 1..rx`` and ``dy = 1..ry, dx = -rx..rx`` in that
    order; the other half follows from the symmetry ``k(i, i + d) = k(i + d, i)``. One row of
    offsets at a time through an ``unfold`` view (``2 ry + 1`` batched ops instead of one per
    offset). Exponents below ``log(tiny)`` give exact zeros, not subnormals: those contribute
    nothing and would slow down every later multiply-add by an order of magnitude.

    Shape: colour ``(B, C, H, W)`` (already divided by ``theta_beta``); returns
    ``(K, B, 1, H, W)`` with ``K = ry (2 rx + 1) + rx``.
    """
    b, c, h, w = colour.shape
    nx = 2 * rx + 1
    cp = F.pad(colour, (rx, rx, 0, ry))  # partners below and beside; zeros outside the image
    dx2 = torch.arange(-rx, rx + 1, dtype=colour.dtype, device=colour.device).pow(2)
    out = colour.new_empty(ry * nx + rx, b, 1, h, w)
    diff = colour.new_empty(nx, b, 1, h, w)
    log_tiny = math.log(torch.finfo(colour.dtype).tiny)
    start = 0
    for dy in range(ry + 1):
        first = rx + 1 if dy == 0 else 0
        # (nx, B, C, H, W) view: entry [k, ..., y, x] is cp[..., y + dy, x + k], i.e. dx = k - rx.
        rows = cp[:, :, dy : dy + h].unfold(3, nx, 1).permute(4, 0, 1, 2, 3)[first:]
        block, d = out[start : start + len(rows)], diff[: len(rows)]
        spatial = (dx2[first:] + dy * dy) / theta_alpha**2  # |p_i - p_j|^2 / theta_alpha^2
        block.copy_(spatial.view(-1, 1, 1, 1, 1).expand_as(block))
        for ch in range(c):
            torch.sub(colour[None, :, ch : ch + 1], rows[:, :, ch : ch + 1], out=d)
            block.addcmul_(d, d)
        block.mul_(-0.5)
        keep = block > log_tiny  # exp() is slow there too: give it zeros, then zero the results
        F.threshold_(block, log_tiny, 0.0).exp_().mul_(keep)  # per row: small temporaries
        start += len(rows)
    return out


def _gauss_1d(q: Tensor, taps: list[float], dim: int) -> Tensor:
    """``out_i = sum_{|d| <= r} taps[|d|] q_{i+d}`` along ``dim``, zeros beyond the image.

    ``r + 1`` scalar multiply-adds per direction of shifted views (no convolution: a one-channel
    convolution with a long kernel is far slower on CPU, forward and backward).
    """
    n = q.shape[dim]
    out = q * taps[0]
    for d in range(1, min(len(taps) - 1, n - 1) + 1):
        out.narrow(dim, 0, n - d).add_(q.narrow(dim, d, n - d), alpha=taps[d])
        out.narrow(dim, d, n - d).add_(q.narrow(dim, 0, n - d), alpha=taps[d])
    return out


def _in_chunks(q: Tensor, fn: Callable[[Tensor, slice], Tensor]) -> Tensor:
    """``fn`` over chunks of ``q``'s images of at most ``_FILTER_BLOCK`` elements (at least one
    image each), concatenated: cache blocking of the many passes a window filter makes over Q;
    each call is vectorised over its images, labels and pixels."""
    b = q.shape[0]
    step = max(1, _FILTER_BLOCK // max(1, q[0].numel()))
    if step >= b:
        return fn(q, slice(0, b))
    return torch.cat([fn(q[s : s + step], slice(s, s + step)) for s in range(0, b, step)])


class _WindowKernel:
    """The truncated kernels of one image batch, precomputed once and reused by the iterations.

    Appearance: the half-window weights of :func:`_appearance_weights`
    (``4 ((2r+1)^2 - 1) / 2 B H W`` bytes in float32). Smoothness: image independent and
    separable, a 1-D Gaussian along y then x. Both are symmetric and depend on no learnt
    quantity, so both go through :class:`_SymmetricFilter`; no gradient flows to the image or
    the thetas.
    """

    def __init__(
        self, image: Tensor, radius: int, theta_alpha: float, theta_beta: float, theta_gamma: float
    ) -> None:
        _, _, h, w = image.shape
        self.radius, self.h, self.w = radius, h, w
        # Offsets beyond the image never pair two pixels; skipping them changes nothing.
        self.ry, self.rx = min(radius, h - 1), min(radius, w - 1)
        self.offsets = [
            (dy, dx)
            for dy in range(self.ry + 1)
            for dx in range(-self.rx, self.rx + 1)
            if dy > 0 or dx > 0
        ]
        with torch.no_grad():
            colour = image.detach() * (255.0 / theta_beta)
            self.weights = _appearance_weights(colour, self.ry, self.rx, theta_alpha)
        self.taps = [math.exp(-(d**2) / (2.0 * theta_gamma**2)) for d in range(radius + 1)]

    def filter_appearance(self, q: Tensor) -> Tensor:
        """``m_i = sum_{0 < |d| <= r} k_a(i, i + d) Q_{i+d}`` (no autograd of its own).

        Each stored weight serves two messages: ``i`` hears ``i + d`` and ``i + d`` hears ``i``.
        Messages to partners outside the image land in the accumulator's margin and are dropped;
        messages from there are zero (zero padding of ``Q``).
        """
        return _in_chunks(q, lambda part, s: self._appearance_chunk(part, self._weights_of(s)))

    def _weights_of(self, samples: slice) -> Tensor:
        return self.weights if self.weights.shape[1] == 1 else self.weights[:, samples]

    def _appearance_chunk(self, q: Tensor, weights: Tensor) -> Tensor:
        _, _, h, w = q.shape
        ry, rx = self.ry, self.rx
        qp = F.pad(q, (rx, rx, ry, ry))
        acc = torch.zeros_like(qp)
        centre = acc[:, :, ry : ry + h, rx : rx + w]
        for wgt, (dy, dx) in zip(weights, self.offsets, strict=True):
            ys, xs = slice(ry + dy, ry + dy + h), slice(rx + dx, rx + dx + w)
            centre.addcmul_(wgt, qp[:, :, ys, xs])
            acc[:, :, ys, xs].addcmul_(wgt, q)
        return centre.contiguous()

    def filter_smoothness(self, q: Tensor) -> Tensor:
        """``m_i = sum_{j != i, |y_i - y_j|, |x_i - x_j| <= r} k_s(i, j) Q_j`` (separable)."""

        def chunk(part: Tensor, _: slice) -> Tensor:
            m = _gauss_1d(_gauss_1d(part, self.taps, 2), self.taps, 3)
            return m.sub_(part)  # the centre weight is taps[0]^2 = 1: the self term

        return _in_chunks(q, chunk)

    def appearance(self, q: Tensor) -> Tensor:
        """``K_a Q`` with the custom backward of :class:`_SymmetricFilter`."""
        return _SymmetricFilter.apply(q, self.filter_appearance)

    def smoothness(self, q: Tensor) -> Tensor:
        """``K_s Q`` with the custom backward of :class:`_SymmetricFilter`."""
        return _SymmetricFilter.apply(q, self.filter_smoothness)


class _SymmetricFilter(torch.autograd.Function):
    """``m = K Q`` for a fixed symmetric kernel ``K`` given as a filter function.

    ``K`` (``k(i, j) = k(j, i)``: a Gaussian of the feature distance, truncated to a symmetric
    window) does not depend on ``Q`` and gets no gradient, so the backward is the same filter
    on the incoming gradient, ``dL/dQ = K^T dL/dm = K dL/dm``. Only the filter (the kernel's
    weights, shared by all iterations) is kept, none of the ``(2r+1)^2`` shifted products that
    autograd would save and undo one by one. The backward is itself a ``_SymmetricFilter``, so
    double backward works too.
    """

    @staticmethod
    def forward(ctx, q: Tensor, filt: Filter) -> Tensor:  # type: ignore[override]
        ctx.filt = filt
        return filt(q)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return _SymmetricFilter.apply(grad, ctx.filt), None


def _message_fn(
    image: Tensor,
    b: int,
    n_labels: int,
    window: int | None,
    theta_alpha: float,
    theta_beta: float,
    theta_gamma: float,
    w1: float | Tensor,
    w2: float | Tensor,
    normalize: str,
) -> Filter:
    """The message passing and weighting step of Algorithm 1: ``Q -> w1 m_a + w2 m_s``.

    ``window=None``: all pairs (:func:`_exact_filter`); else the truncated window kernels of
    :class:`_WindowKernel`. Each kernel normalised per ``normalize`` (module docstring).
    """
    _, _, h, w = image.shape
    if window is None:
        feat_a, feat_s = _pixel_features(image, theta_alpha, theta_beta, theta_gamma)

        def exact(feat: Tensor) -> Filter:
            return lambda q: _exact_filter(q.reshape(b, q.shape[1], h * w), feat).view(q.shape)

        filt_a, filt_s = exact(feat_a), exact(feat_s)
        ones_a = ones_s = image.new_ones(b, 1, h, w)
    else:
        kernel = _WindowKernel(image, window, theta_alpha, theta_beta, theta_gamma)
        filt_a, filt_s = kernel.appearance, kernel.smoothness
        ones_a, ones_s = image.new_ones(b, 1, h, w), image.new_ones(1, 1, h, w)
    with torch.no_grad():
        scale_a = _norm_scale(filt_a, ones_a, normalize)
        scale_s = _norm_scale(filt_s, ones_s, normalize)

    def messages(q: Tensor) -> Tensor:
        m_a = _normalised(filt_a, q, scale_a, normalize)
        m_s = _normalised(filt_s, q, scale_s, normalize)
        return w1 * m_a + w2 * m_s

    return messages


# --------------------------------------------------------------------------- mean field
def _mean_field(
    unary: Tensor,
    iterations: int,
    compatibility: Tensor | None,
    messages,
) -> Tensor:
    q = torch.softmax(-unary, dim=1)
    for _ in range(iterations):
        m = messages(q)  # message passing, weighting and summing the kernels
        if compatibility is None:
            # Potts: sum_{l' != l} m(l') = sum_l' m(l') - m(l).
            pairwise = m.sum(1, keepdim=True) - m
        else:
            pairwise = torch.einsum("kl,bl...->bk...", compatibility.to(m.dtype), m)
        q = torch.softmax(-unary - pairwise, dim=1)  # local update and normalisation
    return q


def dense_crf_exact(
    unary: Tensor,
    image: Tensor,
    iterations: int = 5,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    theta_gamma: float = 3.0,
    w_appearance: float | Tensor = 10.0,
    w_smoothness: float | Tensor = 3.0,
    compatibility: Tensor | None = None,
    normalize: Normalize = "none",
) -> Tensor:
    """Mean-field marginals of the fully connected CRF, messages over all pixel pairs (reference).

    Exact Algorithm 1 of Krähenbühl and Koltun (2011) with the naive ``O(N^2)`` message passing
    instead of their permutohedral-lattice filtering; the ``N x N`` kernel is built in row
    chunks of about 2^24 elements and never stored whole. Differentiable.

    Args:
        unary: energies ``U = -log P`` (or ``-logits``), see the module docstring.
        image: the image in ``[0, 1]``; multiplied by 255 for the appearance kernel.
        iterations: mean-field iterations (0 gives ``softmax(-unary)``).
        theta_alpha: spatial std of the appearance kernel, pixels.
        theta_beta: colour std of the appearance kernel, 0..255 intensity units.
        theta_gamma: spatial std of the smoothness kernel, pixels.
        w_appearance: ``w1``, a number or a scalar tensor.
        w_smoothness: ``w2``, a number or a scalar tensor.
        compatibility: ``mu`` as an ``(L, L)`` matrix, ``mu[l, l']``; None for Potts.
        normalize: ``"none"`` (Eq. 3 as written), ``"after"`` (each kernel's message divided
            by its response to a field of ones, as CRF-as-RNN) or ``"symmetric"``
            (``n^-1/2 K n^-1/2``, densecrf 2.0's default); see the module docstring.

    Returns:
        The marginals ``Q``, a softmax over labels.

    Shape: unary ``(B, L, H, W)``, image ``(B, C, H, W)``; returns ``(B, L, H, W)``.
    """
    fname = "dense_crf_exact"
    check_crf_options(fname, iterations, theta_alpha, theta_beta, theta_gamma, None, normalize)
    check_inputs(unary, image, w_appearance, w_smoothness, compatibility, fname)
    messages = _message_fn(
        image.to(unary.dtype), unary.shape[0], unary.shape[1], None, theta_alpha, theta_beta,
        theta_gamma, w_appearance, w_smoothness, normalize,
    )  # fmt: skip
    return _mean_field(unary, iterations, compatibility, messages)


def dense_crf(
    unary: Tensor,
    image: Tensor,
    iterations: int = 5,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    theta_gamma: float = 3.0,
    w_appearance: float | Tensor = 10.0,
    w_smoothness: float | Tensor = 3.0,
    compatibility: Tensor | None = None,
    window: int | None = 9,
    normalize: Normalize = "none",
) -> Tensor:
    """Mean-field marginals of the dense CRF with messages truncated to a local window.

    ConvCRF-style (Teichmann and Cipolla 2018) message passing: pixel ``i`` receives messages
    only from pixels ``j`` with ``|y_i - y_j| <= window`` and ``|x_i - x_j| <= window``; both
    Gaussian kernels are **truncated to zero beyond that square** (the only approximation; it
    is exact once ``window >= max(H, W) - 1``). Appearance weights are computed once per call
    for half the window (the kernel is symmetric, each weight serves both directions) and
    shared by the iterations; their message passing has a custom backward (the same filter on
    the gradient, :class:`_SymmetricFilter`), so training through the layer keeps only the
    weights and one message per iteration. The smoothness kernel is separable (shifted
    multiply-adds along y then x) and has the same custom backward. No gradient flows
    to ``image``. Arguments and units are those of :func:`dense_crf_exact`; ``window=None``
    calls it.

    Args:
        unary: energies ``U = -log P`` (DeepLab: ``unary=-logits``).
        image: the image in ``[0, 1]``.
        iterations, theta_alpha, theta_beta, theta_gamma, w_appearance, w_smoothness,
            compatibility, normalize: as in :func:`dense_crf_exact`.
        window: radius ``r`` of the ``(2r+1) x (2r+1)`` window, or None for all pairs.

    Returns:
        The marginals ``Q``.

    Shape: unary ``(B, L, H, W)``, image ``(B, C, H, W)``; returns ``(B, L, H, W)``.

    >>> u = torch.zeros(1, 2, 3, 3); u[0, 1] = 1.0; u[0, 1, 1, 1] = -1.0  # one odd pixel
    >>> dense_crf(u, torch.zeros(1, 1, 3, 3), window=1).argmax(1)[0, 1, 1].item()
    0
    """
    if window is None:
        return dense_crf_exact(
            unary, image, iterations, theta_alpha, theta_beta, theta_gamma,
            w_appearance, w_smoothness, compatibility, normalize,
        )  # fmt: skip
    check_crf_options(
        "dense_crf", iterations, theta_alpha, theta_beta, theta_gamma, window, normalize
    )
    check_inputs(unary, image, w_appearance, w_smoothness, compatibility, "dense_crf")
    messages = _message_fn(
        image.to(unary.dtype), unary.shape[0], unary.shape[1], window, theta_alpha, theta_beta,
        theta_gamma, w_appearance, w_smoothness, normalize,
    )  # fmt: skip
    return _mean_field(unary, iterations, compatibility, messages)


class DenseCRF(nn.Module):
    """Module form of :func:`dense_crf`; with ``learnable=True`` a CRF-as-RNN layer.

    With ``learnable`` the kernel weights ``w_appearance``, ``w_smoothness`` (scalars) and the
    ``(L, L)`` compatibility matrix (initialised to Potts; needs ``num_labels``) are parameters
    trained through the unrolled iterations (Zheng et al. 2015). The thetas stay fixed, as there.
    ``forward(unary, image)`` returns the marginals ``Q``; train with ``nll_loss(Q.log(), y)``.
    ``normalize="after"`` is CRF-as-RNN's kernel normalisation (module docstring); with it each
    kernel's message is at most 1 per label, so the post-processing weights do not saturate
    ``Q`` as they do unnormalised.
    """

    def __init__(
        self,
        num_labels: int | None = None,
        iterations: int = 5,
        theta_alpha: float = 80.0,
        theta_beta: float = 13.0,
        theta_gamma: float = 3.0,
        w_appearance: float = 10.0,
        w_smoothness: float = 3.0,
        window: int | None = 9,
        learnable: bool = False,
        normalize: Normalize = "none",
    ) -> None:
        super().__init__()
        if learnable and (not isinstance(num_labels, int) or num_labels < 1):
            raise ConfigError(f"DenseCRF: learnable=True needs num_labels >= 1, got {num_labels!r}")
        check_crf_options(
            "DenseCRF", iterations, theta_alpha, theta_beta, theta_gamma, window, normalize
        )
        self.num_labels = num_labels
        self.iterations = iterations
        self.theta_alpha, self.theta_beta, self.theta_gamma = theta_alpha, theta_beta, theta_gamma
        self.window = window
        self.normalize = normalize
        self.learnable = learnable
        if learnable:
            self.w_appearance = nn.Parameter(torch.tensor(float(w_appearance)))
            self.w_smoothness = nn.Parameter(torch.tensor(float(w_smoothness)))
            self.compatibility = nn.Parameter(potts_compatibility(num_labels))
        else:
            self.w_appearance = float(w_appearance)
            self.w_smoothness = float(w_smoothness)
            self.compatibility = None

    def forward(self, unary: Tensor, image: Tensor) -> Tensor:
        return dense_crf(
            unary,
            image,
            iterations=self.iterations,
            theta_alpha=self.theta_alpha,
            theta_beta=self.theta_beta,
            theta_gamma=self.theta_gamma,
            w_appearance=self.w_appearance,
            w_smoothness=self.w_smoothness,
            compatibility=self.compatibility,
            window=self.window,
            normalize=self.normalize,
        )

    def extra_repr(self) -> str:
        return (
            f"num_labels={self.num_labels}, iterations={self.iterations}, "
            f"theta_alpha={self.theta_alpha}, theta_beta={self.theta_beta}, "
            f"theta_gamma={self.theta_gamma}, window={self.window}, "
            f"normalize={self.normalize!r}, learnable={self.learnable}"
        )
