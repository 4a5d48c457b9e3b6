"""FGSM, PGD and DeepFool: parity with torchattacks and captum, analytic cases, invariants, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from visrep.analysis.robustness import (
    FGSM,
    PGD,
    DeepFool,
    DeepFoolResult,
    attack_accuracy,
    deepfool,
    deepfool_accuracy,
    fgsm,
    perturbation_norms,
    pgd,
    rho_adv,
)
from visrep.errors import ConfigError, DataError, ShapeError

try:  # test-only reference; installed with --no-deps (its metadata pins an old requests)
    import torchattacks
except ImportError:
    torchattacks = None
needs_torchattacks = pytest.mark.skipif(torchattacks is None, reason="torchattacks not installed")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # module scope: set before the model below is trained
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small tanh MLP trained on 1,400 digits; returns it (eval) with 64 held-out digits."""
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x[:1400]), y[:1400]).backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, x[1400:1464], y[1400:1464]


def _ce_none() -> nn.Module:
    return nn.CrossEntropyLoss(reduction="none")


# ------------------------------------------------------------------------------------- FGSM/PGD
def test_model_is_trained(digits_model):
    net, x, y = digits_model
    assert (net(x).argmax(1) == y).float().mean() > 0.85


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@needs_torchattacks
def test_fgsm_matches_torchattacks_and_captum(digits_model):
    from captum.robust import FGSM as CaptumFGSM  # noqa: N811

    net, x, y = digits_model
    ours = fgsm(net, x, y, eps=0.1)
    assert torch.equal(ours, torchattacks.FGSM(net, eps=0.1)(x, y))
    ref = CaptumFGSM(net, loss_func=_ce_none(), lower_bound=0.0, upper_bound=1.0)
    ref.zero_thresh = 0.0  # captum leaves pixels with |grad| < 1e-6 unperturbed by default
    assert torch.equal(ours, ref.perturb(x.clone(), 0.1, y))
    assert (ours - x).abs().max() == pytest.approx(0.1, abs=1e-6)


def test_fgsm_l2_is_the_normalised_gradient(digits_model):
    net, x, y = digits_model
    x = 0.25 + 0.5 * x  # interior pixels: no clamping
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xr), y), xr)
    expected = x + 0.05 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    ours = fgsm(net, x, y, eps=0.05, norm="l2")
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(perturbation_norms(ours - x), torch.full((len(x),), 0.05))


def test_fgsm_default_targets_are_the_predictions(digits_model):
    net, x, _ = digits_model
    assert torch.equal(fgsm(net, x, eps=0.05), fgsm(net, x, net(x).argmax(1), eps=0.05))


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@needs_torchattacks
def test_pgd_linf_matches_torchattacks_and_captum(digits_model):
    from captum.robust import PGD as CaptumPGD  # noqa: N811

    net, x, y = digits_model
    ours = pgd(net, x, y, eps=0.1, step_size=0.02, steps=10, random_start=False)
    ref = torchattacks.PGD(net, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    assert torch.equal(ours, ref)
    cap = CaptumPGD(net, loss_func=_ce_none(), lower_bound=0.0, upper_bound=1.0)
    cap.fgsm.zero_thresh = 0.0
    assert torch.equal(ours, cap.perturb(x.clone(), 0.1, 0.02, 10, y))
    # the same random start: both draw uniform(-eps, eps) from torch's global generator
    torch.manual_seed(3)
    ours = pgd(net, x, y, eps=0.1, step_size=0.02, steps=5)
    torch.manual_seed(3)
    ref = torchattacks.PGD(net, eps=0.1, alpha=0.02, steps=5, random_start=True)(x, y)
    assert torch.equal(ours, ref)


@needs_torchattacks
def test_pgd_l2_matches_torchattacks(digits_model):
    net, x, y = digits_model
    ours = pgd(net, x, y, eps=1.0, step_size=0.2, steps=10, norm="l2", random_start=False)
    ref = torchattacks.PGDL2(net, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 0.5)])
