"""Dense CRF: exact reference, windowed message passing, module, gradients and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import visrep.models.layers.crf as crf_mod
from visrep.errors import ConfigError, ShapeError
from visrep.models.layers.crf import DenseCRF, dense_crf, dense_crf_exact, potts_compatibility

# Weak enough kernels that Q stays away from one-hot, so comparisons are informative.
_SOFT = dict(theta_alpha=3.0, theta_beta=60.0, theta_gamma=2.0, w_appearance=0.7, w_smoothness=0.4)


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _inputs(b: int, labels: int, h: int, w: int, chans: int = 3, dtype=torch.float64):
    return torch.randn(b, labels, h, w, dtype=dtype), torch.rand(b, chans, h, w, dtype=dtype)


def _naive(unary, image, iterations, theta_alpha, theta_beta, theta_gamma, w1, w2, mu):
    """Algorithm 1 written pair by pair (independent of the vectorised code)."""
    b, n_labels, h, w = unary.shape
    u = unary.reshape(b, n_labels, h * w)
    pos = torch.tensor([[y, x] for y in range(h) for x in range(w)], dtype=unary.dtype)
    out = []
    for s in range(b):
        col = image[s].reshape(image.shape[1], -1).T * 255.0
        k = torch.zeros(h * w, h * w, dtype=unary.dtype)
        for i in range(h * w):
            for j in range(h * w):
                if i != j:
                    dp = ((pos[i] - pos[j]) ** 2).sum()
                    di = ((col[i] - col[j]) ** 2).sum()
                    k[i, j] = w1 * torch.exp(
                        -dp / (2 * theta_alpha**2) - di / (2 * theta_beta**2)
                    ) + w2 * torch.exp(-dp / (2 * theta_gamma**2))
        q = torch.softmax(-u[s], 0)
        for _ in range(iterations):
            m = q @ k.T  # m[l, i] = sum_j k[i, j] q[l, j]
            q = torch.softmax(-u[s] - mu.to(m.dtype) @ m, 0)
        out.append(q)
    return torch.stack(out).view(b, n_labels, h, w)


def test_exact_matches_pairwise_loop() -> None:
    u, im = _inputs(2, 3, 3, 4)
    mu = torch.rand(3, 3, dtype=torch.float64)
    got = dense_crf_exact(u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.4, compatibility=mu)
    want = _naive(u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.4, mu)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    potts = dense_crf_exact(u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.4)
    torch.testing.assert_close(potts, _naive(u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.4, 1 - torch.eye(3)))


def test_exact_chunking_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    u, im = _inputs(2, 4, 5, 7)
    whole = dense_crf_exact(u, im, **_SOFT)
    monkeypatch.setattr(crf_mod, "_EXACT_BLOCK", 2 * 35 * 3)  # chunks of 3 rows, ragged end
    torch.testing.assert_close(dense_crf_exact(u, im, **_SOFT), whole, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("hw", [(1, 1), (1, 6), (3, 4), (5, 7), (7, 5), (6, 6)])
@pytest.mark.parametrize("potts", [True, False])
def test_window_covering_image_equals_exact(hw: tuple[int, int], potts: bool) -> None:
    h, w = hw
    u, im = _inputs(2, 3, h, w, chans=2)
    mu = None if potts else torch.randn(3, 3, dtype=torch.float64)
    exact = dense_crf_exact(u, im, iterations=4, compatibility=mu, **_SOFT)
    for r in (max(h, w) - 1, max(h, w) + 3):
        fast = dense_crf(u, im, iterations=4, compatibility=mu, window=max(r, 1), **_SOFT)
        torch.testing.assert_close(fast, exact, rtol=1e-10, atol=1e-12)


def test_window_is_close_on_larger_image() -> None:
    # Both kernels' spatial std is 2 px; a window of 4 std truncates very little kernel mass.
    # Measured max |Q_window - Q_exact| here: r=4: 0.97, r=6: 0.12, r=8: 5.3e-4, r=10: 3e-6.
    u, im = _inputs(1, 5, 24, 28)
    opts = dict(_SOFT, theta_alpha=2.0, w_appearance=1.0, w_smoothness=1.0)
    exact = dense_crf_exact(u, im, **opts)
    errs = [(dense_crf(u, im, window=r, **opts) - exact).abs().max().item() for r in (6, 8, 10)]
    assert errs[1] < 2e-3 and errs[2] < 1e-5, errs
    assert errs[0] > errs[1] > errs[2], errs


def test_window_none_is_exact_and_default_runs() -> None:
    u, im = _inputs(1, 3, 4, 5)
    torch.testing.assert_close(dense_crf(u, im, window=None), dense_crf_exact(u, im))
    q = dense_crf(u.float(), im.float())  # paper defaults, window 9
    assert q.shape == u.shape and q.dtype == torch.float32 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(1, 4, 5))


@pytest.mark.parametrize("window", [2, None])
def test_zero_pairwise_or_zero_iterations_is_softmax(window: int | None) -> None:
    u, im = _inputs(2, 4, 5, 6)
    want = torch.softmax(-u, 1)
    zero = dense_crf(u, im, w_appearance=0.0, w_smoothness=0.0, window=window)
    torch.testing.assert_close(zero, want)
    torch.testing.assert_close(dense_crf(u, im, iterations=0, window=window), want)


@pytest.mark.parametrize("window", [3, None])
def test_uniform_image_potts_removes_isolated_pixel(window: int | None) -> None:
    # Label 0 is preferred everywhere except one pixel that the unary alone labels 1.
    u = torch.zeros(1, 2, 7, 7)
    u[0, 1] = 0.5
    u[0, 1, 3, 3] = -0.5
    image = torch.full((1, 3, 7, 7), 0.4)
    assert torch.softmax(-u, 1).argmax(1)[0, 3, 3] == 1
    q = dense_crf(u, image, w_appearance=1.0, w_smoothness=1.0, window=window)
    assert (q.argmax(1) == 0).all()


def test_logits_sign_convention() -> None:
    logits, im = _inputs(1, 4, 5, 5)
    a = dense_crf(-logits, im, **_SOFT, window=3)
    b = dense_crf(-torch.log_softmax(logits, 1), im, **_SOFT, window=3)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("window", [2, None])
def test_module_equals_function(window: int | None) -> None:
    u, im = _inputs(2, 3, 6, 5, dtype=torch.float32)
    fixed = DenseCRF(iterations=3, window=window, **_SOFT)
    torch.testing.assert_close(fixed(u, im), dense_crf(u, im, 3, window=window, **_SOFT))
    layer = DenseCRF(num_labels=3, iterations=3, window=window, learnable=True, **_SOFT)
    with torch.no_grad():
        layer.compatibility.add_(0.1 * torch.randn(3, 3))
        layer.w_smoothness.fill_(0.9)
    want = dense_crf(
        u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.9, compatibility=layer.compatibility.detach(),
        window=window,
    )  # fmt: skip
    torch.testing.assert_close(layer(u, im), want)
    assert "learnable=True" in repr(layer)


def test_learnable_layer_trains_every_parameter() -> None:
    layer = DenseCRF(num_labels=4, iterations=2, window=2, learnable=True, **_SOFT)
    torch.testing.assert_close(layer.compatibility.detach(), potts_compatibility(4))
    assert {n for n, _ in layer.named_parameters()} == {
        "w_appearance",
        "w_smoothness",
        "compatibility",
    }
    u, im = _inputs(2, 4, 6, 6, dtype=torch.float32)
    u.requires_grad_(True)
    y = torch.randint(0, 4, (2, 6, 6))
    torch.nn.functional.nll_loss(layer(u, im).log(), y).backward()
    for p in [u, *layer.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("window", [1, None])
def test_gradcheck_unary_and_parameters(window: int | None) -> None:
    u, im = _inputs(1, 3, 3, 4)
    w1 = torch.tensor(0.7, dtype=torch.float64)
    w2 = torch.tensor(0.4, dtype=torch.float64)
    mu = potts_compatibility(3, torch.float64) + 0.1 * torch.randn(3, 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (u, w1, w2, mu))

    def f(u_, w1_, w2_, mu_):
        return dense_crf(u_, im, 3, 3.0, 60.0, 2.0, w1_, w2_, compatibility=mu_, window=window)

    assert gradcheck(f, inputs, eps=1e-6, atol=1e-8)


def test_bad_inputs_raise_one_line() -> None:
    u, im = _inputs(1, 3, 4, 5)
    cases = [
        (ShapeError, "unary", lambda: dense_crf(u[0], im)),
        (ShapeError, "unary", lambda: dense_crf(u.long(), im)),
        (ShapeError, "image", lambda: dense_crf(u, im[:, :, :3])),
        (ShapeError, "image", lambda: dense_crf_exact(u, im.repeat(2, 1, 1, 1))),
        (ShapeError, "compatibility", lambda: dense_crf(u, im, compatibility=torch.eye(2))),
        (ShapeError, "w_appearance", lambda: dense_crf(u, im, w_appearance=torch.ones(2))),
        (ConfigError, "iterations", lambda: dense_crf(u, im, iterations=-1)),
        (ConfigError, "theta_beta", lambda: dense_crf(u, im, theta_beta=0.0)),
        (ConfigError, "theta_alpha", lambda: dense_crf_exact(u, im, theta_alpha=float("nan"))),
        (ConfigError, "window", lambda: dense_crf(u, im, window=0)),
        (ConfigError, "w_smoothness", lambda: dense_crf(u, im, w_smoothness=float("inf"))),
        (ConfigError, "num_labels", lambda: DenseCRF(learnable=True)),
        (ConfigError, "window", lambda: DenseCRF(window=-2)),
        (ConfigError, "theta_gamma", lambda: DenseCRF(theta_gamma=-1.0)),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name) as info:
            call()
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- window fast path
def _reference_window(
    unary, image, iterations, theta_alpha, theta_beta, theta_gamma, w1, w2, mu, r
):
    """The previous windowed implementation, kept as the reference: one weight per offset of the
    full window and autograd through every shifted slice."""
    b, n_labels, h, w = unary.shape
    ry, rx = min(r, h - 1), min(r, w - 1)
    colour = image * (255.0 / theta_beta)
    cp = torch.nn.functional.pad(colour, (rx, rx, ry, ry))
    pairs = []
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            if dy or dx:
                other = cp[:, :, ry + dy : ry + dy + h, rx + dx : rx + dx + w]
                spatial = (dy * dy + dx * dx) / (2.0 * theta_alpha**2)
                pairs.append(
                    ((dy, dx), torch.exp(-0.5 * (colour - other).pow(2).sum(1, True) - spatial))
                )
    g = torch.exp(-(torch.arange(-r, r + 1, dtype=unary.dtype) ** 2) / (2.0 * theta_gamma**2))
    q = torch.softmax(-unary, 1)
    for _ in range(iterations):
        qp = torch.nn.functional.pad(q, (rx, rx, ry, ry))
        m_a = sum(
            wgt * qp[:, :, ry + dy : ry + dy + h, rx + dx : rx + dx + w] for (dy, dx), wgt in pairs
        )
        flat = q.reshape(b * n_labels, 1, h, w)
        m_s = torch.nn.functional.conv2d(flat, g.view(1, 1, -1, 1), padding=(r, 0))
        m_s = torch.nn.functional.conv2d(m_s, g.view(1, 1, 1, -1), padding=(0, r))
        m = w1 * m_a + w2 * (m_s.view(b, n_labels, h, w) - q)
        q = torch.softmax(-unary - torch.einsum("kl,bl...->bk...", mu, m), 1)
    return q


@pytest.mark.parametrize(("hw", "r"), [((9, 11), 2), ((8, 13), 3), ((5, 9), 4)])
def test_window_matches_previous_implementation_values_and_gradients(hw, r) -> None:
    h, w = hw
    u, im = _inputs(2, 3, h, w)
    w1 = torch.tensor(0.7, dtype=torch.float64)
    w2 = torch.tensor(0.4, dtype=torch.float64)
    mu = potts_compatibility(3, torch.float64) + 0.1 * torch.randn(3, 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (u, w1, w2, mu))
    new = dense_crf(u, im, 3, 3.0, 60.0, 2.0, w1, w2, compatibility=mu, window=r)
    old = _reference_window(u, im, 3, 3.0, 60.0, 2.0, w1, w2, mu, r)
    torch.testing.assert_close(new, old, rtol=1e-10, atol=1e-12)
    gy = torch.randn_like(new)
    for a, b in zip(
        torch.autograd.grad(new, inputs, gy), torch.autograd.grad(old, inputs, gy), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_window_filter_is_the_symmetric_truncated_kernel() -> None:
    h, w, r, ta, tb = 5, 6, 2, 3.0, 60.0
    im = torch.rand(1, 3, h, w, dtype=torch.float64)
    kernel = crf_mod._WindowKernel(im, r, ta, tb, 2.0)
    assert len(kernel.offsets) == ((2 * r + 1) ** 2 - 1) // 2  # half the window is stored
    impulses = torch.eye(h * w, dtype=torch.float64).view(h * w, 1, h, w)
    kmat = kernel.filter_appearance(impulses).view(h * w, h * w)  # kmat[j, i] = k(i, j)
    pos = torch.tensor([[y, x] for y in range(h) for x in range(w)], dtype=torch.float64)
    col = im[0].reshape(3, -1).T * 255.0
    d = pos[:, None] - pos[None]
    want = torch.exp(
        -(d**2).sum(-1) / (2 * ta**2) - ((col[:, None] - col[None]) ** 2).sum(-1) / (2 * tb**2)
    )
    inside = (d.abs() <= r).all(-1) & ~torch.eye(h * w, dtype=torch.bool)
    torch.testing.assert_close(kmat, want * inside, rtol=1e-12, atol=1e-15)
    assert torch.equal(kmat, kmat.T)  # each weight serves both directions
    smat = kernel.filter_smoothness(impulses).view(h * w, h * w)
    want_s = torch.exp(-(d**2).sum(-1) / (2 * 2.0**2)) * inside
    torch.testing.assert_close(smat, want_s, rtol=1e-12, atol=1e-15)
    q = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    for filt in (kernel.appearance, kernel.smoothness):
        assert gradcheck(filt, (q,), eps=1e-6, atol=1e-8)
        assert gradgradcheck(filt, (q,), eps=1e-6, atol=1e-8)


def test_underflowing_weights_are_zero_not_subnormal() -> None:
    im = torch.zeros(2, 3, 12, 12)
    im[:, :, :, ::2] = 1.0  # stripes: colour distance 255 * sqrt(3) between neighbours
    wgt = crf_mod._WindowKernel(im, 4, 80.0, 5.0, 3.0).weights
    tiny = torch.finfo(torch.float32).tiny
    assert ((wgt == 0) | (wgt >= tiny)).all() and (wgt == 0).any() and (wgt > 0.5).any()


@pytest.mark.parametrize("window", [2, None])
def test_normalize_after_constant_field_is_a_fixed_point(window: int | None) -> None:
    b, n_labels, h, w = 2, 3, 6, 7
    _, im = _inputs(b, n_labels, h, w)
    c = torch.rand(1, n_labels, 1, 1, dtype=torch.float64).expand(b, n_labels, h, w)
    args = (im, b, n_labels, window, 3.0, 60.0, 2.0, 0.7, 0.4)
    m = crf_mod._message_fn(*args, "after")(c)  # each kernel's messages equal the constant
    torch.testing.assert_close(m, 1.1 * c, rtol=1e-12, atol=1e-14)
    assert (crf_mod._message_fn(*args, "none")(c) - 1.1 * c).abs().max() > 0.1
    # A spatially constant unary then keeps Q spatially constant, following the one-pixel
    # recursion q <- softmax(-u - mu (w1 + w2) q) of the compatibility transform.
    u0 = torch.randn(n_labels, dtype=torch.float64)
    mu = torch.randn(n_labels, n_labels, dtype=torch.float64)
    q = torch.softmax(-u0, 0)
    for _ in range(4):
        q = torch.softmax(-u0 - mu @ (1.1 * q), 0)
    unary = u0.view(1, -1, 1, 1).expand(b, -1, h, w)
    got = dense_crf(unary, im, 4, 3.0, 60.0, 2.0, 0.7, 0.4, mu, window=window, normalize="after")
    torch.testing.assert_close(got, q.view(1, -1, 1, 1).expand_as(got), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", [2, None])
def test_normalize_symmetric_eigenvector(window: int | None) -> None:
    # n^-1/2 K n^-1/2 maps sqrt(n) to itself, n = K 1 (the kernel's response to ones).
    _, im = _inputs(2, 1, 6, 7)
    args = (im, 2, 1, window, 3.0, 60.0, 2.0)
    for w1, w2 in ((1.0, 0.0), (0.0, 1.0)):
        n = crf_mod._message_fn(*args, w1, w2, "none")(torch.ones(2, 1, 6, 7, dtype=im.dtype))
        m = crf_mod._message_fn(*args, w1, w2, "symmetric")(n.sqrt())
        torch.testing.assert_close(m, n.sqrt(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hw", [(1, 6), (5, 7), (6, 6)])
@pytest.mark.parametrize("normalize", ["after", "symmetric"])
def test_normalized_window_covering_image_equals_exact(hw, normalize: str) -> None:
    h, w = hw
    u, im = _inputs(2, 3, h, w, chans=2)
    mu = torch.randn(3, 3, dtype=torch.float64)
    opts = dict(_SOFT, w_appearance=3.0, w_smoothness=2.0, normalize=normalize)
    exact = dense_crf_exact(u, im, iterations=4, compatibility=mu, **opts)
    fast = dense_crf(u, im, iterations=4, compatibility=mu, window=max(h, w) - 1, **opts)
    torch.testing.assert_close(fast, exact, rtol=1e-10, atol=1e-12)
    assert (
        exact - dense_crf_exact(u, im, iterations=4, compatibility=mu, **_SOFT)
    ).abs().max() > 1e-3


@pytest.mark.parametrize("window", [1, None])
@pytest.mark.parametrize("normalize", ["after", "symmetric"])
def test_gradcheck_normalized(window: int | None, normalize: str) -> None:
    u, im = _inputs(1, 3, 3, 4)
    w1 = torch.tensor(0.7, dtype=torch.float64)
    w2 = torch.tensor(0.4, dtype=torch.float64)
    mu = potts_compatibility(3, torch.float64) + 0.1 * torch.randn(3, 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (u, w1, w2, mu))

    def f(u_, w1_, w2_, mu_):
        return dense_crf(
            u_, im, 3, 3.0, 60.0, 2.0, w1_, w2_, mu_, window=window, normalize=normalize
        )

    assert gradcheck(f, inputs, eps=1e-6, atol=1e-8)


def test_normalized_module_equals_function() -> None:
    u, im = _inputs(2, 3, 6, 5, dtype=torch.float32)
    layer = DenseCRF(3, 3, window=2, learnable=True, normalize="after", **_SOFT)
    want = dense_crf(
        u, im, 3, 3.0, 60.0, 2.0, 0.7, 0.4, potts_compatibility(3), window=2, normalize="after"
    )
    torch.testing.assert_close(layer(u, im), want)
    assert "normalize='after'" in repr(layer)
    for exc_call in (
        lambda: dense_crf(u, im, normalize="sum"),
        lambda: dense_crf_exact(u, im, normalize=True),
        lambda: DenseCRF(normalize="both"),
    ):
        with pytest.raises(ConfigError, match="normalize must be one of none, after, symmetric"):
            exc_call()


def test_filter_chunks_are_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    u, im = _inputs(3, 3, 6, 7)
    w1 = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    u.requires_grad_(True)
    kernel = crf_mod._WindowKernel(im[:1], 2, 3.0, 60.0, 2.0)  # one image's kernel, 4 fields
    fields = torch.randn(4, 2, 6, 7, dtype=torch.float64)
    results = []
    for block in (crf_mod._FILTER_BLOCK, 1):  # all at once, then one image per chunk
        monkeypatch.setattr(crf_mod, "_FILTER_BLOCK", block)
        q = dense_crf(u, im, 3, 3.0, 60.0, 2.0, w1, 0.4, window=2, normalize="symmetric")
        grads = torch.autograd.grad(q, (u, w1), torch.ones_like(q))
        filtered = (kernel.filter_appearance(fields), kernel.filter_smoothness(fields))
        results.append((q, *grads, *filtered))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
