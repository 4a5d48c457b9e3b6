"""Linear-chain CRF in log space: forward-backward, marginals, Viterbi, negative log-likelihood.

Seed 003 ("Neural Networks + CRFs = Conditional Neural Fields") writes the CRF as

    p(y | x) ∝ exp( sum_c y_c v^T x_c + sum_{(c,c') in E} y_c y_c' w )

and the conditional neural field by putting a network's output in place of ``v^T x_c``:
``sum_c y_c v^T h(W^3 h(W^2 (W^1 x_c)))``, trained by a forward pass through the network,
belief propagation for the marginals of ``y_c``, and a backward pass (Peng, Bo and Xu,
"Conditional Neural Fields", NIPS 2009). On a chain ``E = {(t-1, t)}`` with ``K`` tags, the
score of a tag sequence ``y_1..y_L`` of a length-``L`` sequence is

    s(y, x) = start[y_1] + sum_{t=1}^{L} U[t, y_t] + sum_{t=2}^{L} A[y_{t-1}, y_t] + end[y_L]

where ``U`` (``unary``, ``(B, T, K)``) are the network's per-frame scores (log-potentials: higher
is more likely), ``A`` (``transitions``, ``(K, K)``, ``A[i, j]`` from tag ``i`` to tag ``j``),
and optional ``start`` / ``end`` scores ``(K,)`` (zero when omitted). Then
``log p(y | x) = s(y, x) - log Z(x)`` with ``log Z = logsumexp_y s(y, x)``, computed by the
forward recursion ``alpha_t(j) = U[t, j] + logsumexp_i(alpha_{t-1}(i) + A[i, j])``; the backward
recursion ``beta_t(i) = logsumexp_j(A[i, j] + U[t+1, j] + beta_{t+1}(j))``, ``beta_L = end``,
gives the marginals ``p(y_t = k | x) = exp(alpha_t(k) + beta_t(k) - log Z)`` (belief propagation
on a chain), and max-product with back-pointers the Viterbi path. This is the layout of
pytorch-crf's ``CRF`` (``transitions`` ``[from, to]``, ``start_transitions``,
``end_transitions``); the tests check equality with it.

Batches hold sequences of different lengths, left-aligned: a ``(B, T)`` bool ``mask`` (each row
``True`` for a prefix) or ``lengths`` ``(B,)``; padded steps are carried through the recursions
with ``torch.where`` (no loop over sequences; the loop over time steps is inherent); the
scores on padded steps are ignored, whatever they hold (NaN included). Every
function is differentiable (autograd through the recursions), device-agnostic, and runs in the
dtype of ``unary``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, DataError, ShapeError

__all__ = [
    "ChainCRF",
    "chain_crf_log_partition",
    "chain_crf_marginals",
    "chain_crf_nll",
    "chain_crf_score",
    "chain_crf_viterbi",
    "sequence_mask",
]

Reduction = Literal["mean", "sum", "none"]


# -- input checks ---------------------------------------------------------------------------------
def sequence_mask(
    unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None, name: str = "unary"
) -> Tensor:
    """The ``(B, T)`` bool mask of a batch of left-aligned sequences, checked.

    Args:
        unary: the scores ``(B, T, K)``; only its shape, dtype and device are read.
        mask: ``(B, T)`` bool, ``True`` on the steps of each sequence (a prefix of each row).
        lengths: ``(B,)`` integer lengths in ``1..T`` (instead of ``mask``).
        name: the argument named in error messages.

    Returns:
        ``(B, T)`` bool on ``unary``'s device; all ``True`` when neither is given.

    Raises:
        ShapeError: wrong shapes or dtypes. DataError: a length-0 sequence or a mask that is
        not a prefix. ConfigError: both ``mask`` and ``lengths``.
    """
    if not isinstance(unary, Tensor) or unary.dim() != 3 or not unary.is_floating_point():
        got = tuple(unary.shape) if isinstance(unary, Tensor) else type(unary).__name__
        raise ShapeError(f"{name}: expected a float tensor (B, T, K), got {got}")
    b, t, k = unary.shape
    if k < 1:
        raise ShapeError(f"{name}: expected at least one tag (B, T, K >= 1), got {(b, t, k)}")
    if t == 0:
        raise DataError(f"{name}: length-0 sequences (T = 0); every sequence needs a step")
    if mask is not None and lengths is not None:
        raise ConfigError("mask, lengths: give one of them, not both")
    if lengths is not None:
        if lengths.shape != (b,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ShapeError(f"lengths: expected integers of shape ({b},), got {lengths.dtype} "
                             f"{tuple(lengths.shape)}")  # fmt: skip
        lengths = lengths.to(unary.device)
        if b and bool(((lengths < 1) | (lengths > t)).any()):
            raise DataError(f"lengths: expected values in 1..{t} (no length-0 sequences), got "
                            f"min {int(lengths.min())} max {int(lengths.max())}")  # fmt: skip
        return torch.arange(t, device=unary.device) < lengths[:, None]
    if mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=unary.device)
    if mask.shape != (b, t) or mask.dtype != torch.bool:
        raise ShapeError(f"mask: expected bool of shape {(b, t)}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")  # fmt: skip
    mask = mask.to(unary.device)
    if b and not bool(mask[:, 0].all()):
        raise DataError(
            "mask: a length-0 sequence (mask[:, 0] is False); every sequence needs a step"
        )
    if t > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise DataError("mask: each row must be True on a prefix (left-aligned sequences)")
    return mask


def _params(
    unary: Tensor, transitions: Tensor, start: Tensor | None, end: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    k = unary.shape[-1]
    if not isinstance(transitions, Tensor) or transitions.shape != (k, k):
        got = tuple(transitions.shape) if isinstance(transitions, Tensor) else transitions
        raise ShapeError(f"transitions: expected ({k}, {k}) for K = {k} tags, got {got}")
    out = [transitions.to(unary.dtype)]
    for name, v in (("start", start), ("end", end)):
        if v is None:
            out.append(unary.new_zeros(k))
        elif not isinstance(v, Tensor) or v.shape != (k,):
            got = tuple(v.shape) if isinstance(v, Tensor) else v
            raise ShapeError(f"{name}: expected ({k},) for K = {k} tags, got {got}")
        else:
            out.append(v.to(unary.dtype))
    return out[0], out[1], out[2]


def _check_tags(tags: Tensor, mask: Tensor, k: int, name: str = "tags") -> Tensor:
    """Integer ``(B, T)`` ids in ``[0, K)`` on the valid steps; padded steps set to 0."""
    if not isinstance(tags, Tensor) or tags.shape != mask.shape or tags.is_floating_point():
        got = f"{tags.dtype} {tuple(tags.shape)}" if isinstance(tags, Tensor) else type(tags)
        raise ShapeError(f"{name}: expected integer ids of shape {tuple(mask.shape)}, got {got}")
    tags = tags.to(mask.device).long()
    bad = ((tags < 0) | (tags >= k)) & mask
    if bool(bad.any()):
        vals = tags[bad]
        raise DataError(f"{name}: label ids must be in [0, {k}), got values {int(vals.min())}.."
                        f"{int(vals.max())}")  # fmt: skip
    return tags.masked_fill(~mask, 0)


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ConfigError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


# -- recursions (any leading batch dims; parameters broadcast against them) -----------------------
def forward_recursion(
    unary: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Forward messages ``alpha`` ``(*N, T, K)`` and ``log Z`` ``(*N,)``.

    ``unary`` ``(*N, T, K)``; ``transitions`` ``(*N', K, K)``, ``start`` / ``end`` ``(*N', K)`` and
    ``mask`` ``(*N'', T)`` broadcast against ``*N``. Padded steps repeat the last valid message,
    so ``log Z = logsumexp(alpha_T + end)`` is right for every length. No input checks.
    """
    alpha = start + unary[..., 0, :]
    alphas = [alpha]
    for t in range(1, unary.shape[-2]):
        nxt = torch.logsumexp(alpha.unsqueeze(-1) + transitions, dim=-2) + unary[..., t, :]
        alpha = torch.where(mask[..., t, None], nxt, alpha)
        alphas.append(alpha)
    return torch.stack(alphas, dim=-2), torch.logsumexp(alpha + end, dim=-1)