def test_pgd_stays_in_ball_and_box_and_beats_the_clean_loss(digits_model, norm, eps):
    net, x, y = digits_model
    g = torch.Generator().manual_seed(0)
    adv = pgd(net, x, y, eps=eps, steps=10, norm=norm, generator=g)
    assert adv.min() >= 0 and adv.max() <= 1
    assert perturbation_norms(adv - x, norm).max() <= eps + 1e-5
    assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y)
    again = pgd(net, x, y, eps=eps, steps=10, norm=norm, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adv, again)


def test_pgd_l2_random_start_is_inside_the_ball():
    x = torch.full((200, 1, 4, 4), 0.5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    adv = pgd(
        net,
        x,
        eps=0.3,
        step_size=1e-9,
        steps=1,
        norm="l2",
        generator=torch.Generator().manual_seed(1),
    )
    radius = perturbation_norms(adv - x)
    assert radius.max() <= 0.3 + 1e-6
    # uniform in the 16-d ball: P(radius < 0.3 * 0.9) = 0.9^16 ~ 0.19
    assert 0.08 < (radius < 0.27).float().mean() < 0.32


def test_pgd_eps_zero_is_identity(digits_model):
    net, x, y = digits_model
    assert torch.equal(pgd(net, x, y, eps=0.0), x)
    assert torch.equal(pgd(net, x, y, eps=0.0, norm="l2"), x)
    assert torch.equal(fgsm(net, x, y, eps=0.0, norm="l2"), x)
    assert torch.equal(fgsm(net, x, y, eps=0.0), x)


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model):
    net, x, y = digits_model
    acc_fgsm = attack_accuracy(net, x, y, lambda a, b: fgsm(net, a, b, 0.1))
    acc_pgd = attack_accuracy(net, x, y, lambda a, b: pgd(net, a, b, 0.1, steps=20))
    assert acc_pgd <= acc_fgsm < attack_accuracy(net, x, y, lambda a, b: a)


# ------------------------------------------------------------------------------------- DeepFool
@needs_torchattacks
def test_deepfool_matches_torchattacks_inside_the_box(digits_model):
    """Away from the bounds both follow Algorithm 2; torchattacks moves away from the given label,
    so it gets the model's own predictions (DeepFool's k_hat(x)). One-step samples match exactly;
    later steps differ by where the overshoot goes (torchattacks overshoots every step, we
    overshoot r_tot), so norms agree within a few percent."""
    net, x, _ = digits_model
    x = 0.25 + 0.5 * x
    pred = net(x).argmax(1)
    ours = deepfool(net, x, overshoot=0.02, max_iter=50)
    ref = torchattacks.DeepFool(net, steps=50, overshoot=0.02)(x, pred)
    ref_fooled = net(ref).argmax(1) != pred
    assert ours.success.float().mean() == ref_fooled.float().mean() == 1.0
    ours_n, ref_n = perturbation_norms(ours.r), perturbation_norms(ref - x)
    torch.testing.assert_close(ours_n, ref_n, rtol=0.03, atol=0)
    assert ours_n.median() == pytest.approx(float(ref_n.median()), rel=0.01)
    one = ours.iterations == 1
    assert one.float().mean() > 0.8
    torch.testing.assert_close(ours.x_adv[one], ref[one], atol=1e-5, rtol=0)
    assert torch.equal(ours.label, pred)


@needs_torchattacks
def test_deepfool_in_the_box_fools_more_than_torchattacks_at_the_same_norms(digits_model):
    """On raw digits (many pixels at 0) torchattacks' clamped, overshot steps can converge onto
    the boundary without crossing it; ours must not, and must not pay for it in norm."""
    net, x, _ = digits_model
    pred = net(x).argmax(1)
    ours = deepfool(net, x)
    ref = torchattacks.DeepFool(net, steps=50, overshoot=0.02)(x, pred)
    ref_fooled = net(ref).argmax(1) != pred
    assert ours.success.float().mean() >= max(ref_fooled.float().mean(), 0.95)
    both = ours.success & ref_fooled
    ratio = perturbation_norms(ours.r[both]).median() / perturbation_norms((ref - x)[both]).median()
    assert 0.97 < ratio < 1.03
    assert ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
    torch.testing.assert_close(ours.r, ours.x_adv - x)


