"""ConvLSTM (Shi et al. 2015, eq. 3): reference values, parity with nn.LSTM, gradcheck,
module == function, the stacked layer over time, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from visrep.errors import ConfigError, ShapeError
from visrep.models.layers import ConvLSTM, ConvLSTMCell, convlstm_cell


def _np_conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero 'same' padding by explicit windows: (B,C,H,W), (O,C,k,k)."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))  # (B, C, H, W, k, k)
    return np.einsum("bchwij,ocij->bohw", win, w)


def _sig(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _np_eq3(x, h, c, wx, wh, b, wci, wcf, wco):
    """Eq. 3 written gate by gate with separate W_x., W_h. (numpy, float64)."""
    n = h.shape[1]
    pre = _np_conv_same(x, wx) + _np_conv_same(h, wh) + b[None, :, None, None]
    zi, zf, zg, zo = (pre[:, j * n : (j + 1) * n] for j in range(4))
    i = _sig(zi + wci * c)
    f = _sig(zf + wcf * c)
    c_new = f * c + i * np.tanh(zg)
    o = _sig(zo + wco * c_new)
    return o * np.tanh(c_new), c_new


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("split", [False, True])
def test_cell_matches_numpy_eq3_with_spatial_peepholes(split):
    b, cx, ch, hgt, wid, k = 2, 3, 4, 6, 5, 3
    x, h, c = (
        _rand(b, cx, hgt, wid, seed=1),
        _rand(b, ch, hgt, wid, seed=2),
        _rand(b, ch, hgt, wid, seed=3),
    )
    wx, wh = _rand(4 * ch, cx, k, k, seed=4) * 0.3, _rand(4 * ch, ch, k, k, seed=5) * 0.3
    bias = _rand(4 * ch, seed=6)
    wci, wcf, wco = (_rand(ch, hgt, wid, seed=s) for s in (7, 8, 9))
    if split:
        h1, c1 = convlstm_cell(x, h, c, wx, bias, wci, wcf, wco, weight_h=wh)
    else:
        h1, c1 = convlstm_cell(x, h, c, torch.cat([wx, wh], 1), bias, wci, wcf, wco)
    ref_h, ref_c = _np_eq3(*(t.numpy() for t in (x, h, c, wx, wh, bias, wci, wcf, wco)))
    np.testing.assert_allclose(h1.numpy(), ref_h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c1.numpy(), ref_c, rtol=1e-10, atol=1e-12)


def test_cell_1x1_is_torch_lstm_cell_per_pixel():
    torch.manual_seed(0)
    ref = nn.LSTMCell(3, 5)
    cell = ConvLSTMCell(3, 5, kernel_size=1)
    with torch.no_grad():
        cell.weight.copy_(torch.cat([ref.weight_ih, ref.weight_hh], 1)[..., None, None])
        cell.bias.copy_(ref.bias_ih + ref.bias_hh)
    x, h, c = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    h1, c1 = cell(x, (h, c))

    def px(t):  # (B, C, H, W) -> (B*H*W, C)
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    rh, rc = ref(px(x), (px(h), px(c)))
    torch.testing.assert_close(px(h1), rh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(px(c1), rc, rtol=1e-5, atol=1e-6)


def test_stack_1x1_is_torch_lstm_over_time():
    torch.manual_seed(1)
    ref = nn.LSTM(2, 6, num_layers=2, batch_first=True)
    net = ConvLSTM(2, (6, 6), kernel_size=1)
    with torch.no_grad():
        for layer, cell in enumerate(net.cells):
            w = torch.cat(
                [getattr(ref, f"weight_ih_l{layer}"), getattr(ref, f"weight_hh_l{layer}")], 1
            )
            cell.weight.copy_(w[..., None, None])
            cell.bias.copy_(getattr(ref, f"bias_ih_l{layer}") + getattr(ref, f"bias_hh_l{layer}"))
    x = torch.randn(3, 7, 2, 2, 3)  # (B, T, C, H, W)
    out, states = net(x)
    seq = x.permute(0, 3, 4, 1, 2).reshape(-1, 7, 2)  # pixels as batch
    rout, (rh, rc) = ref(seq)
    got = out.permute(0, 3, 4, 1, 2).reshape(-1, 7, 6)
    torch.testing.assert_close(got, rout, rtol=1e-5, atol=1e-6)
    for layer, (h, c) in enumerate(states):
        torch.testing.assert_close(
            h.permute(0, 2, 3, 1).reshape(-1, 6), rh[layer], rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            c.permute(0, 2, 3, 1).reshape(-1, 6), rc[layer], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("split", [False, True])
def test_cell_gradcheck_float64(split):
    b, cx, ch, hgt, wid = 1, 2, 2, 4, 3
    x, h, c = (
        _rand(b, n, hgt, wid, seed=s).requires_grad_() for n, s in ((cx, 1), (ch, 2), (ch, 3))
    )
    if split:
        w = (_rand(4 * ch, cx, 3, 3, seed=4) * 0.3).requires_grad_()
        wh = (_rand(4 * ch, ch, 1, 1, seed=5) * 0.3).requires_grad_()
    else:
        w, wh = (_rand(4 * ch, cx + ch, 3, 3, seed=4) * 0.3).requires_grad_(), None
    bias = _rand(4 * ch, seed=6).requires_grad_()
    peep = [_rand(ch, hgt, wid, seed=s).requires_grad_() for s in (7, 8, 9)]

    def f(x, h, c, w, bias, wci, wcf, wco, *rest):
        return convlstm_cell(x, h, c, w, bias, wci, wcf, wco, weight_h=rest[0] if rest else None)

    args = (x, h, c, w, bias, *peep) + ((wh,) if split else ())
    assert torch.autograd.gradcheck(f, args)


def test_stack_gradcheck_float64_through_time():
    net = ConvLSTM(1, (2, 2), kernel_size=3, hidden_kernel_size=(3, 1), peephole=True).double()
    for p in net.parameters():  # peepholes start at zero; make them matter
        torch.nn.init.normal_(p, std=0.3)
    x = _rand(1, 3, 1, 3, 3, seed=1).requires_grad_()
    h0, c0 = _rand(1, 2, 3, 3, seed=2).requires_grad_(), _rand(1, 2, 3, 3, seed=3).requires_grad_()

    def f(x, h0, c0):
        out, states = net(x, [(h0, c0), (h0, c0)])
        return out, states[0][1], states[1][1]

    assert torch.autograd.gradcheck(f, (x, h0, c0))


@pytest.mark.parametrize("hk", [None, 5])
@pytest.mark.parametrize("peephole_size", [None, (6, 6)])
def test_module_equals_function(hk, peephole_size):
    torch.manual_seed(2)
    cell = ConvLSTMCell(
        3, 4, kernel_size=3, hidden_kernel_size=hk, peephole=True, peephole_size=peephole_size
    )
    for p in (cell.w_ci, cell.w_cf, cell.w_co):
        torch.nn.init.normal_(p)
    x, h, c = torch.randn(2, 3, 6, 6), torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    got = cell(x, (h, c))
    want = convlstm_cell(
        x, h, c, cell.weight, cell.bias, cell.w_ci, cell.w_cf, cell.w_co, weight_h=cell.weight_h
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert cell.w_ci.shape == (4, *(peephole_size or (1, 1)))
    # the precomputed-input path the stacked layer uses gives the same step
    stepped = cell.step(cell.input_to_state(x), (h, c))
    for g, w in zip(stepped, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_stack_equals_step_major_loop_of_the_function():
    torch.manual_seed(3)
    net = ConvLSTM(2, (4, 3), kernel_size=(3, 5), hidden_kernel_size=(5, 3), peephole=True)
    x = torch.randn(2, 4, 2, 8, 8)
    init = [(torch.randn(2, d, 8, 8), torch.randn(2, d, 8, 8)) for d in (4, 3)]
    out, final = net(x, init)
    states = list(init)
    for t in range(4):
        inp = x[:, t]
        for i, cell in enumerate(net.cells):
            states[i] = convlstm_cell(
                inp,
                *states[i],
                cell.weight,
                cell.bias,
                cell.w_ci,
                cell.w_cf,
                cell.w_co,
                weight_h=cell.weight_h,
            )
            inp = states[i][0]
        torch.testing.assert_close(out[:, t], inp, rtol=1e-5, atol=1e-6)
    for (h, c), (rh, rc) in zip(final, states, strict=True):
        torch.testing.assert_close(h, rh, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, rc, rtol=1e-5, atol=1e-6)
    layers, _ = net.forward_layers(x, init)
    assert [t.shape[2] for t in layers] == [4, 3]
    torch.testing.assert_close(layers[-1], out)


def test_zero_initial_state_is_the_default_and_states_are_used():
    torch.manual_seed(4)
    net = ConvLSTM(1, 3)
    x = torch.randn(2, 3, 1, 5, 5)
    zeros = [(torch.zeros(2, 3, 5, 5), torch.zeros(2, 3, 5, 5))]
    torch.testing.assert_close(net(x)[0], net(x, zeros)[0])
    other = [(torch.ones(2, 3, 5, 5), torch.ones(2, 3, 5, 5))]
    assert not torch.allclose(net(x)[0], net(x, other)[0])


def test_locality_receptive_field_grows_by_the_kernel_radius_per_step():
    # One layer, 3x3 kernels: a change at pixel p reaches H_t only within Chebyshev radius t.
    torch.manual_seed(5)
    net = ConvLSTM(1, 2, kernel_size=3).double()
    x = torch.zeros(1, 3, 1, 11, 11, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0, 0, 5, 5] = 1.0  # only the first frame differs
    d = (net(x)[0] - net(x2)[0]).abs().amax(dim=(0, 2))  # (T, H, W)
    yy, xx = torch.meshgrid(torch.arange(11), torch.arange(11), indexing="ij")
    cheb = torch.maximum((yy - 5).abs(), (xx - 5).abs())
    for t in range(3):
        assert d[t][cheb > t + 1].max() == 0  # radius 1 per step: input conv + t state convs
        assert d[t][cheb <= t + 1].max() > 0


def test_no_input_layer_runs_on_its_state():
    torch.manual_seed(6)
    net = ConvLSTM(0, (3, 2), kernel_size=3)
    init = [(torch.randn(2, d, 4, 4), torch.randn(2, d, 4, 4)) for d in (3, 2)]
    out, final = net(None, init, steps=5)
    assert out.shape == (2, 5, 2, 4, 4)
    h, c = init[0]
    for _ in range(5):
        h, c = convlstm_cell(None, h, c, net.cells[0].weight, net.cells[0].bias)
    torch.testing.assert_close(final[0][0], h, rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match="states and steps"):
        net(None)


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="kernel_size"):
        ConvLSTMCell(1, 2, kernel_size=4)
    with pytest.raises(ConfigError, match="hidden_dims"):
        ConvLSTM(1, (4, 0))
    with pytest.raises(ConfigError, match="one per layer"):
        ConvLSTM(1, (4, 4), kernel_size=(3, 3, 3))
    with pytest.raises(ConfigError, match="peephole_size"):
        ConvLSTMCell(1, 2, peephole=True, peephole_size=(4,))
    net = ConvLSTM(2, (4, 4))
    with pytest.raises(ShapeError, match=r"\(B, T, 2, H, W\)"):
        net(torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ShapeError, match="one \\(h, c\\) per layer"):
        net(torch.zeros(1, 3, 2, 4, 4), [(torch.zeros(1, 4, 4, 4),) * 2])
    with pytest.raises(ShapeError, match=r"layer 1 state must be \(h, c\) of shape \(1, 4, 4, 4\)"):
        net(
            torch.zeros(1, 3, 2, 4, 4),
            [(torch.zeros(1, 4, 4, 4),) * 2, (torch.zeros(1, 4, 5, 4),) * 2],
        )
    with pytest.raises(ShapeError, match="layer 0 state"):
        ConvLSTM(0, 4)(None, [(torch.zeros(1, 3, 4, 4),) * 2], steps=2)
    with pytest.raises(ShapeError, match="the state's B, H, W"):
        convlstm_cell(
            torch.zeros(1, 1, 5, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(8, 3, 3, 3),
        )
    with pytest.raises(ShapeError, match="output channels"):
        convlstm_cell(
            torch.zeros(1, 1, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(4, 3, 3, 3),
        )
    with pytest.raises(ShapeError, match="input channels"):
        convlstm_cell(
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(8, 3, 3, 3),
        )
    with pytest.raises(ShapeError, match="odd"):
        convlstm_cell(
            torch.zeros(1, 1, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(8, 3, 2, 2),
        )