def backward_recursion(unary: Tensor, transitions: Tensor, end: Tensor, mask: Tensor) -> Tensor:
    """Backward messages ``beta`` ``(*N, T, K)``: ``beta`` at each sequence's last step is ``end``.

    Same broadcasting as :func:`forward_recursion`; values on padded steps are meaningless.
    """
    t_max = unary.shape[-2]
    beta = torch.broadcast_to(end, unary[..., -1, :].shape)
    betas = [beta]
    for t in range(t_max - 2, -1, -1):
        nxt = torch.logsumexp(transitions + (unary[..., t + 1, :] + beta).unsqueeze(-2), dim=-1)
        beta = torch.where(mask[..., t + 1, None], nxt, end)
        betas.append(beta)
    return torch.stack(betas[::-1], dim=-2)


def node_marginals(
    unary: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor]:
    """``p(y_t = k | x)`` ``(*N, T, K)`` (zero on padded steps) and ``log Z`` ``(*N,)``."""
    zero = torch.zeros((), dtype=unary.dtype, device=unary.device)
    unary = torch.where(mask[..., None], unary, zero)  # no NaN from padding into the gradients
    alphas, log_z = forward_recursion(unary, transitions, start, end, mask)
    betas = backward_recursion(unary, transitions, end, mask)
    p = torch.exp(alphas + betas - log_z[..., None, None])
    return torch.where(mask[..., None], p, zero), log_z