def test_every_successful_deepfool_example_changes_the_class(digits_model):
    net, x, _ = digits_model
    res = deepfool(net, x, overshoot=0.02)
    after = net(res.x_adv).argmax(1)
    before = net(x).argmax(1)
    assert res.success.any()
    assert (after[res.success] != before[res.success]).all()
    assert torch.equal(res.success, after != before)
    assert torch.equal(res.adv_label, after)
    assert (res.iterations[res.success] >= 1).all()


def test_deepfool_batched_equals_per_sample(digits_model):
    """Fooled samples are frozen: a batch gives each sample what it gets alone."""
    net, x, _ = digits_model
    batch = deepfool(net, x[:16])
    for i in range(16):
        one = deepfool(net, x[i : i + 1])
        torch.testing.assert_close(batch.x_adv[i : i + 1], one.x_adv, atol=1e-5, rtol=0)
        assert batch.iterations[i] == one.iterations[0]


@pytest.mark.parametrize("overshoot", [0.0, 0.02, 0.5])
def test_deepfool_binary_linear_is_the_closed_form_projection(overshoot):
    """For f(x) = W x + b with 2 classes, r = (1 + eta) (-f'(x) / ||w'||^2) w' (the binary affine case of the paper)."""
    torch.manual_seed(0)
    lin = nn.Linear(16, 2).double()
    net = nn.Sequential(nn.Flatten(), lin)
    x = 0.45 + 0.1 * torch.rand(32, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        lin.bias -= lin.weight @ torch.full((16,), 0.5, dtype=torch.float64)
        f = net(x)
    label = f.argmax(1)
    other = 1 - label
    w = lin.weight[other] - lin.weight[label]  # (B, 16)
    fdiff = f.gather(1, other[:, None]) - f.gather(1, label[:, None])  # (B, 1), < 0
    expected = (1 + overshoot) * (-fdiff / (w**2).sum(1, keepdim=True)) * w
    res = deepfool(net, x, overshoot=overshoot)
    torch.testing.assert_close(res.r.flatten(1), expected.detach(), rtol=1e-9, atol=1e-12)
    distance = fdiff.abs().squeeze(1) / w.norm(dim=1)
    torch.testing.assert_close(perturbation_norms(res.r), (1 + overshoot) * distance.detach())
    if overshoot > 0:  # without overshoot x + r lies on the hyperplane, where the label is a tie
        assert res.success.all() and (res.iterations == 1).all()


def test_deepfool_multiclass_linear_reaches_the_closest_hyperplane():
    """Affine multi-class: one step to the closest boundary, ||r|| = (1 + eta) min_k |f'_k| / ||w'_k||."""
    torch.manual_seed(1)
    lin = nn.Linear(16, 5).double()
    net = nn.Sequential(nn.Flatten(), lin)
    with torch.no_grad():
        lin.bias -= lin.weight @ torch.full((16,), 0.5, dtype=torch.float64)
    x = 0.45 + 0.1 * torch.rand(32, 1, 4, 4, dtype=torch.float64)
    f = net(x).detach()
    label = f.argmax(1)
    w = lin.weight.detach()[None] - lin.weight.detach()[label][:, None]  # (B, 5, 16)
    dist = (f - f.gather(1, label[:, None])).abs() / w.norm(dim=2)
    dist[torch.arange(32), label] = float("inf")
    res = deepfool(net, x, overshoot=0.02)
    torch.testing.assert_close(perturbation_norms(res.r), 1.02 * dist.min(1).values)
    assert res.success.all() and (res.iterations == 1).all()
    assert torch.equal(res.adv_label, dist.argmin(1))


def test_rho_and_deepfool_accuracy():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    r = torch.tensor([[0.5, 0.0], [0.0, 0.3], [0.0, 0.4]])
    assert rho_adv(x, r) == pytest.approx((0.1 + 0.3 + 0.2) / 3)
    assert rho_adv(x, r, torch.tensor([True, False, True])) == pytest.approx(0.15)
    assert rho_adv(x, r, torch.zeros(3, dtype=torch.bool)) != rho_adv(x, r, None)  # NaN
    res = DeepFoolResult(
        x_adv=x + r,
        r=r,
        iterations=torch.ones(3, dtype=torch.long),
        success=torch.tensor([True, True, False]),
        label=torch.tensor([0, 1, 1]),
        adv_label=torch.tensor([1, 0, 1]),
    )
    y = torch.tensor([0, 1, 0])  # sample 2 is wrong already
    assert deepfool_accuracy(res, y, 0.0) == pytest.approx(2 / 3)
    assert deepfool_accuracy(res, y, 0.35) == pytest.approx(1 / 3)  # sample 1 fooled at 0.3
    assert deepfool_accuracy(res, y, 0.5) == 0.0
    assert deepfool_accuracy(res, y, 0.45, norm="linf") == pytest.approx(1 / 3)
    with pytest.raises(ShapeError, match="shape of x"):
        rho_adv(x, r[:2])


def test_attack_accuracy_does_not_depend_on_batch_size(digits_model):
    net, x, y = digits_model
    attack = lambda a, b: fgsm(net, a, b, 0.05)  # noqa: E731
    assert attack_accuracy(net, x, y, attack, 7) == attack_accuracy(net, x, y, attack, 64)


# -------------------------------------------------------------------------------------- modules
def test_modules_equal_functions(digits_model):
    net, x, y = digits_model
    assert torch.equal(FGSM(0.1, "l2")(net, x, y), fgsm(net, x, y, 0.1, "l2"))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(
        PGD(0.1, steps=3)(net, x, y, generator=g1), pgd(net, x, y, 0.1, steps=3, generator=g2)
    )
    a, b = DeepFool(0.05, 20, 3)(net, x), deepfool(net, x, 0.05, 20, 3)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.iterations, b.iterations)


