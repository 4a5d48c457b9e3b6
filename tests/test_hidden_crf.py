"""Hidden CRF and latent-dynamic CRF: brute-force enumeration, autograd, masks, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from visrep.errors import ConfigError, DataError, ShapeError, VisrepError
from visrep.models.layers import (
    HiddenCRF,
    LatentDynamicCRF,
    chain_crf_log_partition,
    chain_crf_nll,
    hidden_crf_log_probs,
    hidden_crf_marginals,
    hidden_crf_nll,
    latent_dynamic_crf_decode,
    latent_dynamic_crf_log_likelihood,
    latent_dynamic_crf_marginals,
    latent_dynamic_crf_nll,
)

D = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_paths(length: int, h: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(h), repeat=length)))  # (H^L, L)


# -- hidden CRF -----------------------------------------------------------------------------------
def hcrf_brute(u, trans, node, allowed):
    """log p(y | x) (Y,) and p(y, h_t = a | x) (Y, L, H) of one sequence by enumerating (y, h)."""
    length, h = u.shape
    paths = all_paths(length, h)
    steps = torch.arange(length)
    psi = []
    for y in range(trans.shape[0]):
        s = u[steps, paths].sum(-1) + node[y, paths].sum(-1)
        if length > 1:
            s = s + trans[y, paths[:, :-1], paths[:, 1:]].sum(-1)
        if allowed is not None:
            s = torch.where(allowed[y, paths].all(-1), s, torch.tensor(float("-inf"), dtype=D))
        psi.append(s)
    psi = torch.stack(psi)  # (Y, P)
    log_norm = torch.logsumexp(psi.flatten(), 0)
    log_p = torch.logsumexp(psi, 1) - log_norm
    p = torch.exp(psi - log_norm)
    joint = torch.zeros(trans.shape[0], length, h, dtype=D)
    for t in range(length):
        joint[:, t].index_add_(1, paths[:, t], p)
    return log_p, joint


@pytest.mark.parametrize("disjoint", [False, True])
@pytest.mark.parametrize(("y", "h", "t"), [(2, 2, 4), (3, 3, 3), (3, 2, 1)])
def test_hcrf_equals_brute_force(y: int, h: int, t: int, disjoint: bool) -> None:
    g = gen(y * 100 + h * 10 + t)
    u = torch.randn(3, t, h, generator=g, dtype=D)
    trans = torch.randn(y, h, h, generator=g, dtype=D)
    node = torch.randn(y, h, generator=g, dtype=D)
    # disjoint-ish per-label sets (a state may serve two labels; every label has one)
    allowed = (torch.arange(h)[None, :] % y == torch.arange(y)[:, None]) | (
        torch.arange(h)[None, :] == torch.arange(y)[:, None] % h
    )
    allowed = allowed if disjoint else None
    lengths = torch.tensor([t, max(1, t - 2), 1])
    log_p = hidden_crf_log_probs(u, trans, node, allowed, lengths=lengths)
    joint = hidden_crf_marginals(u, trans, node, allowed, lengths=lengths)
    labels = torch.arange(3) % y
    nll = hidden_crf_nll(u, labels, trans, node, allowed, lengths=lengths, reduction="none")
    for i, n in enumerate(lengths.tolist()):
        ref_lp, ref_joint = hcrf_brute(u[i, :n], trans, node, allowed)
        assert torch.allclose(log_p[i], ref_lp, atol=1e-12)
        assert torch.allclose(joint[i, :, :n], ref_joint, atol=1e-12)
        assert (joint[i, :, n:] == 0).all()
        assert torch.allclose(nll[i], -ref_lp[labels[i]], atol=1e-12)
        # summed over hidden states: p(y | x) at every step
        assert torch.allclose(joint[i, :, :n].sum(-1), ref_lp.exp()[:, None].expand(y, n))
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(3, dtype=D), atol=1e-12)


def test_hcrf_module_equals_functions_disjoint_sets_and_gradcheck() -> None:
    torch.manual_seed(0)
    m = HiddenCRF(num_labels=3, states_per_label=2, shared=False)
    assert m.num_states == 6 and "shared=False" in repr(m)
    u = torch.randn(4, 5, 6)
    labels = torch.tensor([0, 2, 1, 2])
    lengths = torch.tensor([5, 1, 3, 4])
    allowed = torch.arange(6)[None, :] // 2 == torch.arange(3)[:, None]
    p = (m.transitions, m.label_state, allowed)
    assert torch.equal(
        m(u, labels, lengths=lengths), hidden_crf_nll(u, labels, *p, lengths=lengths)
    )
    assert torch.equal(
        m.log_probs(u, lengths=lengths), hidden_crf_log_probs(u, *p, lengths=lengths)
    )
    assert torch.equal(
        m.marginals(u, lengths=lengths), hidden_crf_marginals(u, *p, lengths=lengths)
    )
    assert torch.equal(m.predict(u, lengths=lengths), m.log_probs(u, lengths=lengths).argmax(-1))
    # label y's hidden states carry all of its mass
    joint = m.marginals(u, lengths=lengths)
    assert (joint.masked_select(~allowed[None, :, None, :]) == 0).all()
    # no NaN gradients through the -inf of the other labels' states
    m(u, labels, lengths=lengths).backward()
    assert all(q.grad.isfinite().all() for q in m.parameters())
    # float64 gradcheck (shared states)
    g = gen(1)
    args = [
        torch.randn(2, 4, 3, generator=g, dtype=D).requires_grad_(True),
        torch.randn(2, 3, 3, generator=g, dtype=D).requires_grad_(True),
        torch.randn(2, 3, generator=g, dtype=D).requires_grad_(True),
    ]
    lab, ln = torch.tensor([1, 0]), torch.tensor([4, 2])
    assert torch.autograd.gradcheck(
        lambda a, b, c: hidden_crf_nll(a, lab, b, c, lengths=ln, reduction="sum"), args
    )


def test_hcrf_learns_the_order_of_parts() -> None:
    """Two gestures made of the same two parts in opposite order: a bag of frames cannot tell
    them apart; the HCRF's label-dependent transitions between hidden part states can."""
    g = gen(0)
    b, t = 64, 8
    labels = torch.randint(0, 2, (b,), generator=g)
    first = (torch.arange(t) < t // 2).long()  # part 0 then part 1
    parts = torch.where(labels[:, None] == 0, first, 1 - first)
    x = torch.nn.functional.one_hot(parts, 2).float() + 0.3 * torch.randn(b, t, 2, generator=g)
    torch.manual_seed(0)
    net, hcrf = torch.nn.Linear(2, 2), HiddenCRF(num_labels=2, states_per_label=2)
    opt = torch.optim.Adam([*net.parameters(), *hcrf.parameters()], lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        hcrf(net(x), labels).backward()
        opt.step()
    assert (hcrf.predict(net(x)) == labels).all()
    # both gestures have the same frame histogram (the order is all that differs)
    assert (parts.sum(1) == t // 2).all()


# -- latent-dynamic CRF ---------------------------------------------------------------------------
def ldcrf_brute(u, trans, start, end, state_label, labels):
    """log p(y | x) of the labels and p(y_t | x) (L, Y) of one sequence by enumerating h."""
    length, h = u.shape
    n_lab = int(state_label.max()) + 1
    paths = all_paths(length, h)
    steps = torch.arange(length)
    s = u[steps, paths].sum(-1) + start[paths[:, 0]] + end[paths[:, -1]]
    if length > 1:
        s = s + trans[paths[:, :-1], paths[:, 1:]].sum(-1)
    p_h = torch.softmax(s, 0)  # p(h | x)
    consistent = (state_label[paths] == labels[None, :]).all(-1)  # h_t in H_{y_t} for all t
    ll = torch.log(p_h[consistent].sum())  # Eq. 1
    p_y = torch.zeros(length, n_lab, dtype=D)
    for t in range(length):
        p_y[t].index_add_(0, state_label[paths[:, t]], p_h)
    return ll, p_y


@pytest.mark.parametrize(
    ("state_label", "t"),
    [([0, 0, 1, 1], 4), ([0, 1, 1, 2, 2], 3), ([1, 0, 2], 4), ([0, 0, 0, 1], 3)],
)
def test_ldcrf_equals_brute_force(state_label: list[int], t: int) -> None:
    sl = torch.tensor(state_label)
    h, n_lab = len(sl), int(sl.max()) + 1
    g = gen(h * 10 + t)
    u = torch.randn(3, t, h, generator=g, dtype=D)
    trans = torch.randn(h, h, generator=g, dtype=D)
    start, end = torch.randn(h, generator=g, dtype=D), torch.randn(h, generator=g, dtype=D)
    labels = torch.randint(0, n_lab, (3, t), generator=g)
    lengths = torch.tensor([t, 2, 1])
    p = (trans, sl, start, end)
    ll = latent_dynamic_crf_log_likelihood(u, labels, *p, lengths=lengths)
    marg = latent_dynamic_crf_marginals(u, *p, lengths=lengths)
    dec = latent_dynamic_crf_decode(u, *p, lengths=lengths)
    nll = latent_dynamic_crf_nll(u, labels, *p, lengths=lengths, reduction="sum")
    assert torch.allclose(nll, -ll.sum())
    for i, n in enumerate(lengths.tolist()):
        ref_ll, ref_py = ldcrf_brute(u[i, :n], trans, start, end, sl, labels[i, :n])
        assert torch.allclose(ll[i], ref_ll, atol=1e-12)
        assert torch.allclose(marg[i, :n], ref_py, atol=1e-12)
        assert torch.allclose(marg[i, :n].sum(-1), torch.ones(n, dtype=D), atol=1e-12)
        assert dec[i, :n].tolist() == ref_py.argmax(-1).tolist()
        assert (dec[i, n:] == -1).all() and (marg[i, n:] == 0).all()
    # the probabilities of all labellings of a short sequence sum to 1
    seqs = all_paths(t, n_lab)
    total = latent_dynamic_crf_log_likelihood(u[:1].expand(len(seqs), t, h), seqs, *p).exp().sum()
    assert torch.allclose(total, torch.tensor(1.0, dtype=D), atol=1e-12)


def test_ldcrf_with_one_state_per_label_is_the_chain_crf() -> None:
    g = gen(3)
    u = torch.randn(4, 6, 3, generator=g, dtype=D)
    trans = torch.randn(3, 3, generator=g, dtype=D)
    labels = torch.randint(0, 3, (4, 6), generator=g)
    lengths = torch.tensor([6, 3, 1, 5])
    ll = latent_dynamic_crf_log_likelihood(u, labels, trans, torch.arange(3), lengths=lengths)
    ref = -chain_crf_nll(u, labels, trans, lengths=lengths, reduction="none")
    assert torch.allclose(ll, ref, atol=1e-12)


def test_ldcrf_module_masks_and_gradients() -> None:
    torch.manual_seed(0)
    m = LatentDynamicCRF(num_labels=2, states_per_label=3)
    assert m.num_states == 6 and m.state_label.tolist() == [0, 0, 0, 1, 1, 1]
    u = torch.randn(3, 7, 6, dtype=D)
    m = m.double()
    labels = torch.randint(0, 2, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    pad = torch.arange(7) >= lengths[:, None]
    u_garbage = torch.where(pad[..., None], 1e3 * torch.randn_like(u), u)
    labels_garbage = labels.masked_fill(pad, 17)  # padded ids are ignored
    nll = m(u_garbage, labels_garbage, lengths=lengths, reduction="none")
    marg = m.marginals(u_garbage, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        one = m(u[i : i + 1, :n], labels[i : i + 1, :n], reduction="none")
        assert torch.allclose(nll[i], one[0], atol=1e-12)
        assert torch.allclose(marg[i, :n], m.marginals(u[i : i + 1, :n])[0], atol=1e-12)
    p = (m.transitions, m.state_label)
    assert torch.equal(
        m.decode(u, lengths=lengths), latent_dynamic_crf_decode(u, *p, lengths=lengths)
    )
    # gradient of log Z (the unclamped term) w.r.t. unary: the hidden-state marginals
    uu = u.clone().requires_grad_(True)
    chain_crf_log_partition(uu, m.transitions.detach(), lengths=lengths).sum().backward()
    summed = uu.grad @ torch.nn.functional.one_hot(m.state_label, 2).to(D)
    assert torch.allclose(summed, marg.detach(), atol=1e-12)
    uu = u[:2, :3].clone().requires_grad_(True)
    tr = m.transitions.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: latent_dynamic_crf_nll(a, labels[:2, :3], b, m.state_label), (uu, tr)
    )


def test_bad_input_raises_one_line_errors() -> None:
    u = torch.randn(2, 3, 4)
    tr_h, node = torch.zeros(2, 4, 4), torch.zeros(2, 4)
    tr, sl = torch.zeros(4, 4), torch.tensor([0, 0, 1, 1])
    lab_seq = torch.zeros(2, 3, dtype=torch.long)
    cases = [
        (lambda: hidden_crf_nll(u, torch.tensor([0, 2]), tr_h, node), DataError, "labels"),
        (lambda: hidden_crf_nll(u, torch.tensor([[0, 1]]), tr_h, node), ShapeError, "labels"),
        (lambda: hidden_crf_log_probs(u[:, :0], tr_h, node), DataError, "length-0"),
        (
            lambda: hidden_crf_log_probs(u, tr_h, node, lengths=torch.tensor([0, 3])),
            DataError,
            "lengths",
        ),
        (lambda: hidden_crf_log_probs(u, torch.zeros(2, 3, 3), node), ShapeError, "transitions"),
        (lambda: hidden_crf_log_probs(u, tr_h, torch.zeros(3, 4)), ShapeError, "label_state"),
        (
            lambda: hidden_crf_log_probs(u, tr_h, node, torch.tensor([[True] * 4, [False] * 4])),
            ConfigError,
            "allowed",
        ),
        (
            lambda: latent_dynamic_crf_nll(u, torch.full((2, 3), 2), tr, sl),
            DataError,
            "labels",
        ),
        (
            lambda: latent_dynamic_crf_nll(u, lab_seq, tr, torch.tensor([0, 0, 2, 2])),
            ConfigError,
            "state_label",
        ),
        (lambda: latent_dynamic_crf_nll(u, lab_seq, tr, sl[:3]), ShapeError, "state_label"),
        (lambda: latent_dynamic_crf_marginals(u[:, :0], tr, sl), DataError, "length-0"),
        (lambda: latent_dynamic_crf_decode(u, torch.zeros(3, 3), sl), ShapeError, "transitions"),
        (lambda: HiddenCRF(0, 2), ConfigError, "num_labels"),
        (lambda: LatentDynamicCRF(2, 0), ConfigError, "states_per_label"),
    ]
    for fn, exc, word in cases:
        with pytest.raises(exc) as info:
            fn()
        assert isinstance(info.value, VisrepError)
        assert word in str(info.value) and "\n" not in str(info.value)
