"""EST: hand-checked votes, parity with the official per-bin loop, gradcheck, shapes, errors."""

from __future__ import annotations

import pytest
import torch

from tests.events.conftest import random_stream
from visrep.errors import ConfigError, ShapeError
from visrep.events import EventBatch, EventStream
from visrep.events.representations import EST, to_est, trilinear_kernel
from visrep.events.representations.est import KernelMLP
from visrep.models import create_backbone


def one(x, y, t, p, size=(3, 2)) -> EventBatch:
    return EventBatch.from_streams([EventStream(x=x, y=y, t=t, p=p, sensor_size=size)])


def tri(bins):
    return lambda dt: trilinear_kernel(dt, bins)


def official(batch: EventBatch, kernel, bins: int) -> torch.Tensor:
    """``QuantizationLayer.forward`` of uzh-rpg/rpg_event_representation_learning, on a batch whose
    samples start at t = 0: ``t /= t.max()`` per sample, one ``put_`` per bin, polarity-major."""
    W, H = batch.sensor_size
    x, y, p = batch.x.long(), batch.y.long(), batch.p.long()
    b = batch.batch_index()
    t = batch.t.double()
    for bi in range(len(batch)):
        t[b == bi] /= t[b == bi].max()
    vox = torch.zeros(int(2 * bins * H * W * len(batch)), dtype=torch.float64)
    idx_before_bins = x + W * y + W * H * bins * p + W * H * bins * 2 * b
    for i_bin in range(bins):
        values = t * kernel(t - i_bin / (bins - 1))
        vox.put_(idx_before_bins + W * H * i_bin, values, accumulate=True)
    vox = vox.view(-1, 2, bins, H, W)
    return torch.cat([vox[:, 0, ...], vox[:, 1, ...]], 1)


def test_event_on_a_bin_centre_votes_in_one_bin() -> None:
    # bins = 3: centres at t* = 0, 0.5, 1 (t = 0, 50, 100); t = 25 lies halfway between 0 and 1
    batch = one(x=[0, 1, 2, 2, 0], y=[0, 0, 1, 1, 1], t=[0, 25, 50, 50, 100], p=[1, 0, 1, 1, 0])
    out = to_est(batch, tri(3), bins=3, value="count", dtype=torch.float64)[0]
    want = torch.zeros(6, 2, 3, dtype=torch.float64)
    want[3 + 0, 0, 0] = 1  # ON, bin 0
    want[0, 0, 1] = want[1, 0, 1] = 0.5  # OFF, half in bins 0 and 1
    want[3 + 1, 1, 2] = 2  # two ON events on the centre of bin 1
    want[2, 1, 0] = 1  # OFF, last bin
    torch.testing.assert_close(out, want, atol=1e-12, rtol=0)
    ts = to_est(batch, tri(3), bins=3, value="timestamp", dtype=torch.float64)[0]
    torch.testing.assert_close(ts[4, 1, 2], torch.tensor(1.0, dtype=torch.float64))  # 2 x 0.5
    torch.testing.assert_close(ts[1, 0, 1], torch.tensor(0.125, dtype=torch.float64))  # .25 x .5
    assert ts[3, 0, 0] == 0  # the first event has t* = 0
    pol = to_est(batch, tri(3), bins=3, value="polarity", dtype=torch.float64)[0]
    sign = torch.tensor([-1.0, -1, -1, 1, 1, 1], dtype=torch.float64).view(6, 1, 1)
    torch.testing.assert_close(pol, want * sign)  # OFF channels vote -1


def test_trilinear_votes_sum_to_one_per_event(streams) -> None:
    batch = EventBatch.from_streams(streams)
    out = to_est(batch, tri(5), bins=5, value="count", dtype=torch.float64)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), batch.counts().double())


@pytest.mark.parametrize("bins", [2, 9])
def test_matches_official_quantization_layer(bins) -> None:
    streams = [random_stream(n, (7, 5), seed=s) for s, n in ((0, 90), (1, 40))]
    # the official code divides by t.max(): give every sample t_first = 0
    streams = [EventStream(s.x, s.y, s.t - s.t[0], s.p, s.sensor_size) for s in streams]
    batch = EventBatch.from_streams(streams)
    torch.manual_seed(0)
    mlp = KernelMLP((8, 8)).double()
    for kernel in (tri(bins), mlp):
        got = to_est(batch, kernel, bins=bins, dtype=torch.float64)
        torch.testing.assert_close(got, official(batch, kernel, bins), atol=1e-12, rtol=0)


def test_kernel_is_prefit_to_trilinear() -> None:
    torch.manual_seed(0)
    m = EST((4, 3), bins=9)  # the official 1000 Adam steps
    dt = torch.linspace(-1, 1, 401)
    with torch.no_grad():
        err = (m.kernel(dt) - trilinear_kernel(dt, 9)).abs()
    assert err.max() < 0.05 and err.mean() < 0.01
    assert (
        EST((4, 3), bins=9, init_steps=0).kernel(dt).sub(trilinear_kernel(dt, 9)).abs().max() > 0.1
    )


def test_gradcheck_kernel_mlp_and_values() -> None:
    torch.manual_seed(1)
    batch = one(x=[0, 1, 2, 0, 1], y=[0, 1, 0, 0, 1], t=[0, 3, 3, 7, 10], p=[1, 0, 1, 0, 1])
    mlp = KernelMLP((4,)).double()
    values = torch.randn(batch.num_events, dtype=torch.float64, requires_grad=True)
    params = list(mlp.parameters())

    def fn(v, *_params):  # the MLP's own parameters are perturbed in place by gradcheck
        return to_est(batch, mlp, bins=3, values=v, dtype=torch.float64)

    assert torch.autograd.gradcheck(fn, (values, *params), eps=1e-6, atol=1e-7)
    to_est(batch, mlp, bins=3, dtype=torch.float64).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_module_equals_function_and_shape(streams) -> None:
    batch = EventBatch.from_streams(streams)  # conftest: (16, 12), one empty sample
    torch.manual_seed(2)
    m = EST((16, 12), bins=9, init_steps=20)
    out = m(batch)
    assert out.shape == (3, 18, 12, 16) and m.out_channels == 18
    assert torch.equal(out, to_est(batch, m.kernel, bins=9))
    assert out[1].abs().sum() == 0 and torch.isfinite(out).all()
    for i, s in enumerate(streams):  # samples do not leak into each other
        torch.testing.assert_close(out[i], m(EventBatch.from_streams([s]))[0], atol=1e-6, rtol=0)
    net = create_backbone("small_cnn", in_chans=m.out_channels, num_classes=3, img_size=16)
    net(out).sum().backward()  # in front of a backbone, trained end to end
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_bad_inputs_raise() -> None:
    batch = one(x=[0], y=[0], t=[0], p=[1])
    with pytest.raises(ShapeError, match="EventBatch"):
        to_est(torch.zeros(3), tri(3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bins"):
        to_est(batch, tri(3), bins=1)
    with pytest.raises(ConfigError, match="value"):
        to_est(batch, tri(3), bins=3, value="rate")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="values"):
        to_est(batch, tri(3), bins=3, values=torch.zeros(2))
    with pytest.raises(ConfigError, match="bins"):
        EST((3, 2), bins=0, init_steps=0)
    with pytest.raises(ConfigError, match="sensor_size"):
        EST((3,), init_steps=0)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="sensor_size"):
        EST((4, 2), bins=3, init_steps=0)(batch)
