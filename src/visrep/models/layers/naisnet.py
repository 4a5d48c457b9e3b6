"""NAIS-Net blocks: stable, weight-shared, non-autonomous residual unrolls (seed 000).

Ciccone, Gallieri, Masci, Osendorfer, Gomez, "NAIS-Net: Stable Deep Networks from Non-Autonomous
Differential Equations", NeurIPS 2018 (arXiv 1804.07209). A block unrolls

    x(k+1) = x(k) + h * sigma(A x(k) + B u + b),    k = 0 .. K-1,       (Sec. 3, FC layer)

with the same ``A, B, b`` at every step and the block input ``u`` fed to every step (the
non-autonomous skip); the convolutional layer replaces the products by convolutions (Sec. 3).
The input enters every stage through ``B u`` (the paper's criticism of autonomous ResNets, whose
input only sets the initial condition, Sec. 1); the paper's theory holds for any ``x(0)`` (for tanh
the equilibrium does not depend on it, Sec. 4). The state starts at ``x(0) = 0`` by default, or at
the projected input ``x(0) = B u + b`` (``init="input"``). Stability, ``rho(J) < 1`` for the state-transfer Jacobian
``J = I + h sigma' A`` (Sec. 4), comes from the parametrisations of Sec. 5, kept feasible by the
reprojections of Algorithms 1 and 2 after every optimiser step
(:func:`reproject_`, :class:`visrep.trainer.naisnet_callback.NaisNetReprojection`).

Pure functions are the source of truth; the modules hold parameters and options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}

__all__ = [
    "NaisNetBlock",
    "NaisNetConvBlock",
    "NaisNetFCBlock",
    "conv_state_kernel",
    "fc_state_matrix",
    "iter_naisnet_blocks",
    "naisnet_step",
    "naisnet_unroll",
    "reproject_",
    "reproject_conv",
    "reproject_fc",
]


# --------------------------------------------------------------------------- pure functions
def naisnet_step(
    x: Tensor, drive: Tensor, state_op: Callable[[Tensor], Tensor], h: float, activation: str
) -> Tensor:
    """One NAIS-Net stage ``x + h * sigma(A x + drive)`` with ``drive = B u + b`` (Sec. 3).

    Args:
        x: state ``x(k)``.
        drive: the input term ``B u + b`` (or ``D * u + E``), same shape as ``x``.
        state_op: ``x -> A x`` (a matrix product or a convolution).
        h: step size.
        activation: ``"tanh"`` or ``"relu"`` (the two units analysed in the paper).

    Returns:
        ``x(k+1)``, same shape as ``x``.
    """
    return x + h * _ACTIVATIONS[activation](state_op(x) + drive)


def _still_moving(xn: Tensor, x: Tensor, tol: float, relative: bool) -> Tensor:
    """``(B,)`` bool: the stopping rule has not fired for the step ``x -> xn``.

    Absolute: ``||x(k+1) - x(k)||_2 >= tol``. Relative: ``||x(k+1) - x(k)||_2 >= tol ||x(k)||_2``
    (a state at 0 only stops on a zero update, so ``x(0) = 0`` always runs a second stage).
    """
    step = (xn - x).flatten(1).norm(dim=1)
    if not relative:
        return step >= tol
    ref = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    return step >= tol * ref


def naisnet_unroll(
    x0: Tensor,
    drive: Tensor,
    state_op: Callable[[Tensor], Tensor],
    steps: int,
    h: float,
    activation: str,
    tol: float | None = None,
    relative: bool = False,
) -> tuple[Tensor, Tensor]:
    """Unroll :func:`naisnet_step` for ``steps`` stages, or per sample until convergence.

    Pattern-dependent processing depth (seed 000): with ``tol`` set, sample ``i`` stops after
    the first stage with ``||x_i(k+1) - x_i(k)||_2 < tol`` (the paper's stopping criterion), or
    with ``relative=True`` ``< tol * ||x_i(k)||_2``, a scale-free rule: the state norms of a
    trained net differ by orders of magnitude between blocks and data sets. Once some samples
    have stopped, only the others are gathered, stepped and scattered back (index masks, no loop
    over samples), so a stopped sample keeps exactly its state at its stopping stage and compute
    shrinks as samples converge. Differentiable either way (the depth is not).

    >>> A = lambda x: -0.5 * x
    >>> x, depth = naisnet_unroll(torch.zeros(2, 3), torch.tensor([[0.1], [1.0]]).expand(2, 3),
    ...                           A, steps=50, h=1.0, activation="tanh", tol=1e-4)
    >>> depth.tolist()  # the larger input is further from its equilibrium
    [12, 16]

    Args:
        x0: initial state ``(B, ...)``.
        drive: ``B u + b``, same shape as ``x0``.
        state_op: ``x -> A x``; must act on each sample independently.
        steps: ``K`` (fixed) or ``K_max`` (with ``tol``).
        h: step size.
        activation: ``"tanh"`` or ``"relu"``.
        tol: convergence threshold on the per-sample step norm; ``None`` runs all ``steps``.
        relative: divide the step norm by the norm of the state it started from.

    Returns:
        ``(x, depth)``: the final state and the number of stages each sample ran, ``(B,)`` int64.
    """
    n = x0.shape[0]
    if tol is None:
        x = x0
        for _ in range(steps):
            x = naisnet_step(x, drive, state_op, h, activation)
        return x, torch.full((n,), steps, dtype=torch.long, device=x0.device)
    x, k, moving = x0, 0, torch.ones(n, dtype=torch.bool, device=x0.device)
    # full batch while every sample still moves (no gather/scatter overhead)
    while k < steps:
        xn = naisnet_step(x, drive, state_op, h, activation)
        moving = _still_moving(xn, x, tol, relative)
        x, k = xn, k + 1
        if not bool(moving.all()):
            break
    depth = torch.full((n,), k, dtype=torch.long, device=x0.device)
    active = moving.nonzero().squeeze(1)
    # then only the samples still moving are gathered, stepped and scattered back
    while k < steps and active.numel() > 0:
        xa = x.index_select(0, active)
        xn = naisnet_step(xa, drive.index_select(0, active), state_op, h, activation)
        x = x.index_copy(0, active, xn)
        depth = depth.index_add(0, active, torch.ones_like(active))
        active = active[_still_moving(xn, xa, tol, relative)]
        k += 1
    return x, depth


def fc_state_matrix(R: Tensor, eps: float) -> Tensor:
    """The fully connected state matrix ``A = -R^T R - eps * I`` (Sec. 5).

    Shape: ``R (n_tilde, n) -> A (n, n)``.
    """
    return -(R.T @ R) - eps * torch.eye(R.shape[1], dtype=R.dtype, device=R.device)


def conv_state_kernel(weight: Tensor, delta: Tensor) -> Tensor:
    """The constrained conv state kernel: centre tap of ``C^c_c`` set to ``-1 - delta_c``.

    Sec. 5, Algorithm 2: the self-connection of every feature map at the kernel centre is
    ``-1 - delta_c``; every other tap is free (bounded by the reprojection).

    Shape: ``weight (C, C, k, k)``, ``delta (C,)`` -> ``(C, C, k, k)``.
    """
    c, p = weight.shape[0], weight.shape[-1] // 2
    idx = torch.arange(c, device=weight.device)
    mask = torch.ones_like(weight)
    mask[idx, idx, p, p] = 0
    centre = torch.zeros_like(weight)
    centre[idx, idx, p, p] = -1.0 - delta
    return weight * mask + centre


def reproject_fc(R: Tensor, eps: float) -> Tensor:
    """Algorithm 1: rescale ``R`` so that ``||R^T R||_F <= delta = 1 - 2 eps``.

    If ``||R^T R||_F > delta`` returns ``sqrt(delta) * R / sqrt(||R^T R||_F)`` (then
    ``||R^T R||_F = delta`` exactly), else ``R`` unchanged. Rescaling ``R^T R`` by the same factor
    instead, as some public code does, leaves ``||R^T R||_F = sqrt(delta ||R^T R||_F) > delta``.
    """
    delta = 1.0 - 2.0 * eps
    fro = torch.linalg.matrix_norm(R.T @ R)
    # torch.where instead of `if`: no host sync; feasible R is multiplied by exactly 1
    return R * torch.where(fro > delta, (delta / fro.clamp_min(delta)).sqrt(), 1.0)


def reproject_conv(weight: Tensor, delta: Tensor, eps: float, eta: float) -> tuple[Tensor, Tensor]:
    """Algorithm 2: clip ``delta_c``, set the centre tap, bound the off-centre taps per feature map.

    For each output map ``c``: ``delta_c <- clip(delta_c, -1 + eta, 1 - eta)``, centre tap of
    ``C^c_c <- -1 - delta_c``, and if ``sum_{j != centre} |C^c_j| > 1 - eps - |delta_c|`` the
    off-centre taps (all input maps) are rescaled so the sum equals that bound.

    Shape: ``weight (C, C, k, k)``, ``delta (C,)``; returns new tensors of the same shapes.
    """
    c, p = weight.shape[0], weight.shape[-1] // 2
    idx = torch.arange(c, device=weight.device)
    d = delta.clamp(-1.0 + eta, 1.0 - eta)
    w = weight.clone()
    w[idx, idx, p, p] = 0.0
    off = w.abs().flatten(1).sum(1)
    bound = 1.0 - eps - d.abs()
    scale = torch.where(off > bound, bound / off.clamp_min(torch.finfo(w.dtype).tiny), 1.0)
    w = w * scale.view(-1, 1, 1, 1)
    w[idx, idx, p, p] = -1.0 - d
    return w, d


# --------------------------------------------------------------------------- modules
def _check_common(
    steps: int,
    max_steps: int | None,
    h: float,
    activation: str,
    eps: float,
    tol: float | None,
    unconstrained: bool,
    tol_mode: str,
    init: str,
    random_depth: int | None,
) -> None:
    if tol_mode not in ("absolute", "relative"):
        raise ConfigError(f"tol_mode must be 'absolute' or 'relative', got {tol_mode!r}")
    if init not in ("zero", "input"):
        raise ConfigError(f"init must be 'zero' or 'input' (x(0) = 0 or B u + b), got {init!r}")
    if random_depth is not None and not 1 <= random_depth <= steps:
        raise ConfigError(
            f"random_depth must be None or in [1, steps={steps}] (the least training K), "
            f"got {random_depth}"
        )
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"activation must be 'tanh' or 'relu' (Sec. 3), got {activation!r}")
    if steps < 1 or (max_steps is not None and max_steps < 1):
        raise ConfigError(f"steps and max_steps must be >= 1, got {steps} and {max_steps}")
    if not 0.0 < eps < 0.5:
        raise ConfigError(f"eps must be in (0, 0.5) (Algorithm 1), got {eps}")
    if tol is not None and tol <= 0:
        raise ConfigError(f"tol must be > 0 or None, got {tol}")
    if not unconstrained and not 0.0 < h <= 1.0:
        raise ConfigError(
            f"h must be in (0, 1] for the stability guarantee (Sec. 5), got {h}; "
            "use unconstrained=True for larger steps"
        )
    if h <= 0:
        raise ConfigError(f"h must be > 0, got {h}")


class _NaisNetBlock(nn.Module):
    """Shared unrolling logic; subclasses define ``drive``, ``operator`` and ``reproject_``."""

    last_depth: Tensor | None

    def __init__(
        self,
        steps: int,
        max_steps: int | None,
        tol: float | None,
        h: float,
        activation: str,
        eps: float,
        unconstrained: bool,
        adaptive_train: bool,
        tol_mode: str,
        init: str,
        random_depth: int | None,
    ) -> None:
        super().__init__()
        _check_common(
            steps, max_steps, h, activation, eps, tol, unconstrained, tol_mode, init, random_depth
        )
        self.steps, self.max_steps, self.tol = steps, max_steps or steps, tol
        self.h, self.activation, self.eps = h, activation, eps
        self.unconstrained, self.adaptive_train = unconstrained, adaptive_train
        self.tol_mode, self.init, self.random_depth = tol_mode, init, random_depth
        self.last_depth = None

    def drive(self, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def operator(self) -> Callable[[Tensor], Tensor]:  # pragma: no cover - abstract
        """``x -> A x`` with the effective state weights built once (reused over the K steps)."""
        raise NotImplementedError

    def state_op(self, x: Tensor) -> Tensor:
        """``A x`` (FC) or ``C * x`` (conv)."""
        return self.operator()(x)

    def reproject_(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, x: Tensor, drive: Tensor) -> Tensor:
        """``x(k+1)`` from ``x(k)`` and ``drive = self.drive(u)`` (Sec. 3)."""
        return naisnet_step(x, drive, self.state_op, self.h, self.activation)

    def unroll_plan(self) -> tuple[int, float | None]:
        """``(steps, tol)`` of ``forward``: ``K`` in training, ``(K_max, tol)`` at inference.

        With ``random_depth`` set, each training forward draws ``K`` uniformly from
        ``[random_depth, steps]`` with torch's global generator (seeded by ``seed_everything``),
        as stochastic depth does for ResNets, so the block learns useful states at every stage.
        """
        if self.training:
            k = self.steps
            if self.random_depth is not None:
                k = int(torch.randint(self.random_depth, self.steps + 1, ()))
            return k, (self.tol if self.adaptive_train else None)
        return self.max_steps, self.tol

    def forward(self, u: Tensor) -> Tensor:
        """Unroll from ``x(0)`` (0 or ``B u + b``); stores each sample's depth in ``last_depth``."""
        d = self.drive(u)
        steps, tol = self.unroll_plan()
        x0 = torch.zeros_like(d) if self.init == "zero" else d
        x, depth = naisnet_unroll(
            x0, d, self.operator(), steps, self.h, self.activation, tol, self.tol_mode == "relative"
        )
        self.last_depth = depth
        return x


class NaisNetFCBlock(_NaisNetBlock):
    """Fully connected NAIS-Net block (Sec. 3) with ``A = -R^T R - eps I`` (Sec. 5).

    Args:
        in_features: input size ``m`` of ``u``.
        features: state size ``n``.
        rank: rows ``n_tilde <= n`` of ``R`` (default ``n``).
        steps: unroll length ``K`` in training.
        max_steps: ``K_max`` at inference (default ``steps``).
        tol: per-sample stopping threshold on ``||x(k+1) - x(k)||_2`` at inference (None: fixed).
        h: step size, ``(0, 1]`` when constrained.
        activation: ``"tanh"`` or ``"relu"``.
        eps: ``epsilon`` in ``A`` and ``delta = 1 - 2 eps`` (Algorithm 1).
        unconstrained: a free ``A`` (ablation), ignored by :func:`reproject_`.
        adaptive_train: also stop converged samples in training.
        tol_mode: ``"absolute"`` (``||x(k+1) - x(k)|| < tol``) or ``"relative"``
            (``< tol ||x(k)||``).
        init: ``"zero"`` (``x(0) = 0``) or ``"input"`` (``x(0) = B u + b``, the projected input).
        random_depth: in training, draw ``K`` per forward uniformly from
            ``[random_depth, steps]`` (None: always ``steps``).

    Shape: ``(B, in_features) -> (B, features)``.
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        rank: int | None = None,
        steps: int = 10,
        max_steps: int | None = None,
        tol: float | None = None,
        h: float = 1.0,
        activation: str = "tanh",
        eps: float = 0.01,
        unconstrained: bool = False,
        adaptive_train: bool = False,
        tol_mode: str = "absolute",
        init: str = "zero",
        random_depth: int | None = None,
    ) -> None:
        super().__init__(
            steps, max_steps, tol, h, activation, eps, unconstrained, adaptive_train,
            tol_mode, init, random_depth,
        )  # fmt: skip
        rank = rank or features
        if not 1 <= rank <= features:
            raise ConfigError(f"rank must be in [1, features={features}] (Algorithm 1), got {rank}")
        self.in_features, self.features = in_features, features
        self.input = nn.Linear(in_features, features)  # B u + b
        R = reproject_fc(torch.randn(rank, features) / features**0.5, eps)
        if unconstrained:
            self.A = nn.Parameter(fc_state_matrix(R, eps))
        else:
            self.R = nn.Parameter(R)

    def state_matrix(self) -> Tensor:
        """The effective ``A`` ``(n, n)``."""
        return self.A if self.unconstrained else fc_state_matrix(self.R, self.eps)

    def drive(self, u: Tensor) -> Tensor:
        if u.dim() != 2 or u.shape[1] != self.in_features:
            raise ShapeError(
                f"NaisNetFCBlock expects u of shape (B, {self.in_features}), got {tuple(u.shape)}"
            )
        return self.input(u)

    def operator(self) -> Callable[[Tensor], Tensor]:
        At = self.state_matrix().T
        return lambda x: x @ At

    @torch.no_grad()
    def reproject_(self) -> None:
        """Algorithm 1 in place (no-op when unconstrained)."""
        if not self.unconstrained:
            self.R.copy_(reproject_fc(self.R, self.eps))


class NaisNetConvBlock(_NaisNetBlock):
    """Convolutional NAIS-Net block (Sec. 3) with the constrained kernel of Sec. 5 / Algorithm 2.

    ``X(k+1) = X(k) + h sigma(C * X(k) + D * U + E)``: ``C`` is ``channels -> channels``
    (stride 1, odd size ``2p + 1``, zero padding ``p``) whose centre self-tap is
    ``-1 - delta_c``; ``D`` maps ``in_channels -> channels`` with the same size and padding.

    Args:
        in_channels: maps of ``U``.
        channels: maps of the state ``X``.
        kernel_size: odd ``n_C``.
        eta: ``delta_c`` is clipped to ``[-1 + eta, 1 - eta]``, ``0 < eps < eta < 1``.
        steps, max_steps, tol, h, activation, eps, unconstrained, adaptive_train, tol_mode,
            init, random_depth: as in :class:`NaisNetFCBlock`.

    Shape: ``(B, in_channels, H, W) -> (B, channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        steps: int = 10,
        max_steps: int | None = None,
        tol: float | None = None,
        h: float = 1.0,
        activation: str = "relu",
        eps: float = 0.01,
        eta: float = 0.05,
        unconstrained: bool = False,
        adaptive_train: bool = False,
        tol_mode: str = "absolute",
        init: str = "zero",
        random_depth: int | None = None,
    ) -> None:
        super().__init__(
            steps, max_steps, tol, h, activation, eps, unconstrained, adaptive_train,
            tol_mode, init, random_depth,
        )  # fmt: skip
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (n_C = 2p + 1, Sec. 3), got {kernel_size}")
        if not eps < eta < 1.0:
            raise ConfigError(f"eta must satisfy eps={eps} < eta < 1 (Algorithm 2), got {eta}")
        self.in_channels, self.channels, self.eta = in_channels, channels, eta
        self.padding = kernel_size // 2
        self.input = nn.Conv2d(in_channels, channels, kernel_size, padding=self.padding)  # D*U+E
        w = torch.empty(channels, channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(w, a=5**0.5)
        w, d = reproject_conv(w, torch.zeros(channels), eps, eta)
        if unconstrained:
            self.weight = nn.Parameter(w)
        else:
            self.weight, self.delta = nn.Parameter(w), nn.Parameter(d)

    def state_kernel(self) -> Tensor:
        """The effective state kernel ``C`` ``(channels, channels, k, k)``."""
        return self.weight if self.unconstrained else conv_state_kernel(self.weight, self.delta)

    def drive(self, u: Tensor) -> Tensor:
        if u.dim() != 4 or u.shape[1] != self.in_channels:
            raise ShapeError(
                f"NaisNetConvBlock expects u of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(u.shape)}"
            )
        return self.input(u)

    def operator(self) -> Callable[[Tensor], Tensor]:
        k, p = self.state_kernel(), self.padding
        return lambda x: F.conv2d(x, k, padding=p)

    @torch.no_grad()
    def reproject_(self) -> None:
        """Algorithm 2 in place (no-op when unconstrained)."""
        if not self.unconstrained:
            w, d = reproject_conv(self.weight, self.delta, self.eps, self.eta)
            self.weight.copy_(w)
            self.delta.copy_(d)


NaisNetBlock = NaisNetFCBlock | NaisNetConvBlock  # type alias for either block


def iter_naisnet_blocks(module: nn.Module) -> Iterator[tuple[str, _NaisNetBlock]]:
    """``(qualified name, block)`` for every NAIS-Net block inside ``module`` (itself included)."""
    for name, m in module.named_modules():
        if isinstance(m, _NaisNetBlock):
            yield name, m


def reproject_(module: nn.Module) -> int:
    """Apply Algorithm 1 / 2 in place to every constrained NAIS-Net block of ``module``.

    Call after every optimiser step (projected gradient descent, Sec. 5).

    Returns:
        The number of blocks reprojected.
    """
    n = 0
    for _, block in iter_naisnet_blocks(module):
        if not block.unconstrained:
            block.reproject_()
            n += 1
    return n
