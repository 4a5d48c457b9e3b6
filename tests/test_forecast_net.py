"""The encoding-forecasting ConvLSTM network (Shi et al. 2015, Sec. 3.2) and FORECAST_NETS."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from visrep.errors import ConfigError, ShapeError
from visrep.models.video import (
    FORECAST_NETS,
    ForecastNet,
    convlstm_forecaster,
    depth_to_space,
    space_to_depth,
)


def _net(**kw) -> convlstm_forecaster:
    opts = dict(hidden_dims=(6, 4), kernel_size=3, patch_size=2) | kw
    return convlstm_forecaster(1, (8, 8), 3, **opts)


def test_shapes_range_steps_and_gradients():
    torch.manual_seed(0)
    net = _net()
    x = torch.rand(2, 5, 1, 8, 8, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 3, 1, 8, 8) and ((y > 0) & (y < 1)).all()
    assert net(x, steps=6).shape == (2, 6, 1, 8, 8)
    torch.testing.assert_close(torch.sigmoid(net.forward_logits(x)), y)
    y.sum().backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert x.grad[:, 0].abs().sum() > 0  # the first frame seen reaches the forecast


def test_space_to_depth_is_the_papers_patch_layout():
    x = torch.rand(2, 3, 2, 64, 64)
    z = space_to_depth(x, 4)
    assert z.shape == (2, 3, 32, 16, 16)  # Sec. 4.1: 64x64 as 16x16x16 per channel
    # channel c * 16 + i * 4 + j at (u, v) is pixel (4u + i, 4v + j) of channel c
    assert torch.equal(z[1, 2, 1 * 16 + 2 * 4 + 3, 5, 7], x[1, 2, 1, 4 * 5 + 2, 4 * 7 + 3])
    assert torch.equal(depth_to_space(z, 4), x)
    assert space_to_depth(x, 1) is x


def test_forward_is_encoder_states_copied_into_the_input_free_forecaster():
    torch.manual_seed(1)
    net = _net().eval()
    x = torch.rand(2, 4, 1, 8, 8)
    # the encoding network over the patch tensors (2x2 patches: 4 channels of 4x4)
    _, states = net.encoder(space_to_depth(x, 2))
    assert [tuple(h.shape) for h, _ in states] == [(2, 6, 4, 4), (2, 4, 4, 4)]
    # the forecaster: no input, layer l starts from encoder layer l's (H, C)
    hs = []
    st = list(states)
    for _ in range(3):
        inp = None
        for i, cell in enumerate(net.forecaster.cells):
            st[i] = cell(inp, st[i])
            inp = st[i][0]
        hs.append(torch.cat([h for h, _ in st], dim=1))  # all layers' hidden states
    logits = torch.stack([net.head(h) for h in hs], dim=1)  # 1x1 conv -> 4 = 1 * 2 * 2
    want = depth_to_space(logits, 2)
    torch.testing.assert_close(net.forward_logits(x), want, rtol=1e-5, atol=1e-6)
    assert net.head.kernel_size == (1, 1) and net.head.in_channels == 10
    # the forecast depends on the seen frames only through the encoder's final states
    for h, c in net.encode(x):
        assert h.shape[-2:] == (4, 4) and c.shape == h.shape


def test_registry_and_factory():
    assert "convlstm_forecaster" in FORECAST_NETS.names()
    spec = {"class_path": "convlstm_forecaster", "init_args": {"hidden_dims": [4], "patch_size": 4}}
    net = FORECAST_NETS.build(spec, 3, (16, 16), 2)
    assert isinstance(net, ForecastNet) and net.encoder.input_dim == 3 * 16
    assert net(torch.rand(1, 3, 3, 16, 16)).shape == (1, 2, 3, 16, 16)
    factory = partial(convlstm_forecaster, hidden_dims=(4,), kernel_size=3)
    assert FORECAST_NETS.spec(factory)["init_args"]["hidden_dims"] == [4]
    assert factory(1, (8, 8), 2).future_frames == 2
    with pytest.raises(ConfigError, match="has no option"):
        FORECAST_NETS.build(
            {"class_path": "convlstm_forecaster", "init_args": {"width": 3}}, 1, (8, 8), 2
        )


def test_peepholes_are_per_position_on_the_patch_grid():
    net = _net(peephole=True)
    assert net.encoder.cells[0].w_ci.shape == (6, 4, 4)
    assert net(torch.rand(1, 2, 1, 8, 8)).shape == (1, 3, 1, 8, 8)
    with pytest.raises(ShapeError, match="with peepholes"):
        net(torch.rand(1, 2, 1, 12, 12))
    assert _net()(torch.rand(1, 2, 1, 12, 12)).shape == (1, 3, 1, 12, 12)  # any multiple of 2


def moving_bars(n: int, g: torch.Generator, frames: int = 7, size: int = 12):
    """A full-height bar, 2 px wide, moving left or right by 1 px per frame (wrapping): the
    direction must be read from the frames seen."""
    pos = torch.randint(0, size, (n,), generator=g)
    vel = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    col = (pos[:, None] + vel[:, None] * torch.arange(frames)) % size
    on = ((torch.arange(size) - col[..., None]) % size < 2).float()  # (n, T, size)
    v = on[:, :, None, None, :].expand(n, frames, 1, size, size)
    return v[:, :4], v[:, 4:]


def test_learns_to_forecast_motion_better_than_copy_last_and_the_mean():
    torch.manual_seed(0)
    net = convlstm_forecaster(1, (12, 12), 3, hidden_dims=(16,), kernel_size=3, patch_size=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x, y = moving_bars(16, g)
        loss = F.binary_cross_entropy_with_logits(net.forward_logits(x), y)  # the paper's loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = moving_bars(128, torch.Generator().manual_seed(1))
    with torch.no_grad():
        mse = ((net(x) - y) ** 2).mean(dim=(0, 2, 3, 4))
    copy_last = ((x[:, -1:] - y) ** 2).mean(dim=(0, 2, 3, 4))  # 1/6, 1/3, 1/3
    mean_frame = (1 / 6) * (5 / 6)  # predicting the pixel mean: 0.139
    assert (mse < 0.5 * mean_frame).all() and (mse < 0.5 * copy_last).all()


def test_bad_options_and_input():
    with pytest.raises(ConfigError, match="multiples of patch_size 4"):
        convlstm_forecaster(1, (30, 32), 2)
    with pytest.raises(ConfigError, match="future_frames"):
        convlstm_forecaster(1, (32, 32), 0)
    with pytest.raises(ConfigError, match="patch_size"):
        convlstm_forecaster(1, (32, 32), 2, patch_size=0)
    with pytest.raises(ConfigError, match="kernel_size"):
        convlstm_forecaster(1, (32, 32), 2, kernel_size=4)
    net = _net()
    with pytest.raises(ShapeError, match=r"\(B, T_in, 1, H, W\)"):
        net(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(ShapeError, match="not multiples of patch_size 2"):
        net(torch.rand(1, 3, 1, 9, 8))
    with pytest.raises(ShapeError, match="steps"):
        net(torch.rand(1, 3, 1, 8, 8), steps=0)
