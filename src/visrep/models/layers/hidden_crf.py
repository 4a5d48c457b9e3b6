"""Hidden-state CRFs for sequences made of unknown parts: HCRF and LDCRF (seed 003).

Seed 003 ("Motivation: Gesture Recognition"): a gesture is a sequence of parts, some shared by
several gestures, and only the gesture is labelled. Both models put a linear-chain CRF on
latent part states ``h_t`` in ``1..H`` whose per-frame scores ``U[t, h]`` (``unary``,
``(B, T, H)``) come from any network (so, as the seed's "latent-dynamic conditional neural
field", the features are learnt end to end). The chain recursions are those of
:mod:`visrep.models.layers.chain_crf`.

**Hidden CRF** (Quattoni, Wang, Morency, Collins and Darrell, "Hidden Conditional Random
Fields", TPAMI 2007; Wang et al., CVPR 2006, the seed's link). One label ``y`` per sequence:

    Psi(y, h, x) = sum_t U[t, h_t] + sum_t theta_y[y, h_t] + sum_{t>=2} theta_e[y, h_{t-1}, h_t]
    p(y | x) = sum_h exp Psi(y, h, x) / sum_{y', h} exp Psi(y', h, x)

(``theta_y`` = ``label_state`` ``(Y, H)``, the compatibility of a label with a hidden state;
``theta_e`` = ``transitions`` ``(Y, H, H)``, label-dependent transitions). So
``log p(y | x) = log Z_y(x) - logsumexp_y' log Z_y'(x)`` where ``Z_y`` is the partition function
of label ``y``'s chain, all labels run as one batched chain. Hidden states are shared by all
labels (parts "appear in different gestures") unless ``allowed`` ``(Y, H)`` restricts label
``y`` to a subset (per-label hidden-state sets; a state outside the set scores ``-inf``).

**Latent-dynamic CRF** (Morency, Quattoni and Darrell, "Latent-Dynamic Discriminative Models for
Continuous Gesture Recognition", CVPR 2007). One label ``y_t`` per frame; each label owns a
disjoint set ``H_y`` of hidden states (``state_label[h]`` is the label of state ``h``), and

    p(y | x) = sum_h p(y | h, x) p(h | x),                                           (Eq. 1)
    p(h | x) = exp( sum_t U[t, h_t] + sum_{t>=2} A[h_{t-1}, h_t] ) / Z(x)

where ``p(y | h, x)`` is 1 when every ``h_t`` is in ``H_{y_t}`` and 0 otherwise (the sets
are disjoint). ``log p(y | x)`` is the log-partition of the chain clamped to ``H_{y_t}`` at every
frame minus ``log Z(x)``. Inference as the paper: the marginals ``p(h_t = a | x)`` by belief
propagation (forward-backward), summed over each label's set, ``p(y_t = y | x) =
sum_{a in H_y} p(h_t = a | x)``, and each frame gets the label of the largest sum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.chain_crf import (
    Reduction,
    _check_tags,
    _params,
    _reduce,
    forward_recursion,
    node_marginals,
    sequence_mask,
)

__all__ = [
    "HiddenCRF",
    "LatentDynamicCRF",
    "hidden_crf_log_probs",
    "hidden_crf_marginals",
    "hidden_crf_nll",
    "latent_dynamic_crf_decode",
    "latent_dynamic_crf_log_likelihood",
    "latent_dynamic_crf_marginals",
    "latent_dynamic_crf_nll",
]


# -- hidden CRF -----------------------------------------------------------------------------------
def _hcrf_chains(
    unary: Tensor,
    transitions: Tensor,
    label_state: Tensor,
    allowed: Tensor | None,
    mask: Tensor | None,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-label chains: unary ``(B, Y, T, H)``, transitions ``(Y, H, H)``, zeros ``(H,)`` for
    start / end, and the mask ``(B, 1, T)``."""
    m = sequence_mask(unary, mask, lengths)
    h = unary.shape[-1]
    if (
        not isinstance(transitions, Tensor)
        or transitions.dim() != 3
        or transitions.shape[1:] != (h, h)
    ):
        got = tuple(transitions.shape) if isinstance(transitions, Tensor) else transitions
        raise ShapeError(
            f"transitions: expected (Y, {h}, {h}) for H = {h} hidden states, got {got}"
        )
    y = transitions.shape[0]
    if y < 1:
        raise ShapeError("transitions: expected at least one label (Y >= 1), got Y = 0")
    if not isinstance(label_state, Tensor) or label_state.shape != (y, h):
        got = tuple(label_state.shape) if isinstance(label_state, Tensor) else label_state
        raise ShapeError(f"label_state: expected ({y}, {h}) (labels, hidden states), got {got}")
    node = label_state.to(unary.dtype)
    if allowed is not None:
        if (
            not isinstance(allowed, Tensor)
            or allowed.shape != (y, h)
            or allowed.dtype != torch.bool
        ):
            got = (
                f"{allowed.dtype} {tuple(allowed.shape)}"
                if isinstance(allowed, Tensor)
                else allowed
            )
            raise ShapeError(
                f"allowed: expected bool ({y}, {h}) (labels, hidden states), got {got}"
            )
        allowed = allowed.to(unary.device)
        if not bool(allowed.any(-1).all()):
            raise ConfigError("allowed: every label needs at least one hidden state")
        node = torch.where(allowed, node, torch.full_like(node, float("-inf")))
    zero = unary.new_zeros(h)
    chains = unary.unsqueeze(1) + node[None, :, None, :]
    return chains, transitions.to(unary.dtype), zero, m[:, None, :]


