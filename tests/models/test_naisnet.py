"""NAIS-Net blocks, reprojections (Algorithms 1-2), adaptive depth and backbones."""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from visrep.errors import ConfigError, ShapeError
from visrep.models import create_backbone
from visrep.models.layers.naisnet import (
    NaisNetConvBlock,
    NaisNetFCBlock,
    conv_state_kernel,
    fc_state_matrix,
    iter_naisnet_blocks,
    naisnet_step,
    naisnet_unroll,
    reproject_,
    reproject_conv,
    reproject_fc,
)
from visrep.tasks.reprojection import NaisNetReprojection


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    # Tiny tensors: OpenMP threads only contend on a shared 2-core machine (100x slower convs).
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _offcentre_sums(w: torch.Tensor) -> torch.Tensor:
    c, p = w.shape[0], w.shape[-1] // 2
    i = torch.arange(c)
    return w.abs().flatten(1).sum(1) - w[i, i, p, p].abs()


# --------------------------------------------------------------------------- Algorithm 1
@pytest.mark.parametrize("shape", [(8, 8), (3, 8)])
def test_reproject_fc_enforces_bound(shape: tuple[int, int]) -> None:
    eps = 0.05
    R = 3.0 * torch.randn(*shape, dtype=torch.float64)
    Rt = reproject_fc(R, eps)
    fro = torch.linalg.matrix_norm(Rt.T @ Rt)
    assert fro <= 1 - 2 * eps + 1e-12
    assert torch.isclose(fro, torch.tensor(1 - 2 * eps, dtype=torch.float64))  # lands on the bound
    assert torch.allclose(Rt / R, (Rt / R).flatten()[0].expand_as(R))  # a pure rescaling of R


def test_reproject_fc_keeps_feasible_weights() -> None:
    R = 0.01 * torch.randn(6, 6)
    assert torch.equal(reproject_fc(R, 0.01), R)


def test_rescaling_gram_instead_of_r_breaks_the_bound() -> None:
    # Why Algorithm 1 rescales R: scaling R^T R by sqrt(delta)/sqrt(||R^T R||) does not bound it.
    eps, R = 0.01, 2.0 * torch.randn(5, 5, dtype=torch.float64)
    delta, G = 1 - 2 * eps, R.T @ R
    wrong = torch.linalg.matrix_norm(delta**0.5 * G / torch.linalg.matrix_norm(G) ** 0.5)
    right = torch.linalg.matrix_norm(reproject_fc(R, eps).T @ reproject_fc(R, eps))
    assert wrong > delta and right <= delta + 1e-12


def test_fc_state_matrix_is_negative_definite() -> None:
    R = reproject_fc(torch.randn(4, 4, dtype=torch.float64), 0.1)
    ev = torch.linalg.eigvalsh(fc_state_matrix(R, 0.1))
    assert ev.max() <= -0.1 + 1e-12 and ev.min() >= -0.9 - 1e-12  # [-(1 - eps), -eps]


