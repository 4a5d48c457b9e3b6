"""fold_batchnorm: equal outputs with randomised BN statistics, nothing left, original untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from visrep.analysis.bn_fold import find_conv_bn_pairs, fold_batchnorm
from visrep.models import create_backbone


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def _num_bn(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "resnext50_32x4d"])
def test_fold_backbones(name: str) -> None:
    torch.manual_seed(0)
    model = _randomise_bn(create_backbone(name, img_size=32)).train()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        if dtype == torch.float64:
            model = model.double()
            reference = {
                k: v.double() if v.is_floating_point() else v for k, v in reference.items()
            }
        folded = fold_batchnorm(model)

        assert _num_bn(folded) == 0 and _num_bn(model) > 0
        assert type(folded) is type(model) and hasattr(folded, "forward_features")
        assert not folded.training and model.training  # the copy is eval, the original unchanged
        state = model.state_dict()
        assert all(torch.equal(v, state[k]) for k, v in reference.items())

        with torch.no_grad():
            expected = model.eval()(x.to(dtype))
            got = folded(x.to(dtype))
        model.train()
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


class _Untraceable(nn.Module):
    """A block fx cannot trace (data-dependent branch): pairs come from attribute names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 6), nn.BatchNorm1d(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        if x.sum() > 0:
            x = x * 2
        return self.head(self.bn2(self.conv2(x)))


def test_fallback_attribute_pairs_and_linear() -> None:
    model = _randomise_bn(_Untraceable()).eval()
    pairs = find_conv_bn_pairs(model)
    assert sorted(pairs) == [("conv1", "bn1"), ("conv2", "bn2"), ("head.1", "head.2")]
    folded = fold_batchnorm(model)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert _num_bn(folded) == 0


def test_traced_graph_skips_unsafe_pairs() -> None:
    class Shared(nn.Module):  # the conv output also feeds a second branch: not foldable
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 3)
            self.bn = nn.BatchNorm1d(2)
            self.conv3 = nn.Conv3d(2, 2, 1)
            self.bn3 = nn.BatchNorm3d(2)

        def forward(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.conv(x)
            return self.bn(y) + y, self.bn3(self.conv3(v))

    model = _randomise_bn(Shared()).eval()
    assert find_conv_bn_pairs(model) == [("conv3", "bn3")]  # the graph sees the second use
    folded = fold_batchnorm(model)
    x, v = torch.randn(2, 2, 7), torch.randn(1, 2, 3, 4, 5)
    for a, b in zip(folded(x, v), model(x, v), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert isinstance(folded.bn, nn.BatchNorm1d) and isinstance(folded.bn3, nn.Identity)


def test_bn_without_running_stats_is_kept() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert find_conv_bn_pairs(model) == []
    assert _num_bn(fold_batchnorm(model)) == 1
