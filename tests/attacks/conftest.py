"""Fixtures shared by the attack tests: one torch thread, and the cached digits MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.attacks._digits import digits_mlp


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return digits_mlp()
