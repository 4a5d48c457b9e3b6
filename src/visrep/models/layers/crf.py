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

Sign convention: ``unary`` is an energy ``U = -log P`` (lower is more likely). A network's
scores (logits) are fed as ``unary=-logits``: ``softmax(-U)`` is unchanged by adding a
per-pixel constant, so ``-logits`` and ``-log_softmax(logits)`` give the same result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

__all__ = ["DenseCRF", "dense_crf", "dense_crf_exact", "potts_compatibility"]

# Elements of one (B, chunk, N) kernel block of the exact version (64 MiB in float32).
_EXACT_BLOCK = 1 << 24


def potts_compatibility(num_labels: int, dtype: torch.dtype | None = None) -> Tensor:
    """The Potts compatibility ``mu(l, l') = [l != l']`` as an ``(L, L)`` matrix.

    >>> potts_compatibility(2)
    tensor([[0., 1.],
            [1., 0.]])
    """
    return 1.0 - torch.eye(num_labels, dtype=dtype)


# --------------------------------------------------------------------------- checks
def _check_inputs(
    unary: Tensor,
    image: Tensor,
    iterations: int,
    theta_alpha: float,
    theta_beta: float,
    theta_gamma: float,
    w_appearance: float | Tensor,
    w_smoothness: float | Tensor,
    compatibility: Tensor | None,
    fname: str,
) -> None:
    if not isinstance(unary, Tensor) or unary.dim() != 4 or not unary.is_floating_point():
        got = tuple(unary.shape) if isinstance(unary, Tensor) else type(unary).__name__
        raise ShapeError(f"{fname}: unary must be a float tensor (B, L, H, W), got {got}")
    if not isinstance(image, Tensor) or image.dim() != 4 or not image.is_floating_point():
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ShapeError(f"{fname}: image must be a float tensor (B, C, H, W), got {got}")
    b, n_labels, h, w = unary.shape
    if image.shape[0] != b or image.shape[2:] != unary.shape[2:]:
        raise ShapeError(
            f"{fname}: image has shape {tuple(image.shape)}, expected ({b}, C, {h}, {w}) "
            f"to match unary {tuple(unary.shape)}"
        )
    if n_labels < 1 or h < 1 or w < 1 or b < 1:
        raise ShapeError(f"{fname}: unary has an empty dimension: {tuple(unary.shape)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"{fname}: iterations must be an int >= 0, got {iterations!r}")
    for name, value in (
        ("theta_alpha", theta_alpha),
        ("theta_beta", theta_beta),
        ("theta_gamma", theta_gamma),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{fname}: {name} must be a finite number > 0, got {value!r}")
    for name, value in (("w_appearance", w_appearance), ("w_smoothness", w_smoothness)):
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ShapeError(f"{fname}: {name} must be a scalar, got {tuple(value.shape)}")
        elif not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{fname}: {name} must be a finite number, got {value!r}")
    if compatibility is not None and (
        not isinstance(compatibility, Tensor) or compatibility.shape != (n_labels, n_labels)
    ):
        got = tuple(compatibility.shape) if isinstance(compatibility, Tensor) else compatibility
        raise ShapeError(
            f"{fname}: compatibility must be ({n_labels}, {n_labels}) for {n_labels} labels, "
            f"got {got}"
        )


# --------------------------------------------------------------------------- message passing
def _exact_messages(
    q: Tensor, feat_a: Tensor, feat_s: Tensor, w1: float | Tensor, w2: float | Tensor
) -> Tensor:
    """``m_i = sum_{j != i} (w1 k_a(i, j) + w2 k_s(i, j)) Q_j`` over all pairs, in row chunks.

    Shape: q ``(B, L, N)``, feat_a ``(B, N, Da)``, feat_s ``(B, N, Ds)``; returns ``(B, L, N)``.
    """
    b, _, n = q.shape
    chunk = max(1, min(n, _EXACT_BLOCK // (b * n)))
    sq_a = feat_a.pow(2).sum(-1)
    sq_s = feat_s.pow(2).sum(-1)
    cols = torch.arange(n, device=q.device)
    out = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # |f_i - f_j|^2 = |f_i|^2 + |f_j|^2 - 2 f_i.f_j, clamped against round-off below zero.
        d_a = sq_a[:, start:stop, None] + sq_a[:, None, :] - 2 * feat_a[:, start:stop] @ feat_a.mT
        d_s = sq_s[:, start:stop, None] + sq_s[:, None, :] - 2 * feat_s[:, start:stop] @ feat_s.mT
        k = w1 * torch.exp(-0.5 * d_a.clamp_min(0)) + w2 * torch.exp(-0.5 * d_s.clamp_min(0))
        self_pair = cols[None, :] == torch.arange(start, stop, device=q.device)[:, None]
        k = k.masked_fill(self_pair, 0.0)
        out.append(q @ k.mT)  # (B, L, N) @ (B, N, c) -> (B, L, c)
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


class _WindowKernel:
    """Precomputed weights of the ``(2r+1)^2`` window for one image batch (reused by iterations)."""

    def __init__(
        self, image: Tensor, radius: int, theta_alpha: float, theta_beta: float, theta_gamma: float
    ) -> None:
        _, _, h, w = image.shape
        self.radius, self.h, self.w = radius, h, w
        # Offsets beyond the image never pair two pixels; skipping them changes nothing.
        ry, rx = min(radius, h - 1), min(radius, w - 1)
        colour = image * (255.0 / theta_beta)
        cp = F.pad(colour, (rx, rx, ry, ry))
        self.ry, self.rx = ry, rx
        self.offsets: list[tuple[int, int]] = []
        self.weights: list[Tensor] = []
        for dy in range(-ry, ry + 1):
            for dx in range(-rx, rx + 1):
                if dy == 0 and dx == 0:
                    continue
                other = cp[:, :, ry + dy : ry + dy + h, rx + dx : rx + dx + w]
                spatial = (dy * dy + dx * dx) / (2.0 * theta_alpha**2)
                wgt = torch.exp(-0.5 * (colour - other).pow(2).sum(1, keepdim=True) - spatial)
                self.offsets.append((dy, dx))
                self.weights.append(wgt)  # (B, 1, H, W)
        # The truncated smoothness Gaussian is separable: a 1-D filter along y, then along x.
        g = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
        self.g = torch.exp(-(g**2) / (2.0 * theta_gamma**2))

    def messages(self, q: Tensor, w1: float | Tensor, w2: float | Tensor) -> Tensor:
        """``w1 m_a + w2 m_s`` for ``q`` of shape ``(B, L, H, W)``, self term excluded."""
        b, n_labels, h, w = q.shape
        ry, rx = self.ry, self.rx
        qp = F.pad(q, (rx, rx, ry, ry))  # zeros outside the image: no messages from there
        m_a = torch.zeros_like(q)
        for (dy, dx), wgt in zip(self.offsets, self.weights, strict=True):
            m_a.addcmul_(wgt, qp[:, :, ry + dy : ry + dy + h, rx + dx : rx + dx + w])
        r = self.radius
        flat = q.reshape(b * n_labels, 1, h, w)
        m_s = F.conv2d(flat, self.g.view(1, 1, -1, 1), padding=(r, 0))
        m_s = F.conv2d(m_s, self.g.view(1, 1, 1, -1), padding=(0, r))
        m_s = m_s.view(b, n_labels, h, w) - q  # the centre weight is g[r]^2 = 1: the self term
        return w1 * m_a + w2 * m_s


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

    Returns:
        The marginals ``Q``, a softmax over labels.

    Shape: unary ``(B, L, H, W)``, image ``(B, C, H, W)``; returns ``(B, L, H, W)``.
    """
    _check_inputs(
        unary, image, iterations, theta_alpha, theta_beta, theta_gamma,
        w_appearance, w_smoothness, compatibility, "dense_crf_exact",
    )  # fmt: skip
    b, n_labels, h, w = unary.shape
    feat_a, feat_s = _pixel_features(image.to(unary.dtype), theta_alpha, theta_beta, theta_gamma)

    def messages(q: Tensor) -> Tensor:
        m = _exact_messages(
            q.reshape(b, n_labels, h * w), feat_a, feat_s, w_appearance, w_smoothness
        )
        return m.view(b, n_labels, h, w)

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
) -> Tensor:
    """Mean-field marginals of the dense CRF with messages truncated to a local window.

    ConvCRF-style (Teichmann and Cipolla 2018) message passing: pixel ``i`` receives messages
    only from pixels ``j`` with ``|y_i - y_j| <= window`` and ``|x_i - x_j| <= window``; both
    Gaussian kernels are **truncated to zero beyond that square** (the only approximation; it
    is exact once ``window >= max(H, W) - 1``). Appearance weights are computed once per call
    and shared by the iterations; the smoothness kernel is a separable convolution. Arguments
    and units are those of :func:`dense_crf_exact`; ``window=None`` calls it.

    Args:
        unary: energies ``U = -log P`` (DeepLab: ``unary=-logits``).
        image: the image in ``[0, 1]``.
        iterations, theta_alpha, theta_beta, theta_gamma, w_appearance, w_smoothness,
            compatibility: as in :func:`dense_crf_exact`.
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
            w_appearance, w_smoothness, compatibility,
        )  # fmt: skip
    _check_inputs(
        unary, image, iterations, theta_alpha, theta_beta, theta_gamma,
        w_appearance, w_smoothness, compatibility, "dense_crf",
    )  # fmt: skip
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"dense_crf: window must be an int >= 1 or None, got {window!r}")
    kernel = _WindowKernel(image.to(unary.dtype), window, theta_alpha, theta_beta, theta_gamma)
    return _mean_field(
        unary,
        iterations,
        compatibility,
        lambda q: kernel.messages(q, w_appearance, w_smoothness),
    )


class DenseCRF(nn.Module):
    """Module form of :func:`dense_crf`; with ``learnable=True`` a CRF-as-RNN layer.

    With ``learnable`` the kernel weights ``w_appearance``, ``w_smoothness`` (scalars) and the
    ``(L, L)`` compatibility matrix (initialised to Potts; needs ``num_labels``) are parameters
    trained through the unrolled iterations (Zheng et al. 2015). The thetas stay fixed, as there.
    ``forward(unary, image)`` returns the marginals ``Q``; train with ``nll_loss(Q.log(), y)``.
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
    ) -> None:
        super().__init__()
        if learnable and (not isinstance(num_labels, int) or num_labels < 1):
            raise ConfigError(f"DenseCRF: learnable=True needs num_labels >= 1, got {num_labels!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ConfigError(f"DenseCRF: iterations must be an int >= 0, got {iterations!r}")
        if window is not None and (
            isinstance(window, bool) or not isinstance(window, int) or window < 1
        ):
            raise ConfigError(f"DenseCRF: window must be an int >= 1 or None, got {window!r}")
        for name, value in (
            ("theta_alpha", theta_alpha),
            ("theta_beta", theta_beta),
            ("theta_gamma", theta_gamma),
        ):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"DenseCRF: {name} must be a finite number > 0, got {value!r}")
        self.num_labels = num_labels
        self.iterations = iterations
        self.theta_alpha, self.theta_beta, self.theta_gamma = theta_alpha, theta_beta, theta_gamma
        self.window = window
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
        )

    def extra_repr(self) -> str:
        return (
            f"num_labels={self.num_labels}, iterations={self.iterations}, "
            f"theta_alpha={self.theta_alpha}, theta_beta={self.theta_beta}, "
            f"theta_gamma={self.theta_gamma}, window={self.window}, learnable={self.learnable}"
        )