# --------------------------------------------------------------------------- Algorithm 2
def test_reproject_conv_centre_clip_and_offcentre_bound() -> None:
    eps, eta, c = 0.01, 0.1, 4
    w = torch.randn(c, c, 3, 3, dtype=torch.float64)
    delta = torch.tensor([-2.0, -0.3, 0.5, 5.0], dtype=torch.float64)
    w0, delta0 = w.clone(), delta.clone()
    w2, d2 = reproject_conv(w, delta, eps, eta)
    expected = torch.tensor([-0.9, -0.3, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(d2, expected)
    i = torch.arange(c)
    assert torch.allclose(w2[i, i, 1, 1], -1.0 - expected)
    assert (_offcentre_sums(w2) <= 1 - eps - expected.abs() + 1e-12).all()
    assert torch.equal(w, w0) and torch.equal(delta, delta0)  # inputs not mutated
    # maps whose off-centre taps were over budget land exactly on it
    over = _offcentre_sums(w) > 1 - eps - expected.abs()
    assert over.any()
    assert torch.allclose(_offcentre_sums(w2)[over], (1 - eps - expected.abs())[over])


def test_reproject_conv_keeps_feasible_offcentre_taps() -> None:
    w = 0.001 * torch.randn(3, 3, 5, 5)
    delta = torch.tensor([0.1, -0.2, 0.0])
    w2, d2 = reproject_conv(w, delta, 0.01, 0.05)
    i = torch.arange(3)
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[i, i, 2, 2] = False
    assert torch.equal(w2[mask], w[mask]) and torch.equal(d2, delta)


def test_conv_state_kernel_sets_only_the_centre_self_taps() -> None:
    w, d = torch.randn(3, 3, 3, 3), torch.tensor([0.1, 0.2, -0.3])
    k = conv_state_kernel(w, d)
    i = torch.arange(3)
    assert torch.allclose(k[i, i, 1, 1], -1.0 - d)
    k[i, i, 1, 1] = w[i, i, 1, 1]
    assert torch.equal(k, w)


def test_reproject_module_and_unconstrained_switch() -> None:
    model = nn.Sequential(
        NaisNetFCBlock(4, 6), NaisNetConvBlock(2, 3), NaisNetFCBlock(6, 6, unconstrained=True)
    )
    with torch.no_grad():
        model[0].R.mul_(10)
        model[1].weight.mul_(10)
        model[1].delta.fill_(3.0)
        model[2].A.mul_(10)
    a_before = model[2].A.clone()
    assert reproject_(model) == 2
    R = model[0].R
    assert torch.linalg.matrix_norm(R.T @ R) <= 1 - 2 * 0.01 + 1e-5
    assert torch.allclose(model[1].delta, torch.full((3,), 0.95))
    assert (_offcentre_sums(model[1].weight) <= 1 - 0.01 - 0.95 + 1e-6).all()
    assert torch.equal(model[2].A, a_before)
    assert [n for n, _ in iter_naisnet_blocks(model)] == ["0", "1", "2"]


# --------------------------------------------------------------------------- dynamics
def test_module_equals_function() -> None:
    b = NaisNetFCBlock(5, 7, steps=6, activation="tanh").eval()
    u = torch.randn(4, 5)
    x, depth = naisnet_unroll(
        torch.zeros(4, 7), b.input(u), lambda s: s @ fc_state_matrix(b.R, b.eps).T, 6, 1.0, "tanh"
    )
    assert torch.allclose(b(u), x) and torch.equal(b.last_depth, depth)
    s = torch.randn(4, 7)
    assert torch.allclose(
        b.step(s, b.input(u)), naisnet_step(s, b.input(u), b.state_op, 1.0, "tanh")
    )


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_constant_input_reaches_input_dependent_fixed_point(kind: str) -> None:
    if kind == "fc":
        b = NaisNetFCBlock(3, 6, eps=0.2, activation="tanh").double()
        u1, u2 = torch.randn(2, 3, dtype=torch.float64).split(1)
    else:
        b = NaisNetConvBlock(2, 3, eps=0.2, eta=0.3, activation="tanh").double()
        u1, u2 = torch.randn(2, 2, 4, 4, dtype=torch.float64).split(1)

    def run(u: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        d = b.drive(u)
        x = torch.zeros_like(d) if x0 is None else x0
        for _ in range(300):
            x = b.step(x, d)
        assert (b.step(x, d) - x).norm() < 1e-9  # converged: a fixed point
        return x

    with torch.no_grad():
        x1, x2 = run(u1), run(u2)
        assert (x1 - x2).norm() > 1e-2  # non-autonomous: the attractor depends on the input
        # tanh: one equilibrium whatever the initial state (Sec. 4)
        assert torch.allclose(run(u1, 3 * torch.randn_like(x1)), x1, atol=1e-8)


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_adaptive_depth_stops_converged_samples(kind: str) -> None:
    tol, kmax = 1e-3, 200
    scales = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 3.0], dtype=torch.float64)
    if kind == "fc":
        b = NaisNetFCBlock(3, 6, steps=4, max_steps=kmax, tol=tol, eps=0.2, activation="tanh")
        u = torch.randn(5, 3, dtype=torch.float64) * scales[:, None]
    else:
        b = NaisNetConvBlock(
            2, 3, steps=4, max_steps=kmax, tol=tol, eps=0.2, eta=0.3, activation="tanh"
        )
        u = torch.randn(5, 2, 4, 4, dtype=torch.float64) * scales[:, None, None, None]
    b = b.double().eval()
    with torch.no_grad():
        x = b(u)
        depth = b.last_depth
        # reference: fixed K_max unroll, recording every state
        d, s, states, norms = b.drive(u), torch.zeros_like(b.drive(u)), [], []
        for _ in range(kmax):
            sn = b.step(s, d)
            norms.append((sn - s).flatten(1).norm(dim=1))
            states.append(sn)
            s = sn
    norms_t, states_t = torch.stack(norms, 1), torch.stack(states, 1)
    below = norms_t < tol
    expected = torch.where(below.any(1), below.float().argmax(1) + 1, kmax)
    print(kind, depth.tolist())
    assert torch.equal(depth, expected)  # stops right after the first step below tol
    assert depth.min() < depth.max() < kmax  # pattern-dependent, and earlier than K_max
    assert torch.allclose(x, states_t[torch.arange(5), depth - 1], atol=1e-12)
    assert ((x - s).flatten(1).norm(dim=1) < 10 * tol).all()  # matches the K_max result within tol
    b.train()
    b(u)
    assert torch.equal(b.last_depth, torch.full((5,), 4))  # training: fixed K


def test_adaptive_train_is_differentiable() -> None:
    b = NaisNetFCBlock(3, 4, steps=50, tol=1e-2, eps=0.2, adaptive_train=True)
    u = torch.randn(6, 3) * torch.logspace(-3, 0, 6)[:, None]
    b(u).sum().backward()
    assert b.last_depth.max() < 50 and b.R.grad is not None and b.R.grad.abs().sum() > 0


def test_relative_tol_stops_small_relative_updates_only() -> None:
    # A = -I, tanh, h = 1: both samples move by tanh(0.05) ~ 0.05 in the first stage, which is
    # 0.5% of sample 0's state (norm 10) but 50% of sample 1's (norm 0.1).
    x0 = torch.tensor([[10.0], [0.1]], dtype=torch.float64)
    drive = x0 + 0.05
    kw = {"state_op": lambda x: -x, "steps": 6, "h": 1.0, "activation": "tanh", "tol": 0.01}
    _, rel = naisnet_unroll(x0, drive, relative=True, **kw)
    _, ab = naisnet_unroll(x0, drive, relative=False, **kw)
    assert rel[0] == 1 and rel[1] > 1  # relative: only the small-relative update stops
    assert torch.equal(ab[0], ab[1]) and ab[0] > 1  # absolute: the same step norm, same depth
    # a state at 0 (x(0) = 0) never stops on a non-zero first update, however small
    _, d0 = naisnet_unroll(torch.zeros(1, 1), torch.full((1, 1), 1e-6), lambda x: -x, 3, 1.0,
                           "tanh", tol=0.5, relative=True)  # fmt: skip
    assert d0.item() > 1


@pytest.mark.parametrize("relative", [False, True])
def test_stopped_samples_are_frozen_at_their_stopping_state(relative: bool) -> None:
    b = NaisNetFCBlock(4, 6, eps=0.2, h=0.5, activation="tanh").double().eval()
    u = (
        torch.randn(8, 4, dtype=torch.float64)
        * torch.logspace(-2, 0.5, 8, dtype=torch.float64)[:, None]
    )
    d, op = b.drive(u), b.operator()
    tol = 0.05 if relative else 3e-2
    with torch.no_grad():
        x, depth = naisnet_unroll(torch.zeros_like(d), d, op, 40, 0.5, "tanh", tol, relative)
        xl, depth_l = naisnet_unroll(torch.zeros_like(d), d, op, 80, 0.5, "tanh", tol, relative)
        # reference: every sample unrolled on its own for exactly its depth, no stopping rule
        ref = torch.stack(
            [naisnet_unroll(torch.zeros_like(d[i : i + 1]), d[i : i + 1], op, int(k), 0.5,
                            "tanh")[0][0] for i, k in enumerate(depth)]
        )  # fmt: skip
    stopped = depth < 40
    assert depth.min() < depth.max() and stopped.sum() >= 6
    assert torch.allclose(x, ref, rtol=0, atol=1e-12)
    # a larger K_max leaves the samples that stopped before K untouched, bit for bit
    assert torch.equal(depth_l[stopped], depth[stopped]) and torch.equal(xl[stopped], x[stopped])
    assert (depth_l[~stopped] > 40).all()


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_tanh_h_and_init_options_match_hand_unroll(kind: str) -> None:
    h, k = 0.3, 4
    if kind == "fc":
        b = NaisNetFCBlock(3, 5, steps=k, h=h, activation="tanh", init="input").double()
        u = torch.randn(2, 3, dtype=torch.float64)
        with torch.no_grad():
            A, d = fc_state_matrix(b.R, b.eps), u @ b.input.weight.T + b.input.bias
            x = d.clone()  # x(0) = B u + b
            for _ in range(k):
                x = x + h * torch.tanh(x @ A.T + d)
    else:
        b = NaisNetConvBlock(2, 3, steps=k, h=h, activation="relu", init="zero").double()
        u = torch.randn(2, 2, 5, 5, dtype=torch.float64)
        with torch.no_grad():
            C = conv_state_kernel(b.weight, b.delta)
            d = nn.functional.conv2d(u, b.input.weight, b.input.bias, padding=1)
            x = torch.zeros_like(d)
            for _ in range(k):
                x = x + h * torch.relu(nn.functional.conv2d(x, C, padding=1) + d)
    with torch.no_grad():
        assert torch.allclose(b.eval()(u), x, atol=1e-12)
        assert torch.allclose(b.train()(u), x, atol=1e-12)


def test_random_depth_training_is_seeded_and_reproducible() -> None:
    b = NaisNetConvBlock(2, 3, steps=6, max_steps=9, tol=None, random_depth=2)
    u = torch.randn(3, 2, 4, 4)

    def draws(seed: int) -> tuple[list[int], torch.Tensor]:
        torch.manual_seed(seed)
        ks = []
        for _ in range(20):
            y = b(u)
            ks.append(int(b.last_depth[0]))
        return ks, y

    ks, y = draws(1)
    ks2, y2 = draws(1)
    assert ks == ks2 and torch.equal(y, y2)  # same seed, same depths and output
    assert set(ks) <= set(range(2, 7)) and len(set(ks)) >= 3  # K ~ U{2..6}, one K per batch
    assert draws(2)[0] != ks
    y.sum().backward()
    assert b.weight.grad is not None and b.weight.grad.abs().sum() > 0
    b.eval()
    b(u)
    assert torch.equal(b.last_depth, torch.full((3,), 9))  # inference: K_max, no random draw


def test_gradcheck_fc_and_conv() -> None:
    kw = {"dtype": torch.float64, "requires_grad": True}
    u, W, bias, R = (
        torch.randn(2, 3, **kw),
        torch.randn(4, 3, **kw),
        torch.randn(4, **kw),
        torch.randn(4, 4, **kw),
    )

    def fc(u, W, bias, R):
        drive = u @ W.T + bias
        return naisnet_unroll(
            torch.zeros_like(drive), drive, lambda x: x @ fc_state_matrix(R, 0.1).T, 4, 0.5, "tanh"
        )[0]

    assert gradcheck(fc, (u, W, bias, 0.3 * R))
    U, C, d = (
        torch.randn(1, 2, 3, 3, **kw),
        0.2 * torch.randn(2, 2, 3, 3, **kw),
        0.1 * torch.randn(2, **kw),
    )

    def conv(U, C, d):
        k = conv_state_kernel(C, d)
        return naisnet_unroll(
            torch.zeros_like(U),
            U,
            lambda x: torch.nn.functional.conv2d(x, k, padding=1),
            3,
            1.0,
            "tanh",
        )[0]

    assert gradcheck(conv, (U, C, d))


def test_bad_options_and_shapes_raise() -> None:
    with pytest.raises(ConfigError, match="activation"):
        NaisNetFCBlock(3, 4, activation="gelu")
    with pytest.raises(ConfigError, match="kernel_size"):
        NaisNetConvBlock(3, 4, kernel_size=4)
    with pytest.raises(ConfigError, match="h must be"):
        NaisNetFCBlock(3, 4, h=1.5)
    with pytest.raises(ConfigError, match="eta"):
        NaisNetConvBlock(3, 4, eps=0.1, eta=0.05)
    with pytest.raises(ConfigError, match="eps"):
        NaisNetFCBlock(3, 4, eps=0.6)
    with pytest.raises(ConfigError, match="rank"):
        NaisNetFCBlock(3, 4, rank=5)
    with pytest.raises(ConfigError, match="tol_mode"):
        NaisNetFCBlock(3, 4, tol_mode="rel")
    with pytest.raises(ConfigError, match="init"):
        NaisNetConvBlock(3, 4, init="u")
    with pytest.raises(ConfigError, match="random_depth"):
        NaisNetFCBlock(3, 4, steps=3, random_depth=4)
    NaisNetFCBlock(3, 4, h=1.5, unconstrained=True)  # allowed without the guarantee
    with pytest.raises(ShapeError, match=r"\(B, 3\)"):
        NaisNetFCBlock(3, 4)(torch.randn(2, 5))
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\)"):
        NaisNetConvBlock(3, 4)(torch.randn(2, 2, 4, 4))


