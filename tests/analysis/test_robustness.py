"""Robustness measures: accuracy under attack, DeepFool's rho_adv and its accuracy bound."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.attacks._digits import digits_mlp
from visrep.analysis.robustness import attack_accuracy, deepfool_accuracy, rho_adv
from visrep.attacks import DeepFoolResult, fgsm, pgd
from visrep.errors import ShapeError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return digits_mlp()


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model):
    net, x, y = digits_model
    acc_fgsm = attack_accuracy(net, x, y, lambda a, b: fgsm(net, a, b, 0.1))
    acc_pgd = attack_accuracy(net, x, y, lambda a, b: pgd(net, a, b, 0.1, steps=20))
    assert acc_pgd <= acc_fgsm < attack_accuracy(net, x, y, lambda a, b: a)


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
