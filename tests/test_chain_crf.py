"""Linear-chain CRF: brute-force enumeration, autograd, pytorch-crf parity, masks, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from visrep.errors import ConfigError, DataError, ShapeError, VisrepError
from visrep.models.layers import (
    ChainCRF,
    chain_crf_log_partition,
    chain_crf_marginals,
    chain_crf_nll,
    chain_crf_score,
    chain_crf_viterbi,
)

D = torch.float64


def rand_crf(b: int, t: int, k: int, seed: int = 0, dtype: torch.dtype = D):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, t, k, generator=g, dtype=dtype)
    a, s, e = (torch.randn(*sh, generator=g, dtype=dtype) for sh in ((k, k), (k,), (k,)))
    return u, a, s, e


def brute(u: torch.Tensor, a: torch.Tensor, s: torch.Tensor, e: torch.Tensor):
    """All K^L paths of one sequence ``u`` ``(L, K)`` and their scores."""
    length, k = u.shape
    paths = torch.tensor(list(itertools.product(range(k), repeat=length)))  # (P, L)
    score = s[paths[:, 0]] + e[paths[:, -1]] + u[torch.arange(length), paths].sum(-1)
    if length > 1:
        score = score + a[paths[:, :-1], paths[:, 1:]].sum(-1)
    return paths, score


CASES = [(2, 1), (2, 4), (3, 3), (3, 4)]  # (K, T)


@pytest.mark.parametrize(("k", "t"), CASES)
def test_log_partition_viterbi_marginals_equal_brute_force(k: int, t: int) -> None:
    u, a, s, e = rand_crf(3, t, k, seed=k * 10 + t)
    lengths = torch.tensor([t, max(1, t - 1), 1])
    log_z = chain_crf_log_partition(u, a, s, e, lengths=lengths)
    paths, scores = chain_crf_viterbi(u, a, s, e, lengths=lengths)
    marg = chain_crf_marginals(u, a, s, e, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        all_paths, sc = brute(u[i, :n], a, s, e)
        assert torch.allclose(log_z[i], torch.logsumexp(sc, 0), atol=1e-12)
        best = int(sc.argmax())
        assert paths[i, :n].tolist() == all_paths[best].tolist()
        assert (paths[i, n:] == -1).all()
        assert torch.allclose(scores[i], sc[best], atol=1e-12)
        p = torch.softmax(sc, 0)
        ref = torch.stack([torch.bincount(all_paths[:, j], p, minlength=k) for j in range(n)])
        assert torch.allclose(marg[i, :n], ref, atol=1e-12)
        assert (marg[i, n:] == 0).all()
        # the score of a given path, and the NLL of it
        tags = torch.zeros(1, t, dtype=torch.long)
        tags[0, :n] = all_paths[7 % len(all_paths)]
        one = dict(lengths=torch.tensor([n]))
        assert torch.allclose(chain_crf_score(u[i : i + 1], tags, a, s, e, **one), sc[7 % len(sc)])
        nll = chain_crf_nll(u[i : i + 1], tags, a, s, e, **one, reduction="none")
        assert torch.allclose(nll, -torch.log(p[7 % len(p)]), atol=1e-12)
    valid = marg.sum(-1)[torch.arange(t) < lengths[:, None]]
    assert torch.allclose(valid, torch.ones_like(valid), atol=1e-12)


def test_gradient_of_log_partition_is_the_marginals() -> None:
    u, a, s, e = rand_crf(4, 6, 3, seed=1)
    lengths = torch.tensor([6, 4, 1, 5])
    u.requires_grad_(True)
    s.requires_grad_(True)
    a.requires_grad_(True)
    chain_crf_log_partition(u, a, s, e, lengths=lengths).sum().backward()
    marg = chain_crf_marginals(u, a, s, e, lengths=lengths).detach()
    assert torch.allclose(u.grad, marg, atol=1e-12)
    assert torch.allclose(s.grad, marg[:, 0].sum(0), atol=1e-12)
    # d log Z / dA[i, j] = expected number of (i -> j) transitions, by brute force
    ref = torch.zeros(3, 3, dtype=D)
    for i, n in enumerate(lengths.tolist()):
        paths, sc = brute(u[i, :n].detach(), a.detach(), s.detach(), e)
        p = torch.softmax(sc, 0)
        for j in range(n - 1):
            ref.index_put_((paths[:, j], paths[:, j + 1]), p, accumulate=True)
    assert torch.allclose(a.grad, ref, atol=1e-12)


def test_gradcheck_nll() -> None:
    u, a, s, e = (x.requires_grad_(True) for x in rand_crf(2, 4, 3, seed=2))
    tags = torch.tensor([[0, 2, 1, 1], [1, 0, 0, 0]])
    m = torch.tensor([[True] * 4, [True, True, False, False]])
    assert torch.autograd.gradcheck(
        lambda *p: chain_crf_nll(*p[:1], tags, *p[1:], mask=m), (u, a, s, e)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_pytorch_crf(dtype: torch.dtype) -> None:
    torchcrf = pytest.importorskip("torchcrf")
    b, t, k = 8, 12, 5
    ref = torchcrf.CRF(k, batch_first=True).to(dtype)
    u = torch.randn(b, t, k, generator=torch.Generator().manual_seed(3), dtype=dtype)
    lengths = torch.tensor([12, 1, 7, 12, 3, 9, 2, 11])
    mask = torch.arange(t) < lengths[:, None]
    tags = torch.randint(0, k, (b, t), generator=torch.Generator().manual_seed(4))
    crf = ChainCRF(k).to(dtype)
    with torch.no_grad():
        crf.transitions.copy_(ref.transitions)
        crf.start.copy_(ref.start_transitions)
        crf.end.copy_(ref.end_transitions)
    u1, u2 = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
    ll_ref = ref(u1, tags, mask, reduction="none")
    nll = crf(u2, tags, mask=mask, reduction="none")
    assert torch.allclose(-nll, ll_ref, rtol=1e-5, atol=1e-5)
    ll_ref.sum().backward()
    (-nll).sum().backward()
    assert torch.allclose(u1.grad, u2.grad, atol=1e-5)
    assert torch.allclose(ref.transitions.grad, crf.transitions.grad, atol=1e-5)
    assert torch.allclose(ref.end_transitions.grad, crf.end.grad, atol=1e-5)
    paths, _ = crf.decode(u, mask=mask)
    assert [p[:n] for p, n in zip(paths.tolist(), lengths.tolist(), strict=True)] == ref.decode(
        u, mask
    )


def test_padded_equals_unpadded_and_padding_is_ignored() -> None:
    u, a, s, e = rand_crf(3, 7, 4, seed=5)
    lengths = torch.tensor([7, 3, 5])
    pad = torch.arange(7) >= lengths[:, None]
    u_garbage = torch.where(pad[..., None], 1e3 * torch.randn_like(u), u)
    tags = torch.randint(0, 4, (3, 7), generator=torch.Generator().manual_seed(6))
    batched = [
        chain_crf_log_partition(u_garbage, a, s, e, lengths=lengths),
        chain_crf_nll(u_garbage, tags, a, s, e, lengths=lengths, reduction="none"),
        chain_crf_viterbi(u_garbage, a, s, e, lengths=lengths)[1],
    ]
    marg = chain_crf_marginals(u_garbage, a, s, e, lengths=lengths)
    paths = chain_crf_viterbi(u_garbage, a, s, e, lengths=lengths)[0]
    for i, n in enumerate(lengths.tolist()):
        ui, ti = u[i : i + 1, :n], tags[i : i + 1, :n]
        single = [
            chain_crf_log_partition(ui, a, s, e),
            chain_crf_nll(ui, ti, a, s, e, reduction="none"),
            chain_crf_viterbi(ui, a, s, e)[1],
        ]
        for x, y in zip(batched, single, strict=True):
            assert torch.allclose(x[i], y[0], atol=1e-12)
        assert torch.allclose(marg[i, :n], chain_crf_marginals(ui, a, s, e)[0], atol=1e-12)
        assert paths[i, :n].tolist() == chain_crf_viterbi(ui, a, s, e)[0][0].tolist()
    # NaN on padded steps reaches neither the values nor the gradients
    u_nan = torch.where(pad[..., None], float("nan"), u).requires_grad_(True)
    a_, e_ = a.clone().requires_grad_(True), e.clone().requires_grad_(True)
    out = chain_crf_marginals(u_nan, a_, s, e_, lengths=lengths)
    assert torch.allclose(out, marg, atol=1e-12)
    (out * torch.randn_like(out)).sum().backward()
    assert u_nan.grad[~pad].isfinite().all() and a_.grad.isfinite().all()
    assert e_.grad.isfinite().all()
    # a mask and the same lengths agree
    mask = ~pad
    by_lengths = chain_crf_log_partition(u, a, s, e, lengths=lengths)
    assert torch.equal(chain_crf_log_partition(u, a, s, e, mask=mask), by_lengths)


def test_module_equals_functions_and_dtypes() -> None:
    torch.manual_seed(0)
    crf = ChainCRF(4)
    u = torch.randn(2, 5, 4)
    tags = torch.randint(0, 4, (2, 5))
    p = (crf.transitions, crf.start, crf.end)
    assert torch.equal(crf(u, tags, reduction="sum"), chain_crf_nll(u, tags, *p, reduction="sum"))
    assert torch.equal(crf.log_partition(u), chain_crf_log_partition(u, *p))
    assert torch.equal(crf.marginals(u), chain_crf_marginals(u, *p))
    assert torch.equal(crf.decode(u)[0], chain_crf_viterbi(u, *p)[0])
    assert "num_tags=4" in repr(crf)
    lz64 = crf.double().log_partition(u.double())
    assert lz64.dtype == torch.float64
    lz16 = crf.bfloat16().log_partition(u.bfloat16())
    assert lz16.dtype == torch.bfloat16
    assert torch.allclose(lz16.double(), lz64, rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu() -> None:
    u, a, s, e = rand_crf(4, 9, 5, seed=7, dtype=torch.float32)
    lengths = torch.tensor([9, 2, 5, 1])
    cpu = chain_crf_marginals(u, a, s, e, lengths=lengths)
    gpu = chain_crf_marginals(*(x.cuda() for x in (u, a, s, e)), lengths=lengths.cuda())
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    pc = chain_crf_viterbi(u, a, s, e, lengths=lengths)[0]
    pg = chain_crf_viterbi(*(x.cuda() for x in (u, a, s, e)), lengths=lengths.cuda())[0]
    assert torch.equal(pg.cpu(), pc)


def test_conditional_neural_field_learns_what_framewise_cannot() -> None:
    """Only the first frame's feature tells the tag; the tag then stays for the whole sequence.
    A network + CRF trained end to end learns the transitions and labels every frame; the same
    network's frame-wise argmax is at chance after the first frame."""
    g = torch.Generator().manual_seed(0)
    b, t = 128, 8
    first = torch.randint(0, 2, (b,), generator=g)
    tags = first[:, None].expand(b, t)
    x = torch.randn(b, t, 3, generator=g)
    x[:, :, 0] = 0.0  # feature 0: the tag's sign on the first frame, 0 elsewhere
    x[:, 0, 0] = 2.0 * first - 1.0
    torch.manual_seed(0)
    net, crf = torch.nn.Linear(3, 2), ChainCRF(2)
    opt = torch.optim.Adam([*net.parameters(), *crf.parameters()], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        crf(net(x), tags).backward()
        opt.step()
    with torch.no_grad():
        acc_crf = (crf.decode(net(x))[0] == tags).double().mean()
        acc_frame = (net(x)[:, 1:].argmax(-1) == tags[:, 1:]).double().mean()
    assert acc_crf == 1.0
    assert acc_frame < 0.75


def test_bad_input_raises_one_line_errors() -> None:
    u, a, _, _ = rand_crf(2, 3, 2)
    cases = [
        (lambda: chain_crf_log_partition(u[:, :0], a), DataError, "length-0"),
        (lambda: chain_crf_log_partition(u, a, lengths=torch.tensor([3, 0])), DataError, "lengths"),
        (
            lambda: chain_crf_log_partition(u, a, mask=torch.tensor([[True, False, True]] * 2)),
            DataError,
            "prefix",
        ),
        (
            lambda: chain_crf_log_partition(u, a, mask=torch.zeros(2, 3, dtype=torch.bool)),
            DataError,
            "length-0",
        ),
        (lambda: chain_crf_nll(u, torch.tensor([[0, 1, 2], [0, 0, 0]]), a), DataError, "tags"),
        (lambda: chain_crf_nll(u, torch.tensor([[0, -1, 1], [0, 0, 0]]), a), DataError, "tags"),
        (lambda: chain_crf_nll(u, torch.zeros(2, 4, dtype=torch.long), a), ShapeError, "tags"),
        (lambda: chain_crf_log_partition(u, torch.zeros(3, 3)), ShapeError, "transitions"),
        (lambda: chain_crf_log_partition(u, a, start=torch.zeros(3)), ShapeError, "start"),
        (lambda: chain_crf_log_partition(u[0], a), ShapeError, "unary"),
        (lambda: chain_crf_log_partition(u.long(), a), ShapeError, "unary"),
        (
            lambda: chain_crf_log_partition(
                u, a, mask=torch.ones(2, 3, dtype=torch.bool), lengths=torch.tensor([3, 3])
            ),
            ConfigError,
            "mask, lengths",
        ),
        (
            lambda: chain_crf_nll(u, torch.zeros(2, 3, dtype=torch.long), a, reduction="max"),
            ConfigError,
            "reduction",
        ),
        (lambda: ChainCRF(0), ConfigError, "num_tags"),
    ]
    for fn, exc, word in cases:
        with pytest.raises(exc) as info:
            fn()
        assert isinstance(info.value, VisrepError)
        assert word in str(info.value) and "\n" not in str(info.value)
    # padded steps may hold any tag id (they are ignored)
    tags = torch.tensor([[0, 1, 1], [1, 99, -5]])
    assert chain_crf_nll(u, tags, a, lengths=torch.tensor([3, 1])).isfinite()
