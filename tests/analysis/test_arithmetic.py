"""Convolution arithmetic against PyTorch layers and brute-force receptive fields."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from visrep.analysis import arithmetic as A

GRID = list(itertools.product([7, 8, 15], [1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2]))


def test_conv_output_size_matches_torch() -> None:
    for n, k, s, p, d in GRID:
        _check_conv(n, k, s, p, d)


def _check_conv(n: int, k: int, s: int, p: int, d: int) -> None:
    conv = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d)
    if n + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="does not fit"):
            A.conv_output_size(n, k, s, p, d)
        return
    assert A.conv_output_size(n, k, s, p, d) == conv(torch.zeros(1, 1, n)).shape[-1]


def test_transposed_and_pool_sizes_match_torch() -> None:
    for n, k, s, p, d in GRID:
        _check_transposed_and_pool(n, k, s, p, d)


def _check_transposed_and_pool(n: int, k: int, s: int, p: int, d: int) -> None:
    for op in range(max(s, d)):
        if p > d * (k - 1) + op:  # torch rejects a negative output size
            continue
        t = nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d)
        expected = t(torch.zeros(1, 1, n)).shape[-1]
        assert A.conv_transpose_output_size(n, k, s, p, op, d) == expected
    if p <= k // 2 and n + 2 * p >= d * (k - 1) + 1:
        for ceil in (False, True):
            pool = nn.MaxPool1d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
            got = A.pool_output_size(n, k, s, p, d, ceil)
            assert got == pool(torch.zeros(1, 1, n)).shape[-1]


def test_same_padding_keeps_ceil_size() -> None:
    for n, k, s, d in itertools.product([7, 8, 224], [1, 2, 3, 4, 7], [1, 2, 3], [1, 2]):
        before, after = A.same_padding(k, s, d, size=n)
        x = nn.functional.pad(torch.zeros(1, 1, n), (before, after))
        out = nn.functional.conv1d(x, torch.zeros(1, 1, k), stride=s, dilation=d)
        assert out.shape[-1] == -(-n // s), (n, k, s, d)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="stride"):
        A.conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="kernel_size"):
        A.conv_output_size(8, 0)
    with pytest.raises(ValueError, match="output_padding"):
        A.conv_transpose_output_size(8, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="needs the input size"):
        A.same_padding(3, stride=2)
    with pytest.raises(ValueError, match="groups"):
        A.conv_params(8, 16, (3, 3), groups=3)
    with pytest.raises(ValueError, match="length"):
        A.receptive_field_size([3, 3], [1])


@pytest.mark.parametrize(
    ("cin", "cout", "k", "g", "bias"),
    [(8, 16, (5, 5), 1, True), (128, 128, (3, 3), 32, False), (3, 6, (3, 1, 2), 3, True)],
)
def test_conv_params_and_macs_match_layers(
    cin: int, cout: int, k: tuple[int, ...], g: int, bias: bool
) -> None:
    conv = (nn.Conv2d if len(k) == 2 else nn.Conv3d)(cin, cout, k, groups=g, bias=bias)
    assert A.conv_params(cin, cout, k, g, bias) == sum(p.numel() for p in conv.parameters())
    x = torch.randn(1, cin, *([9] * len(k)))
    out = conv(x)
    # MACs = outputs x weights per output, checked by counting the products of the dense equivalent
    assert A.conv_macs(cin, cout, k, out.shape[2:], g) == out.numel() * conv.weight[0].numel()
    assert A.conv_flops(cin, cout, k, out.shape[2:], g) == 2 * A.conv_macs(
        cin, cout, k, out.shape[2:], g
    )


def _empirical_rf(
    layers: list[tuple[int, int, int, int]], n: int = 257
) -> tuple[int, float, list[float]]:
    """Size and centres of the receptive fields of output units by back-propagating ones."""
    convs = []
    for k, s, p, d in layers:
        c = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        nn.init.ones_(c.weight)
        convs.append(c)
    net = nn.Sequential(*convs).double()
    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    out = net(x)
    sizes, centres = [], []
    for i in range(out.shape[-1]):
        (g,) = torch.autograd.grad(out[0, 0, i], x, retain_graph=True)
        idx = g[0, 0].nonzero().flatten()
        sizes.append(int(idx.max() - idx.min() + 1))
        centres.append(float(idx.max() + idx.min()) / 2)
    return sizes, centres


def test_receptive_field_matches_backprop_for_random_stacks() -> None:
    rng = random.Random(0)
    for _ in range(20):
        layers = [
            (rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2]), 0, rng.choice([1, 1, 2, 3]))
            for _ in range(rng.randint(1, 4))
        ]
        layers = [(k, s, rng.randint(0, d * (k - 1) // 2), d) for k, s, _, d in layers]
        rf = A.receptive_field(layers)[-1]
        sizes, centres = _empirical_rf(layers)
        # interior units (away from the zero padding) see exactly the analytic field
        mid = len(sizes) // 2
        assert sizes[mid] == rf.size, layers
        assert centres[mid] == pytest.approx(rf.start + mid * rf.jump), layers
        if all(s == 1 for _, s, _, _ in layers) or all(d == 1 for _, _, _, d in layers):
            kernels = [d * (k - 1) + 1 for k, _, _, d in layers]
            assert A.receptive_field_size(kernels, [s for _, s, _, _ in layers]) == rf.size


@pytest.mark.parametrize(("k", "s", "d"), [(3, 2, 1), (4, 2, 1), (5, 3, 1), (3, 2, 2), (2, 2, 1)])
def test_transposed_receptive_field_is_widest_phase(k: int, s: int, d: int) -> None:
    t = nn.ConvTranspose1d(1, 1, k, stride=s, dilation=d, bias=False)
    nn.init.ones_(t.weight)
    x = torch.ones(1, 1, 20, dtype=torch.float64, requires_grad=True)
    out = t.double()(x)
    spans = []
    for i in range(k * d, out.shape[-1] - k * d):
        (g,) = torch.autograd.grad(out[0, 0, i], x, retain_graph=True)
        idx = g[0, 0].nonzero().flatten()
        if idx.numel() == 0:  # dilation a multiple of the stride leaves holes
            continue
        spans.append(int(idx.max() - idx.min() + 1))
    rf = A.receptive_field([A.LayerSpec(k, s, 0, d, transposed=True)])[-1]
    assert rf.size == max(spans)
    assert rf.jump == pytest.approx(1 / s)


def test_seed_numbers() -> None:
    # seed 002: 16 x (8 x 5 x 5 + 1) params, 16,384 outputs, ~6.5 MFLOPs, ~3.25 MMACs
    assert A.conv_params(8, 16, (5, 5)) == 3216
    out = A.conv_output_size(32, 5, padding=2)
    assert 16 * out * out == 16384
    assert A.conv_flops(8, 16, (5, 5), (out, out)) == 16384 * 200 * 2
    assert round(A.conv_macs(8, 16, (5, 5), (out, out)) / 1e6, 2) == 3.28
    assert A.linear_params(224 * 224, 224 * 223, bias=False) > 2.5e9
    assert A.conv_params(1, 1, (1, 2), bias=False) == 2