# -- public functions -----------------------------------------------------------------------------
def chain_crf_log_partition(
    unary: Tensor,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Log-partition ``log Z(x) = logsumexp_y s(y, x)`` of each sequence (forward algorithm).

    Args:
        unary: per-frame tag scores ``(B, T, K)`` (e.g. a network's logits; seed 003's
            ``v^T h(W^3 h(W^2 (W^1 x_c)))``).
        transitions: ``(K, K)``, ``transitions[i, j]`` scores tag ``i`` followed by tag ``j``.
        start, end: ``(K,)`` scores of the first / last tag (zero when ``None``).
        mask, lengths: ``(B, T)`` bool prefix mask or ``(B,)`` lengths (all ``T`` when neither).

    Returns:
        ``(B,)``; its gradient with respect to ``unary`` is :func:`chain_crf_marginals`.

    >>> u = torch.zeros(1, 3, 2)
    >>> round(float(chain_crf_log_partition(u, torch.zeros(2, 2))), 4)  # log 2^3
    2.0794
    """
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    return forward_recursion(unary, a, s, e, m)[1]


def chain_crf_score(
    unary: Tensor,
    tags: Tensor,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Unnormalised score ``s(y, x)`` of the tag sequences ``tags`` ``(B, T)``: ``(B,)``."""
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    return path_score(unary, _check_tags(tags, m, unary.shape[-1]), a, s, e, m)


def path_score(unary: Tensor, y: Tensor, a: Tensor, s: Tensor, e: Tensor, m: Tensor) -> Tensor:
    """``s(y, x)`` ``(B,)`` of checked tags ``y`` ``(B, T)`` (valid ids everywhere). No checks."""
    zero = torch.zeros((), dtype=unary.dtype, device=unary.device)
    emit = torch.where(m, unary.gather(-1, y.unsqueeze(-1)).squeeze(-1), zero).sum(-1)
    trans = torch.where(m[:, 1:], a[y[:, :-1], y[:, 1:]], zero).sum(-1)
    last = y.gather(1, (m.sum(1, keepdim=True) - 1)).squeeze(1)
    return s[y[:, 0]] + emit + trans + e[last]


def chain_crf_nll(
    unary: Tensor,
    tags: Tensor,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Negative log-likelihood ``log Z(x) - s(y, x)`` of the tags (conditional neural field loss).

    Args:
        unary, transitions, start, end, mask, lengths: as :func:`chain_crf_log_partition`.
        tags: ``(B, T)`` integer tag ids in ``[0, K)`` (padded steps are ignored).
        reduction: ``"mean"`` over sequences, ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        The reduced NLL; ``-chain_crf_nll(..., reduction="sum")`` is pytorch-crf's
        ``CRF(...)(emissions, tags, mask)`` (log-likelihood, ``reduction="sum"``).
    """
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    score = path_score(unary, _check_tags(tags, m, unary.shape[-1]), a, s, e, m)
    return _reduce(forward_recursion(unary, a, s, e, m)[1] - score, reduction)


def chain_crf_marginals(
    unary: Tensor,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Per-step tag marginals ``p(y_t = k | x)`` by forward-backward: ``(B, T, K)``.

    Rows of valid steps sum to 1; padded steps are 0. Arguments as
    :func:`chain_crf_log_partition`.
    """
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    return node_marginals(unary, a, s, e, m)[0]


def viterbi_recursion(
    unary: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Max-product on ``(*N, T, K)`` (broadcasting as :func:`forward_recursion`): best paths
    ``(*N, T)`` (``-1`` on padded steps) and their scores ``(*N,)``. No input checks."""
    k = unary.shape[-1]
    ident = torch.arange(k, device=unary.device)
    delta = start + unary[..., 0, :]
    pointers = []
    for t in range(1, unary.shape[-2]):
        best, arg = (delta.unsqueeze(-1) + transitions).max(dim=-2)
        m = mask[..., t, None]
        delta = torch.where(m, best + unary[..., t, :], delta)
        pointers.append(torch.where(m, arg, ident))  # padded steps point to themselves
    score, tag = (delta + end).max(dim=-1)
    path = [tag]
    for ptr in reversed(pointers):
        tag = ptr.gather(-1, tag.unsqueeze(-1)).squeeze(-1)
        path.append(tag)
    paths = torch.stack(path[::-1], dim=-1)
    return paths.masked_fill(~torch.broadcast_to(mask, paths.shape), -1), score


def chain_crf_viterbi(
    unary: Tensor,
    transitions: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Most likely tag sequences ``argmax_y s(y, x)`` (Viterbi, max-product with back-pointers).

    Arguments as :func:`chain_crf_log_partition`.

    Returns:
        ``paths`` ``(B, T)`` long (``-1`` on padded steps) and their scores ``s(y*, x)`` ``(B,)``
        (``scores - log Z`` is the log-probability of the path).

    >>> u = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    >>> chain_crf_viterbi(u, torch.tensor([[0.0, -5.0], [-5.0, 0.0]]))[0].tolist()
    [[0, 0, 0]]
    """
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    return viterbi_recursion(unary, a, s, e, m)


# -- module ---------------------------------------------------------------------------------------
class ChainCRF(nn.Module):
    """Linear-chain CRF layer on top of any network's per-frame scores (a conditional neural
    field, seed 003; Peng et al. 2009); the functions above are the source of truth.

    Holds ``transitions`` ``(K, K)``, ``start`` and ``end`` ``(K,)``, initialised
    ``U(-0.1, 0.1)`` as pytorch-crf does. ``forward`` is the NLL to minimise; ``decode`` is
    Viterbi. The network and the CRF train end to end through ``unary``.

    Args:
        num_tags: number of tags ``K``.

    >>> crf = ChainCRF(3)
    >>> unary = torch.randn(2, 5, 3)  # e.g. a backbone's per-frame features through a Linear
    >>> crf(unary, torch.zeros(2, 5, dtype=torch.long), lengths=torch.tensor([5, 3])).shape
    torch.Size([])
    >>> crf.decode(unary, lengths=torch.tensor([5, 3]))[0].shape
    torch.Size([2, 5])
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ConfigError(f"num_tags: expected a positive integer, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _args(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.transitions, self.start, self.end

    def forward(
        self,
        unary: Tensor,
        tags: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> Tensor:
        """Negative log-likelihood of ``tags`` (:func:`chain_crf_nll`)."""
        return chain_crf_nll(unary, tags, *self._args(), mask, lengths, reduction)

    def log_partition(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``log Z(x)`` ``(B,)`` (:func:`chain_crf_log_partition`)."""
        return chain_crf_log_partition(unary, *self._args(), mask, lengths)

    def marginals(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``p(y_t = k | x)`` ``(B, T, K)`` (:func:`chain_crf_marginals`)."""
        return chain_crf_marginals(unary, *self._args(), mask, lengths)

    def decode(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Viterbi paths ``(B, T)`` (``-1`` padded) and scores ``(B,)`` (:func:`chain_crf_viterbi`)."""
        return chain_crf_viterbi(unary, *self._args(), mask, lengths)