def hidden_crf_log_probs(
    unary: Tensor,
    transitions: Tensor,
    label_state: Tensor,
    allowed: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Label log-posteriors ``log p(y | x)`` of a hidden CRF (Quattoni et al. 2007): ``(B, Y)``.

    Args:
        unary: per-frame hidden-state scores ``U[t, h]`` ``(B, T, H)`` (from any network).
        transitions: ``theta_e`` ``(Y, H, H)``, ``[y, i, j]`` scores state ``i`` then ``j``
            under label ``y``.
        label_state: ``theta_y`` ``(Y, H)``, label-state compatibility, added at every frame.
        allowed: optional bool ``(Y, H)``, the hidden states each label may use (all if None).
        mask, lengths: ``(B, T)`` bool prefix mask or ``(B,)`` lengths (all ``T`` when neither).

    Returns:
        ``(B, Y)``; ``logsumexp`` over labels is 0.

    >>> lp = hidden_crf_log_probs(torch.zeros(1, 4, 2), torch.zeros(3, 2, 2), torch.zeros(3, 2))
    >>> [round(p, 4) for p in lp.exp()[0].tolist()]  # nothing favours any label
    [0.3333, 0.3333, 0.3333]
    """
    u, a, z, m = _hcrf_chains(unary, transitions, label_state, allowed, mask, lengths)
    log_zy = forward_recursion(u, a, z, z, m)[1]
    return log_zy - torch.logsumexp(log_zy, dim=-1, keepdim=True)


def hidden_crf_nll(
    unary: Tensor,
    labels: Tensor,
    transitions: Tensor,
    label_state: Tensor,
    allowed: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``-log p(y | x)`` of the sequence labels ``labels`` ``(B,)`` in ``[0, Y)`` (the HCRF
    training objective without its Gaussian prior); other arguments as
    :func:`hidden_crf_log_probs`."""
    log_p = hidden_crf_log_probs(unary, transitions, label_state, allowed, mask, lengths)
    b, y = log_p.shape
    if not isinstance(labels, Tensor) or labels.shape != (b,) or labels.is_floating_point():
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else labels
        raise ShapeError(f"labels: expected integer sequence labels of shape ({b},), got {got}")
    ones = torch.ones(b, 1, dtype=torch.bool, device=log_p.device)
    lab = _check_tags(labels.unsqueeze(-1), ones, y, name="labels")
    return _reduce(-log_p.gather(1, lab).squeeze(1), reduction)


def hidden_crf_marginals(
    unary: Tensor,
    transitions: Tensor,
    label_state: Tensor,
    allowed: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Joint posteriors ``p(y, h_t = a | x)`` ``(B, Y, T, H)`` of a hidden CRF (0 on padding).

    Summed over ``H`` it is ``p(y | x)`` at every valid step; summed over ``Y`` the hidden-state
    marginals ``p(h_t = a | x)``. Arguments as :func:`hidden_crf_log_probs`.
    """
    u, a, z, m = _hcrf_chains(unary, transitions, label_state, allowed, mask, lengths)
    p_h_given_y, log_zy = node_marginals(u, a, z, z, m)
    p_y = torch.softmax(log_zy, dim=-1)
    return p_h_given_y * p_y[..., None, None]


class HiddenCRF(nn.Module):
    """Hidden CRF sequence classifier (Quattoni et al. 2007) on per-frame hidden-state scores.

    Holds ``transitions`` ``(Y, H, H)`` and ``label_state`` ``(Y, H)``, initialised
    ``U(-0.1, 0.1)``. ``forward`` is the NLL; ``predict`` the label of largest ``p(y | x)``.

    Args:
        num_labels: sequence labels ``Y``.
        states_per_label: hidden states each label may use.
        shared: ``True`` (Quattoni's model): one set of ``H = states_per_label`` states shared by
            all labels; ``False``: disjoint sets, ``H = num_labels * states_per_label`` and label
            ``y`` owns states ``y * S .. (y + 1) * S - 1``.

    >>> hcrf = HiddenCRF(num_labels=3, states_per_label=4)
    >>> unary = torch.randn(2, 6, hcrf.num_states)  # a network's per-frame part scores
    >>> hcrf.predict(unary, lengths=torch.tensor([6, 2])).shape
    torch.Size([2])
    """

    def __init__(self, num_labels: int, states_per_label: int, shared: bool = True) -> None:
        super().__init__()
        for name, v in (("num_labels", num_labels), ("states_per_label", states_per_label)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {v!r}")
        self.num_labels, self.states_per_label, self.shared = num_labels, states_per_label, shared
        h = states_per_label if shared else num_labels * states_per_label
        self.num_states = h
        self.transitions = nn.Parameter(torch.empty(num_labels, h, h).uniform_(-0.1, 0.1))
        self.label_state = nn.Parameter(torch.empty(num_labels, h).uniform_(-0.1, 0.1))
        owner = torch.arange(h) // states_per_label
        allowed = None if shared else owner[None, :] == torch.arange(num_labels)[:, None]
        self.register_buffer("allowed", allowed, persistent=False)

    def extra_repr(self) -> str:
        return (f"num_labels={self.num_labels}, states_per_label={self.states_per_label}, "
                f"shared={self.shared}")  # fmt: skip

    def forward(
        self,
        unary: Tensor,
        labels: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> Tensor:
        """``-log p(y | x)`` (:func:`hidden_crf_nll`)."""
        args = (self.transitions, self.label_state, self.allowed)
        return hidden_crf_nll(unary, labels, *args, mask, lengths, reduction)

    def log_probs(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``log p(y | x)`` ``(B, Y)`` (:func:`hidden_crf_log_probs`)."""
        args = (self.transitions, self.label_state, self.allowed)
        return hidden_crf_log_probs(unary, *args, mask, lengths)

    def marginals(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``p(y, h_t | x)`` ``(B, Y, T, H)`` (:func:`hidden_crf_marginals`)."""
        args = (self.transitions, self.label_state, self.allowed)
        return hidden_crf_marginals(unary, *args, mask, lengths)

    def predict(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``argmax_y p(y | x)`` ``(B,)``."""
        return self.log_probs(unary, mask, lengths).argmax(-1)


# -- latent-dynamic CRF ---------------------------------------------------------------------------
def _check_state_label(state_label: Tensor, h: int, device: torch.device) -> tuple[Tensor, int]:
    if (
        not isinstance(state_label, Tensor)
        or state_label.shape != (h,)
        or state_label.is_floating_point()
        or state_label.dtype == torch.bool
    ):
        got = (
            f"{state_label.dtype} {tuple(state_label.shape)}"
            if isinstance(state_label, Tensor)
            else state_label
        )
        raise ShapeError(f"state_label: expected integer labels of shape ({h},) (one per hidden "
                         f"state), got {got}")  # fmt: skip
    sl = state_label.to(device).long()
    if bool((sl < 0).any()):
        raise ConfigError(f"state_label: label ids must be >= 0, got min {int(sl.min())}")
    y = int(sl.max()) + 1
    counts = torch.bincount(sl, minlength=y)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ConfigError(
            f"state_label: labels {missing} own no hidden state (need each of 0..{y - 1})"
        )
    return sl, y


def latent_dynamic_crf_log_likelihood(
    unary: Tensor,
    labels: Tensor,
    transitions: Tensor,
    state_label: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """``log p(y | x)`` of per-frame labels under an LDCRF (Morency et al. 2007, Eq. 1): ``(B,)``.

    Args:
        unary: per-frame hidden-state scores ``(B, T, H)``.
        labels: per-frame label ids ``(B, T)`` in ``[0, Y)`` (padded steps ignored).
        transitions: ``(H, H)`` hidden-state transitions (between and within labels' sets).
        state_label: ``(H,)`` label owning each hidden state; every label ``0..Y-1`` owns one.
        start, end: optional ``(H,)`` first / last state scores (zero when ``None``).
        mask, lengths: ``(B, T)`` bool prefix mask or ``(B,)`` lengths.

    Returns:
        The clamped chain's log-partition (``h_t`` restricted to ``H_{y_t}``) minus ``log Z(x)``.
    """
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    sl, y = _check_state_label(state_label, unary.shape[-1], unary.device)
    lab = _check_tags(labels, m, y, name="labels")
    keep = sl[None, None, :] == lab[..., None]  # (B, T, H): h_t in H_{y_t}
    clamped = torch.where(keep, unary, torch.full_like(unary, float("-inf")))
    log_z_y = forward_recursion(clamped, a, s, e, m)[1]
    return log_z_y - forward_recursion(unary, a, s, e, m)[1]


def latent_dynamic_crf_nll(
    unary: Tensor,
    labels: Tensor,
    transitions: Tensor,
    state_label: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``-log p(y | x)`` (:func:`latent_dynamic_crf_log_likelihood`), reduced over sequences."""
    ll = latent_dynamic_crf_log_likelihood(
        unary, labels, transitions, state_label, start, end, mask, lengths
    )
    return _reduce(-ll, reduction)


def latent_dynamic_crf_marginals(
    unary: Tensor,
    transitions: Tensor,
    state_label: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Per-frame label marginals ``p(y_t = y | x) = sum_{a in H_y} p(h_t = a | x)``: ``(B, T, Y)``
    (0 on padded steps). Arguments as :func:`latent_dynamic_crf_log_likelihood`."""
    m = sequence_mask(unary, mask, lengths)
    a, s, e = _params(unary, transitions, start, end)
    sl, y = _check_state_label(state_label, unary.shape[-1], unary.device)
    p_h = node_marginals(unary, a, s, e, m)[0]
    return p_h @ nn.functional.one_hot(sl, y).to(p_h.dtype)


def latent_dynamic_crf_decode(
    unary: Tensor,
    transitions: Tensor,
    state_label: Tensor,
    start: Tensor | None = None,
    end: Tensor | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Per-frame labels as Morency et al. infer them: the label whose hidden-state set has the
    largest summed marginal, ``argmax_y p(y_t = y | x)``: ``(B, T)`` long, ``-1`` on padding."""
    p = latent_dynamic_crf_marginals(unary, transitions, state_label, start, end, mask, lengths)
    m = sequence_mask(unary, mask, lengths)
    return p.argmax(-1).masked_fill(~m, -1)


class LatentDynamicCRF(nn.Module):
    """Latent-dynamic CRF (Morency et al. 2007): per-frame labels, each owning
    ``states_per_label`` disjoint hidden states, on per-frame hidden-state scores.

    Holds ``transitions`` ``(H, H)`` (``U(-0.1, 0.1)``) and the buffer ``state_label`` ``(H,)``
    (state ``h`` belongs to label ``h // states_per_label``); ``H = num_labels *
    states_per_label``. ``forward`` is the NLL, ``marginals`` the label marginals, ``decode``
    the paper's per-frame labels.

    >>> ldcrf = LatentDynamicCRF(num_labels=2, states_per_label=3)
    >>> unary = torch.randn(2, 5, ldcrf.num_states)
    >>> ldcrf.decode(unary, lengths=torch.tensor([5, 2]))[1, 2:].tolist()
    [-1, -1, -1]
    """

    def __init__(self, num_labels: int, states_per_label: int) -> None:
        super().__init__()
        for name, v in (("num_labels", num_labels), ("states_per_label", states_per_label)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {v!r}")
        self.num_labels, self.states_per_label = num_labels, states_per_label
        self.num_states = h = num_labels * states_per_label
        self.transitions = nn.Parameter(torch.empty(h, h).uniform_(-0.1, 0.1))
        self.register_buffer("state_label", torch.arange(h) // states_per_label, persistent=False)

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}, states_per_label={self.states_per_label}"

    def forward(
        self,
        unary: Tensor,
        labels: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> Tensor:
        """``-log p(y | x)`` (:func:`latent_dynamic_crf_nll`)."""
        args = (self.transitions, self.state_label, None, None, mask, lengths)
        return latent_dynamic_crf_nll(unary, labels, *args, reduction)

    def marginals(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """``p(y_t = y | x)`` ``(B, T, Y)`` (:func:`latent_dynamic_crf_marginals`)."""
        args = (self.transitions, self.state_label, None, None, mask, lengths)
        return latent_dynamic_crf_marginals(unary, *args)

    def decode(
        self, unary: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """Per-frame labels ``(B, T)``, ``-1`` on padding (:func:`latent_dynamic_crf_decode`)."""
        args = (self.transitions, self.state_label, None, None, mask, lengths)
        return latent_dynamic_crf_decode(unary, *args)
