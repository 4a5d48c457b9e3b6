"""Autoencoder objectives: eq. 1's reconstruction loss, the L1 code penalty, and the input
corruption of the denoising criterion (Vincent et al. 2008)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from visrep.errors import ConfigError, ShapeError
from visrep.losses import (
    Corrupt,
    L1Sparsity,
    ReconstructionLoss,
    corrupt,
    l1_sparsity,
    reconstruction_loss,
)


def test_reconstruction_loss_is_the_per_sample_sum_of_squares():
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    x_hat = torch.tensor([[[[1.0, 1.0], [0.0, 0.25]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    assert torch.allclose(reconstruction_loss(x_hat, x), torch.tensor([1.25, 2.0]))
    assert torch.allclose(ReconstructionLoss()(x_hat, x), torch.tensor(1.625))
    assert torch.allclose(ReconstructionLoss("sum")(x_hat, x), torch.tensor(3.25))  # eq. 1


def test_l1_sparsity_by_hand_and_module():
    code = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -0.5]])
    assert torch.allclose(l1_sparsity(code), torch.tensor([3.0, 1.5]))
    assert torch.allclose(L1Sparsity(0.1)(code), torch.tensor(0.225))


def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 1, 3, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: reconstruction_loss(t, b), (a,))
    code = (torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: l1_sparsity(t * torch.tensor([1.0, -1, 1, -1])),
                                    (code,))  # fmt: skip


def test_masking_forces_a_fixed_number_of_components_to_zero():
    x = torch.rand(5, 2, 4, 5) * 0.9 + 0.1  # no zeros of its own
    y = corrupt(x, "masking", 0.3, torch.Generator().manual_seed(0))
    changed = y != x
    assert (changed.flatten(1).sum(1) == 12).all()  # round(0.3 * 40) per sample
    assert (y[changed] == 0).all() and torch.equal(y[~changed], x[~changed])
    # different components in different samples
    assert not torch.equal(changed[0], changed[1])


def test_salt_and_pepper_sets_components_to_the_extremes():
    x = torch.full((200, 1, 5, 5), 0.5)
    y = corrupt(x, "salt_pepper", 0.2, torch.Generator().manual_seed(0))
    changed = y != x
    assert (changed.flatten(1).sum(1) == 5).all()
    ones = float((y[changed] == 1).float().mean())
    assert set(y[changed].unique().tolist()) == {0.0, 1.0} and 0.45 < ones < 0.55


def test_gaussian_noise_and_determinism():
    x = torch.zeros(100, 1, 10, 10)
    y = corrupt(x, "gaussian", 0.2, torch.Generator().manual_seed(0))
    assert abs(float(y.mean())) < 0.01 and abs(float(y.std()) - 0.2) < 0.01
    again = corrupt(x, "gaussian", 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(y, again) and torch.equal(x, torch.zeros_like(x))  # input untouched


def test_corrupt_module_only_in_training():
    m = Corrupt("masking", 0.5)
    x = torch.rand(2, 1, 4, 4) + 0.1
    assert not torch.equal(m(x), x)
    assert torch.equal(m.eval()(x), x)


@pytest.mark.parametrize(
    ("noise", "level"), [("masking", 1.5), ("salt_pepper", -0.1), ("gaussian", -1.0), ("blur", 0.1)]
)
def test_bad_noise_options(noise, level):
    with pytest.raises(ConfigError, match="noise"):
        corrupt(torch.zeros(1, 1, 2, 2), noise, level)


def test_bad_shapes():
    with pytest.raises(ShapeError):
        reconstruction_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ShapeError):
        l1_sparsity(torch.zeros(2, 3, 1))


class _RandomDraws(TorchDispatchMode):
    """Records the device of every random draw (rand, randn) dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.rand, torch.ops.aten.randn):
            self.devices.append(out.device.type)
        return out


@pytest.mark.parametrize("noise", ["masking", "salt_pepper", "gaussian"])
def test_noise_is_drawn_where_the_input_lives(noise):
    """No generator: on x's device (here "meta", standing for an accelerator), never a host
    draw copied over each step; a generator: on its device, the result on x's."""
    x = torch.empty(4, 1, 6, 6, device="meta")
    with _RandomDraws() as seen:
        y = corrupt(x, noise, 0.3)
    assert y.device == x.device and seen.devices and set(seen.devices) == {"meta"}
    with _RandomDraws() as seen:
        y = corrupt(x, noise, 0.3, torch.Generator().manual_seed(0))
    assert y.device == x.device and seen.devices and set(seen.devices) == {"cpu"}
