"""A small tanh MLP trained on scikit-learn's digits, shared by the attack and robustness tests."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

try:  # test-only reference; installed with --no-deps (its metadata pins an old requests)
    import torchattacks
except ImportError:
    torchattacks = None


@cache
def digits_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small tanh MLP trained on 1,400 digits; returns it (eval) with 64 held-out digits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: OpenMP threads only contend on a shared machine
    try:
        torch.manual_seed(0)
        d = load_digits()
        x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
        y = torch.tensor(d.target)
        net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
            nn.Linear(64, 10),
        )  # fmt: skip
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            F.cross_entropy(net(x[:1400]), y[:1400]).backward()
            opt.step()
    finally:
        torch.set_num_threads(n)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, x[1400:1464], y[1400:1464]