# --------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise(digits_model):
    net, x, y = digits_model
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fgsm(net, x * 2 - 0.5, y)
    with pytest.raises(ShapeError, match="float tensor"):
        pgd(net, (x * 255).to(torch.uint8), y)
    with pytest.raises(ShapeError, match="float tensor"):
        deepfool(net, torch.rand(5))
    with pytest.raises(ShapeError, match="class indices"):
        fgsm(net, x, y[:3])
    with pytest.raises(ShapeError, match="class indices"):
        pgd(net, x, y.float())
    with pytest.raises(ConfigError, match="eps"):
        fgsm(net, x, y, eps=-0.1)
    with pytest.raises(ConfigError, match="norm"):
        pgd(net, x, y, norm="l1")
    with pytest.raises(ConfigError, match="steps"):
        pgd(net, x, y, steps=0)
    with pytest.raises(ConfigError, match="step_size"):
        pgd(net, x, y, step_size=-1.0)
    with pytest.raises(ConfigError, match="overshoot"):
        deepfool(net, x, overshoot=-0.1)
    with pytest.raises(ConfigError, match="max_iter"):
        deepfool(net, x, max_iter=0)
    with pytest.raises(ConfigError, match="num_candidates"):
        DeepFool(num_candidates=1)
    with pytest.raises(ConfigError, match="eps"):
        PGD(eps=float("nan"))
    with pytest.raises(ShapeError, match="logits"):
        fgsm(nn.Identity(), x, y)
    with pytest.raises(ShapeError, match="2 classes"):
        deepfool(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), x)