# --------------------------------------------------------------------------- backbones
@pytest.mark.parametrize(
    ("name", "kw", "size"),
    [
        ("naisnet", {}, 8),
        ("naisnet", {"steps": 2, "channels": (8, 16)}, 32),
        ("naisnet_fc", {"width": 16}, 8),
        ("naisnet", {"unconstrained": True, "activation": "tanh", "steps": 2}, 8),
        ("naisnet", {"tol_mode": "relative", "init": "input", "random_depth": 2, "h": 0.5}, 8),
        ("naisnet_fc", {"width": 8, "tol_mode": "relative", "init": "input", "random_depth": 1}, 8),
    ],
)
def test_backbone_shapes_gradients_reset(name: str, kw: dict, size: int) -> None:
    m = create_backbone(name, in_chans=3, num_classes=5, img_size=size, **kw)
    x = torch.randn(2, 3, size, size)
    z = m.forward_features(x)
    assert z.shape[:2] == (2, m.num_features)
    y = m(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    assert m.forward_head(z, pre_logits=True).shape == (2, m.num_features)
    y.sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    m.reset_classifier(7)
    assert m(x).shape == (2, 7)
    m.reset_classifier(0)
    assert m(x).shape == (2, m.num_features)
    m.eval()
    m(x)
    depths = m.last_depths()
    assert depths and all(d.shape == (2,) for d in depths.values())
    for _, b in iter_naisnet_blocks(m):  # every block got the backbone's unroll options
        assert (b.tol_mode, b.init, b.random_depth) == (
            kw.get("tol_mode", "absolute"),
            kw.get("init", "zero"),
            kw.get("random_depth"),
        )


def test_backbone_options_checked() -> None:
    with pytest.raises(ConfigError, match="img_size"):
        create_backbone("naisnet_fc", in_chans=1, num_classes=10)
    with pytest.raises(ConfigError, match="no option"):
        create_backbone("naisnet", in_chans=1, num_classes=10, widht=3)


# --------------------------------------------------------------------------- Lightning callback
class _Task(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = create_backbone(
            "naisnet_fc", in_chans=1, num_classes=3, img_size=4, width=8, steps=3
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=50.0)  # large steps leave the stable region


@pytest.mark.parametrize("with_callback", [True, False])
def test_callback_reprojects_after_optimizer_steps(with_callback: bool, tmp_path) -> None:
    data = torch.utils.data.TensorDataset(torch.randn(12, 1, 4, 4), torch.randint(0, 3, (12,)))
    task = _Task()
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[NaisNetReprojection()] if with_callback else [],
    )
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    fro = [torch.linalg.matrix_norm(b.R.T @ b.R).item() for _, b in iter_naisnet_blocks(task)]
    if with_callback:
        assert max(fro) <= 1 - 2 * 0.01 + 1e-5
    else:
        assert max(fro) > 1 - 2 * 0.01  # the test is meaningful: training alone leaves the region
