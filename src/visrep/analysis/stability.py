"""Stability analysis of NAIS-Net models: margins, Jacobian spectra, trajectories, depth.

Ciccone et al., "NAIS-Net: Stable Deep Networks from Non-Autonomous Differential Equations",
NeurIPS 2018. A block is stable when the state-transfer Jacobian
``J(x, u) = dx(k+1)/dx(k) = I + h diag(sigma'(A x + B u + b)) A`` has spectral radius below one
on the region of interest (Sec. 4); the parametrisations of Sec. 5 guarantee it through the
sufficient conditions measured by :func:`constraint_margins`.

Library functions only: each returns plain dataclasses, dicts and tensors; the plots and the
``visrep inspect stability`` command live in :mod:`visrep.analysis.stability_cli`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from visrep.analysis.model_stats import model_stats
from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.naisnet import (
    NaisNetBlock,
    NaisNetConvBlock,
    NaisNetFCBlock,
    iter_naisnet_blocks,
)

__all__ = [
    "BlockMargin",
    "ComputeProfile",
    "DepthHistogram",
    "NoiseResponse",
    "block_inputs",
    "block_trajectory",
    "compute_profile",
    "constraint_margins",
    "conv_gershgorin_margins",
    "dense_spectral_radius",
    "depth_histogram",
    "fc_frobenius_margin",
    "jacobian_spectral_radius",
    "model_spectral_radii",
    "model_trajectories",
    "noise_response",
    "step_flops",
    "unroll_settings",
]

_KEEP = "keep"


# --------------------------------------------------------------------------- constraint margins
@dataclass(frozen=True)
class BlockMargin:
    """How far one block is inside its sufficient stability condition (> 0: inside).

    Attributes:
        name: qualified module name.
        kind: ``"fc"`` or ``"conv"``.
        constrained: whether the block is reprojected (``unconstrained=False``).
        margin: the smallest margin of the block.
        per_map: conv (and unconstrained FC): the Gershgorin margin of each feature map / row.
        delta_margin: conv: ``min_c (1 - eta) - |delta_c|`` (Algorithm 2's clipping range).
    """

    name: str
    kind: Literal["fc", "conv"]
    constrained: bool
    margin: float
    per_map: list[float] | None = None
    delta_margin: float | None = None


def fc_frobenius_margin(R: Tensor, eps: float) -> Tensor:
    """``delta - ||R^T R||_F`` with ``delta = 1 - 2 eps`` (Sec. 5, Algorithm 1); a 0-d tensor."""
    return (1.0 - 2.0 * eps) - torch.linalg.matrix_norm(R.T @ R)


def conv_gershgorin_margins(kernel: Tensor, eps: float) -> Tensor:
    """Per feature map ``(1 - eps - |delta_c|) - sum_{j != centre} |C^c_j|`` (Sec. 5, Algorithm 2).

    ``delta_c = -1 - C^c_c[centre]`` is read from the effective kernel, so the margins are
    defined for unconstrained kernels too (and for an FC ``A`` viewed as a 1x1 kernel): they
    measure the Gershgorin discs of the unrolled convolution matrix.

    Shape: ``kernel (C, C, k, k) -> (C,)``.
    """
    c, p = kernel.shape[0], kernel.shape[-1] // 2
    idx = torch.arange(c, device=kernel.device)
    centre = kernel[idx, idx, p, p]
    off = kernel.abs().flatten(1).sum(1) - centre.abs()
    return (1.0 - eps - (-1.0 - centre).abs()) - off


@torch.no_grad()
def constraint_margins(model: nn.Module) -> list[BlockMargin]:
    """The stability margins of every NAIS-Net block in ``model``.

    FC blocks: ``delta - ||R^T R||_F`` (constrained) or the Gershgorin margins of the free ``A``
    (unconstrained). Conv blocks: the per-map Gershgorin margins and the ``delta_c`` range.
    """
    out: list[BlockMargin] = []
    for name, b in iter_naisnet_blocks(model):
        if isinstance(b, NaisNetFCBlock):
            if b.unconstrained:
                rows = conv_gershgorin_margins(b.A[:, :, None, None], b.eps)
                out.append(BlockMargin(name, "fc", False, rows.min().item(), rows.tolist()))
            else:
                m = fc_frobenius_margin(b.R, b.eps).item()
                out.append(BlockMargin(name, "fc", True, m))
        elif isinstance(b, NaisNetConvBlock):
            k = b.state_kernel()
            maps = conv_gershgorin_margins(k, b.eps)
            c, p = k.shape[0], k.shape[-1] // 2
            delta = -1.0 - k[torch.arange(c), torch.arange(c), p, p]
            dm = ((1.0 - b.eta) - delta.abs()).min().item()
            out.append(
                BlockMargin(
                    name, "conv", not b.unconstrained, min(maps.min().item(), dm), maps.tolist(), dm
                )
            )
    return out


# --------------------------------------------------------------------------- Jacobian spectra
def _activation_grad(pre: Tensor, activation: str) -> Tensor:
    """``sigma'(pre)`` of the two units of Sec. 3 (ReLU: the a.e. derivative, 0 at 0)."""
    if activation == "tanh":
        return 1.0 - torch.tanh(pre) ** 2
    return (pre > 0).to(pre.dtype)


@torch.no_grad()
def jacobian_spectral_radius(
    block: NaisNetBlock,
    u: Tensor,
    x: Tensor | None = None,
    n_iter: int = 100,
    generator: torch.Generator | None = None,
    active: bool = False,
) -> Tensor:
    """Per-sample spectral radius of ``J = dx(k+1)/dx(k)`` at states ``x`` by power iteration.

    Only Jacobian-vector products ``J v = v + h sigma'(A x + B u + b) * (A v)`` (Sec. 4) are
    formed, one state product each, never a dense Jacobian; the samples' Jacobians are
    independent, so one batched product advances all chains. Because ``J`` need not be symmetric
    (conv blocks, unconstrained blocks) the estimate is the geometric mean growth
    ``(||J^n v|| / ||J^m v||)^(1/(n-m))`` over the second half of the iterations, which converges
    to ``rho(J)`` also for complex or sign-alternating dominant eigenvalues. For ReLU blocks
    every inactive unit contributes an eigenvalue of exactly 1 (its state does not move), so
    ``rho = 1`` wherever a unit is off; ``active=True`` measures the rest: with ``S`` the units
    where ``sigma' > 0``, ``J = [[I + h A_SS, h A_SN], [0, I]]`` has the eigenvalues of
    ``I + h A_SS`` and ones, and iterating on vectors supported on ``S`` gives ``rho(I + h A_SS)``
    (0 for a sample with no active unit), the contraction of the moving part of the state.

    Args:
        block: a NAIS-Net block.
        u: block inputs ``(B, ...)``.
        x: states ``(B, ...)`` of the block's state shape; default: random normal states.
        n_iter: power iterations (>= 2).
        generator: for the random start vector and default states.
        active: restrict to the units with ``sigma' > 0`` (see above).

    Returns:
        ``(B,)`` estimates of ``rho(J(x_i, u_i))``.
    """
    if n_iter < 2:
        raise ConfigError(f"n_iter must be >= 2, got {n_iter}")
    drive = block.drive(u)
    if x is None:
        x = torch.randn(drive.shape, generator=generator, dtype=drive.dtype).to(drive.device)
    elif x.shape != drive.shape:
        raise ShapeError(
            f"x must have the block's state shape {tuple(drive.shape)}, got {tuple(x.shape)}"
        )
    op = block.operator()
    gain = block.h * _activation_grad(op(x) + drive, block.activation)
    v = torch.randn(drive.shape, generator=generator, dtype=drive.dtype).to(drive.device)
    if active:  # J maps vectors supported on S to vectors supported on S
        v = v * (gain > 0).to(v.dtype)
    tiny = torch.finfo(drive.dtype).tiny
    v = v / v.flatten(1).norm(dim=1).clamp_min(tiny).view(-1, *[1] * (v.dim() - 1))
    half = n_iter // 2
    log_growth = torch.zeros(drive.shape[0], dtype=drive.dtype, device=drive.device)
    for i in range(n_iter):
        jv = v + gain * op(v)
        nrm = jv.flatten(1).norm(dim=1).clamp_min(tiny)
        if i >= half:
            log_growth += nrm.log()
        v = jv / nrm.view(-1, *[1] * (jv.dim() - 1))
    return (log_growth / (n_iter - half)).exp()


def dense_spectral_radius(block: NaisNetBlock, u: Tensor, x: Tensor, max_dim: int = 4096) -> Tensor:
    """Reference ``rho(J)`` per sample from the dense Jacobian and its eigenvalues (tiny states).

    Raises:
        ShapeError: if the state has more than ``max_dim`` elements per sample.
    """
    drive = block.drive(u).detach()
    if drive[0].numel() > max_dim:
        raise ShapeError(
            f"state has {drive[0].numel()} elements per sample; dense Jacobian "
            f"limited to max_dim={max_dim}"
        )
    out = []
    for i in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(
            lambda s, i=i: block.step(s, drive[i : i + 1]), x[i : i + 1]
        )
        J = J.reshape(drive[0].numel(), drive[0].numel())
        out.append(torch.linalg.eigvals(J).abs().max())
    return torch.stack(out).to(x.dtype)


# --------------------------------------------------------------------------- trajectories
@torch.no_grad()
def block_inputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The input ``u`` each NAIS-Net block of ``model`` receives for the batch ``x``.

    Runs ``model`` once (in its current mode) with forward hooks; ``name -> u``.
    """
    seen: dict[str, Tensor] = {}
    handles = [
        b.register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, a[0].detach()))
        for n, b in iter_naisnet_blocks(model)
    ]
    try:
        fwd = getattr(model, "forward_features", model)
        fwd(x)
    finally:
        for hd in handles:
            hd.remove()
    return seen


@torch.no_grad()
def block_trajectory(
    block: NaisNetBlock,
    u: Tensor,
    steps: int | None = None,
    x0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The step norms ``||x(k+1) - x(k)||_2`` of a fixed-length unroll (no early stopping).

    Args:
        block: a NAIS-Net block.
        u: block inputs ``(B, ...)``.
        steps: unroll length, default the block's ``max_steps``.
        x0: initial state, default ``0`` as in the block's forward.

    Returns:
        ``(norms, x)``: ``(B, steps)`` step norms and the final state.
    """
    drive = block.drive(u)
    x = torch.zeros_like(drive) if x0 is None else x0
    norms = []
    for _ in range(steps or block.max_steps):
        xn = block.step(x, drive)
        norms.append((xn - x).flatten(1).norm(dim=1))
        x = xn
    return torch.stack(norms, 1), x


def model_trajectories(model: nn.Module, x: Tensor, steps: int | None = None) -> dict[str, Tensor]:
    """:func:`block_trajectory` step norms ``(B, steps)`` of every block, at its actual input."""
    named = dict(iter_naisnet_blocks(model))
    return {n: block_trajectory(named[n], u, steps)[0] for n, u in block_inputs(model, x).items()}


def model_spectral_radii(
    model: nn.Module,
    x: Tensor,
    at_steps: Sequence[int] = (0,),
    n_iter: int = 50,
    generator: torch.Generator | None = None,
    active: bool = False,
) -> dict[str, Tensor]:
    """Jacobian spectral radius of every block at the states visited along its unroll.

    Args:
        model: a model containing NAIS-Net blocks.
        x: model input batch.
        at_steps: unroll indices ``k`` at which ``J(x(k), u)`` is evaluated (``x(0) = 0``).
        n_iter: power iterations.
        generator: for the power iteration start vectors.
        active: only the units with ``sigma' > 0`` (:func:`jacobian_spectral_radius`).

    Returns:
        ``name -> (len(at_steps), B)`` spectral radius estimates.
    """
    named = dict(iter_naisnet_blocks(model))
    out = {}
    for n, u in block_inputs(model, x).items():
        b = named[n]
        with torch.no_grad():
            drive = b.drive(u)
            s, states = torch.zeros_like(drive), {}
            for k in range(max(at_steps) + 1):
                states[k] = s
                s = b.step(s, drive)
        out[n] = torch.stack(
            [jacobian_spectral_radius(b, u, states[k], n_iter, generator, active) for k in at_steps]
        )
    return out


# --------------------------------------------------------------------------- input noise
@dataclass(frozen=True)
class NoiseResponse:
    """Output distance ``||f(x + n) - f(x)||_2`` against the input noise norm ``||n||_2``.

    Attributes:
        noise_norms: ``(R,)`` noise norms per sample.
        mean_distance: ``(R,)`` mean output distance over samples and draws.
        max_distance: ``(R,)`` largest output distance.
        distances: ``(R, draws * B)`` all distances.
    """

    noise_norms: np.ndarray
    mean_distance: np.ndarray
    max_distance: np.ndarray
    distances: np.ndarray = field(repr=False)


@torch.no_grad()
def noise_response(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    noise_norms: Sequence[float],
    draws: int = 1,
    generator: torch.Generator | None = None,
) -> NoiseResponse:
    """Bounded trajectories under input noise (Sec. 4 input-output stability), measured.

    Adds Gaussian noise rescaled to each exact per-sample norm in ``noise_norms`` and records
    how far ``fn``'s output moves. ``fn`` is any map, e.g. ``model.forward_features`` or a block
    (put the model in eval mode first if it has batch norm).
    """
    ref = fn(x).flatten(1)
    rows = []
    for r in noise_norms:
        d = []
        for _ in range(draws):
            n = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            n = n * (r / n.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *[1] * (x.dim() - 1))
            d.append((fn(x + n).flatten(1) - ref).norm(dim=1))
        rows.append(torch.cat(d).cpu().numpy())
    dist = np.stack(rows)
    return NoiseResponse(np.asarray(noise_norms, dtype=float), dist.mean(1), dist.max(1), dist)


# --------------------------------------------------------------------------- processing depth
@dataclass(frozen=True)
class DepthHistogram:
    """Per-class histogram of the processing depth each block used (pattern-dependent depth).

    Attributes:
        classes: the class labels, sorted; row ``i`` of each count matrix is ``classes[i]``.
        counts: ``block name -> (len(classes), max_steps + 1)`` int array; ``[i, d]`` counts the
            samples of class ``classes[i]`` that ran ``d`` stages in that block.
    """

    classes: list[int]
    counts: dict[str, np.ndarray]

    def mean_depth(self) -> dict[str, np.ndarray]:
        """``block name -> (len(classes),)`` mean depth per class."""
        out = {}
        for n, c in self.counts.items():
            d = np.arange(c.shape[1])
            out[n] = (c * d).sum(1) / np.maximum(c.sum(1), 1)
        return out


@torch.no_grad()
def depth_histogram(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> DepthHistogram:
    """Run ``model`` in eval mode over ``(images, targets)`` batches and histogram block depths.

    The blocks' ``tol`` and ``max_steps`` decide the depth; blocks with ``tol=None`` report a
    constant depth. The model's training mode is restored afterwards.
    """
    blocks = dict(iter_naisnet_blocks(model))
    if not blocks:
        raise ConfigError("model has no NAIS-Net blocks to measure depth in")
    depths: dict[str, list[Tensor]] = {n: [] for n in blocks}
    targets: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for xb, yb in batches:
            model(xb)
            targets.append(yb.cpu().long())
            for n, b in blocks.items():
                depths[n].append(b.last_depth.cpu())
    finally:
        model.train(was_training)
    y = torch.cat(targets)
    classes = sorted(int(c) for c in y.unique())
    rows = torch.searchsorted(torch.tensor(classes, dtype=torch.long), y)
    counts = {}
    for n, b in blocks.items():
        d = torch.cat(depths[n])
        m = torch.zeros(len(classes), b.max_steps + 1, dtype=torch.long)
        m.index_put_((rows, d), torch.ones_like(d), accumulate=True)
        counts[n] = m.numpy()
    return DepthHistogram(classes, counts)


@contextmanager
def unroll_settings(
    model: nn.Module, tol: float | str | None = _KEEP, max_steps: int | None = None
) -> Iterator[None]:
    """Temporarily set the inference ``tol`` and ``K_max`` of every NAIS-Net block in ``model``.

    Args:
        model: a model containing NAIS-Net blocks.
        tol: the stopping threshold (``None``: fixed depth ``K_max``); ``"keep"`` leaves it.
        max_steps: ``K_max``; ``None`` leaves it.
    """
    blocks = [b for _, b in iter_naisnet_blocks(model)]
    saved = [(b.tol, b.max_steps) for b in blocks]
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    if tol != _KEEP and tol is not None and not float(tol) > 0:
        raise ConfigError(f"tol must be > 0 or None, got {tol}")
    try:
        for b in blocks:
            b.tol = b.tol if tol == _KEEP else tol
            b.max_steps = max_steps or b.max_steps
        yield
    finally:
        for b, (t, k) in zip(blocks, saved, strict=True):
            b.tol, b.max_steps = t, k


# --------------------------------------------------------------------------- compute
def step_flops(block: NaisNetBlock, state_shape: Sequence[int]) -> int:
    """FLOPs of one unroll stage ``x + h sigma(A x + drive)`` for one sample.

    Counted with :mod:`visrep.analysis.model_stats`' conventions: ``2 * MACs`` of the state
    product ``A x`` (FC: ``n`` MACs per state element; conv: ``C k^2``) plus one FLOP per element
    for the activation; the element-wise additions are not counted. The drive ``B u + b`` is
    computed once per block whatever the depth, so it is not part of a stage.

    Args:
        block: a NAIS-Net block.
        state_shape: the state of one sample, ``(n,)`` or ``(C, H, W)``.
    """
    numel = int(np.prod(state_shape))
    if isinstance(block, NaisNetFCBlock):
        macs_per_element = block.features
    else:
        macs_per_element = block.channels * block.state_kernel().shape[-1] ** 2
    return 2 * macs_per_element * numel + numel


@dataclass(frozen=True)
class ComputeProfile:
    """Per-sample FLOPs of a NAIS-Net model at fixed depth ``K_max`` and at its adaptive depth.

    Attributes:
        base_flops: everything but the unrolled stages (stem, transitions, drives, head).
        step_flops: ``block -> FLOPs`` of one stage (:func:`step_flops`).
        max_steps: ``block -> K_max``.
        mean_depth: ``block -> mean number of stages run`` with the stopping criterion.
    """

    base_flops: int
    step_flops: dict[str, int]
    max_steps: dict[str, int]
    mean_depth: dict[str, float]

    @property
    def flops_fixed(self) -> float:
        return self.base_flops + sum(self.step_flops[n] * k for n, k in self.max_steps.items())

    @property
    def flops_adaptive(self) -> float:
        return self.base_flops + sum(self.step_flops[n] * d for n, d in self.mean_depth.items())

    @property
    def saved_fraction(self) -> float:
        """``1 - flops_adaptive / flops_fixed``: the share of the whole model's compute saved."""
        return 1.0 - self.flops_adaptive / self.flops_fixed

    @property
    def block_steps_fixed(self) -> int:
        return sum(self.max_steps.values())

    @property
    def block_steps_adaptive(self) -> float:
        return float(sum(self.mean_depth.values()))


def compute_profile(model: nn.Module, x: Tensor, mean_depth: dict[str, float]) -> ComputeProfile:
    """Split a NAIS-Net model's per-sample FLOPs into the unrolled stages and the rest.

    The rest is measured by :func:`visrep.analysis.model_stats.model_stats` on one sample
    (what it attributes to the blocks themselves, i.e. their state products, is replaced by the
    exact per-stage count of :func:`step_flops`), so ``flops_fixed`` and ``flops_adaptive`` are
    comparable with the FLOPs ``model_stats`` reports for any other model.

    Args:
        model: a model containing NAIS-Net blocks, called as ``model(x)``.
        x: one example input ``(1, ...)``.
        mean_depth: ``block name -> mean depth`` measured with the stopping criterion.
    """
    blocks = dict(iter_naisnet_blocks(model))
    if not blocks:
        raise ConfigError("model has no NAIS-Net blocks to profile")
    x = x[:1]
    with unroll_settings(model, tol=None):
        inputs = block_inputs(model, x)
        stats = model_stats(model, x)
    own = sum(
        r.flops
        for r in stats.rows
        if any(r.name == n or r.name.startswith(f"{n} (") for n in blocks)
    )
    steps = {}
    for n, b in blocks.items():
        with torch.no_grad():
            steps[n] = step_flops(b, b.drive(inputs[n]).shape[1:])
    return ComputeProfile(
        stats.total_flops - own,
        steps,
        {n: b.max_steps for n, b in blocks.items()},
        {n: float(mean_depth[n]) for n in blocks},
    )
