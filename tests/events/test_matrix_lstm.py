"""Matrix-LSTM: parity with a per-pixel loop reference, gradcheck, shapes, errors, module == function."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from torch import nn

from tests.events.conftest import random_stream
from visrep.errors import ConfigError, ShapeError
from visrep.events import EventBatch, EventStream
from visrep.events.representations import MatrixLSTM, to_matrix_lstm
from visrep.events.representations.matrix_lstm import num_input_features
from visrep.models import create_backbone

SIZE = (5, 4)  # (W, H): 20 pixels, so sequences are long enough to hit the caps


def official_cap(members: list[int], cap: int | None, keep_most_recent: bool) -> list[int]:
    """The loop of the official CUDA kernel ``group_rf_bounded_cuda_kernel``, one sequence."""
    n = len(members)
    if cap is None or n <= cap:
        return members
    rf_len = cap if keep_most_recent else n
    slots: list[int | None] = [None] * cap
    done = 0  # gr_last_id
    for e in reversed(members):
        step, last_pos = 1, rf_len - 1
        if cap < rf_len:
            step, last_pos = rf_len // (cap - 1), cap - 1
        if done < rf_len:
            write = last_pos - done // step
            prev = last_pos - max(0, done - 1) // step
            if done + 1 == rf_len:
                write = 0
            if write >= 0 and (write != prev or done == 0 or done + 1 == rf_len):
                slots[write] = e
            done += 1
    assert None not in slots
    return slots  # type: ignore[return-value]


def time_feature(ts: list[int], mode: str, origin: int) -> list[float]:
    """The official time features of one sequence (timestamps in order)."""
    delays = [0] + [b - a for a, b in pairwise(ts)]
    if mode == "delay":
        return [float(d) for d in delays]
    if mode == "delay_norm":
        top = max(delays)
        return [d / top if top else 0.0 for d in delays]
    if mode == "ts":
        lo, hi = min(ts), max(ts)
        return [(t - lo) / (hi - lo) if hi > lo else 0.0 for t in ts]
    hi = max(ts) - origin
    return [(t - origin) / hi if hi else 0.0 for t in ts]


def reference(batch, lstm, bins=1, time_feature_mode="delay_norm", relative=True,
              max_events=512, keep="subsample", kernel=(1, 1), stride=(1, 1), keep_size=True,
              coords=False, bin_time=False, features=None):  # fmt: skip
    """Slow Matrix-LSTM: Python loops over samples, bins and output pixels, one LSTM call each."""
    W, H = batch.sensor_size
    (kh, kw), (sh, sw) = kernel, stride
    if keep_size:
        out_h, out_w = H, W
        new_h, new_w = (H - 1) * sh + kh, (W - 1) * sw + kw
        pad_t, pad_l = new_h - H - (new_h - H) // 2, new_w - W - (new_w - W) // 2
    else:
        out_h, out_w, pad_t, pad_l = (H - kh) // sh + 1, (W - kw) // sw + 1, 0, 0
    hid = lstm.hidden_size
    dtype = lstm.weight_ih_l0.dtype
    out = torch.zeros(len(batch), bins * hid, out_h, out_w, dtype=dtype)
    for b in range(len(batch)):
        lo = int(batch.offsets[b])
        s = batch.stream(b)
        x, y, t, p = (a.astype(np.int64).tolist() for a in (s.x, s.y, s.t, s.p))
        if not t:
            continue
        dur = t[-1] - t[0]
        kbin = [min(bins - 1, (ti - t[0]) * bins // dur) if dur else 0 for ti in t]
        for k in range(bins):
            idx = [i for i in range(len(t)) if kbin[i] == k]
            if not idx:
                continue
            glob = dict(zip(idx, time_feature([t[i] for i in idx], time_feature_mode, t[0]),
                            strict=True))  # fmt: skip
            for oy in range(out_h):
                for ox in range(out_w):
                    members = [
                        i for i in idx
                        if oy * sh <= y[i] + pad_t < oy * sh + kh
                        and ox * sw <= x[i] + pad_l < ox * sw + kw
                    ]  # fmt: skip
                    if not members:
                        continue
                    members = official_cap(members, max_events, keep == "recent")
                    local = time_feature([t[i] for i in members], time_feature_mode, t[idx[0]])
                    rows = []
                    for j, i in enumerate(members):
                        row = [] if features is None else features[lo + i].tolist()
                        row.append(float(p[i]))
                        if bin_time:
                            row.append((t[i] - t[0]) / dur if dur else 0.0)
                        if coords:
                            row += [(x[i] + pad_l - ox * sw) / max(kw - 1, 1),
                                    (y[i] + pad_t - oy * sh) / max(kh - 1, 1)]  # fmt: skip
                        row.append(local[j] if relative else glob[i])
                        rows.append(row)
                    seq = torch.tensor(rows, dtype=dtype)[:, None, :]
                    if features is not None:  # keep the graph for the features (gradcheck)
                        f = torch.stack([features[lo + i] for i in members]).to(dtype)
                        seq = torch.cat([f[:, None, :], seq[:, :, f.shape[1] :]], dim=2)
                    h = lstm(seq)[0][-1, 0]
                    out[b, k * hid : (k + 1) * hid, oy, ox] = h
    return out


def streams(n: int = 120) -> list[EventStream]:
    """Three samples on a 5x4 sensor: one dense, one empty, one sparse (leaves empty pixels)."""
    sparse = EventStream(x=[0, 0, 3, 0, 4], y=[0, 0, 2, 0, 3], t=[3, 7, 7, 20, 30],
                         p=[1, 0, 1, 1, 0], sensor_size=SIZE)  # fmt: skip
    return [random_stream(n, SIZE, seed=4, span=5000), EventStream.empty(SIZE), sparse]


CASES = {
    "bins3-delay_norm-rel-subsample": dict(bins=3, max_events=4),
    "recent-ts-rel": dict(time_feature="ts", max_events=3, keep="recent"),
    "bins2-ts_max-rel-nocap": dict(bins=2, time_feature="ts_max", max_events=None),
    "global-ts-bins2-bintime": dict(bins=2, time_feature="ts", relative=False, bin_time_feature=True),
    "global-delay-subsample2": dict(time_feature="delay", relative=False, max_events=2),
    "global-ts_max-bins3": dict(bins=3, time_feature="ts_max", relative=False, max_events=5),
    "rf3-coords-global-delay_norm": dict(kernel_size=3, coord_features=True, relative=False,
                                         time_feature="delay_norm", max_events=6),
    "rf2-stride2-valid": dict(kernel_size=2, stride=2, keep_size=False, coord_features=True,
                              max_events=7, keep="recent"),
    "rf(3,2)-stride(1,2)-same": dict(kernel_size=(3, 2), stride=(1, 2), time_feature="ts"),
}  # fmt: skip


def _ref_kwargs(kw: dict) -> dict:
    ks, st = kw.get("kernel_size", 1), kw.get("stride", 1)
    return dict(
        bins=kw.get("bins", 1), time_feature_mode=kw.get("time_feature", "delay_norm"),
        relative=kw.get("relative", True), max_events=kw.get("max_events", 512),
        keep=kw.get("keep", "subsample"), kernel=(ks, ks) if isinstance(ks, int) else ks,
        stride=(st, st) if isinstance(st, int) else st, keep_size=kw.get("keep_size", True),
        coords=kw.get("coord_features", False), bin_time=kw.get("bin_time_feature", False),
    )  # fmt: skip


@pytest.mark.parametrize("method", ["by_length", "packed"])
@pytest.mark.parametrize("kw", CASES.values(), ids=CASES.keys())
def test_equals_per_pixel_reference(kw, method) -> None:
    torch.manual_seed(0)
    batch = EventBatch.from_streams(streams())
    n_in = num_input_features(kw.get("coord_features", False), kw.get("bin_time_feature", False))
    lstm = nn.LSTM(n_in, 3)
    with torch.no_grad():
        got = to_matrix_lstm(batch, lstm, method=method, **kw)
        want = reference(batch, lstm, **_ref_kwargs(kw))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got[1].abs().sum() == 0  # the empty sample
    assert (got[2] == 0).all(dim=0).any()  # the sparse sample leaves pixels empty


def test_official_cap_is_reproduced_on_long_sequences() -> None:
    """Caps hit with many step sizes: one pixel, lengths 2..40, caps 2..9, both modes."""
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 2).double()
    for n in (2, 9, 17, 40):
        s = EventStream(x=[0] * n, y=[0] * n, t=np.arange(n) ** 2, p=np.arange(n) % 2,
                        sensor_size=(1, 1))  # fmt: skip
        batch = EventBatch.from_streams([s])
        for cap in range(2, 10):
            for keep in ("subsample", "recent"):
                kw = dict(max_events=cap, keep=keep, time_feature="ts")
                with torch.no_grad():
                    got = to_matrix_lstm(batch, lstm, **kw)
                    want = reference(batch, lstm, **_ref_kwargs(kw))
                torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert official_cap(list(range(10)), 4, False) == [0, 3, 6, 9]
    assert official_cap(list(range(10)), 4, True) == [6, 7, 8, 9]


@pytest.mark.parametrize("method", ["by_length", "packed"])
def test_two_layers_and_extra_features_match_reference(method) -> None:
    torch.manual_seed(1)
    batch = EventBatch.from_streams(streams(60))
    feats = torch.randn(batch.num_events, 2)
    lstm = nn.LSTM(num_input_features(extra_features=2), 4, num_layers=2, batch_first=True)
    seq_first = nn.LSTM(lstm.input_size, 4, num_layers=2)  # the same weights for the reference
    seq_first.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        got = to_matrix_lstm(batch, lstm, bins=2, features=feats, method=method)
        want = reference(batch, seq_first, bins=2, features=feats)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["by_length", "packed"])
def test_gradcheck_features_and_lstm_weights(method) -> None:
    torch.manual_seed(2)
    s = EventStream(x=[0, 1, 0, 1, 0, 2], y=[0, 0, 0, 1, 0, 1], t=[0, 2, 5, 6, 9, 9],
                    p=[1, 0, 0, 1, 1, 0], sensor_size=(3, 2))  # fmt: skip
    batch = EventBatch.from_streams([s, s.select(slice(1, 4))])
    lstm = nn.LSTM(num_input_features(extra_features=1), 2).double()
    feats = torch.randn(batch.num_events, 1, dtype=torch.float64, requires_grad=True)
    params = list(lstm.parameters())

    def fn(f, *_params):  # the LSTM's own parameters are perturbed in place by gradcheck
        return to_matrix_lstm(batch, lstm, bins=2, time_feature="ts", max_events=2, features=f,
                              method=method)  # fmt: skip

    assert torch.autograd.gradcheck(fn, (feats, *params), eps=1e-6, atol=1e-6)
    fn(feats).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_module_equals_function_shapes_and_channels(streams) -> None:
    batch = EventBatch.from_streams(streams)  # conftest: (16, 12), one empty sample
    torch.manual_seed(3)
    m = MatrixLSTM((16, 12), hidden_size=5, bins=2, kernel_size=3, coord_features=True)
    out = m(batch)
    assert out.shape == (3, m.out_channels, 12, 16) and m.out_channels == 10
    fn = to_matrix_lstm(batch, m.lstm, bins=2, kernel_size=3, coord_features=True)
    assert torch.equal(out, fn)
    assert out[1].abs().sum() == 0 and torch.isfinite(out).all()
    for i, s in enumerate(streams):  # samples do not leak into each other
        torch.testing.assert_close(out[i], m(EventBatch.from_streams([s]))[0], atol=1e-6, rtol=0)
    m2 = MatrixLSTM((16, 12), hidden_size=4, kernel_size=4, stride=4, keep_size=False)
    assert m2(batch).shape == (3, 4, 3, 4) and m2.out_size == (3, 4)
    net = create_backbone("small_cnn", in_chans=m.out_channels, num_classes=3, img_size=16)
    net(out).sum().backward()  # in front of a backbone, trained end to end
    assert m.lstm.weight_ih_l0.grad is not None and m.lstm.weight_ih_l0.grad.abs().sum() > 0


def test_empty_batch_gives_zeros() -> None:
    m = MatrixLSTM(SIZE, hidden_size=3)
    out = m(EventBatch.from_streams([EventStream.empty(SIZE)] * 2))
    assert out.shape == (2, 3, 4, 5) and (out == 0).all()


def test_bad_inputs_raise() -> None:
    batch = EventBatch.from_streams(streams(10))
    lstm = nn.LSTM(2, 3)
    with pytest.raises(ShapeError, match="EventBatch"):
        to_matrix_lstm(torch.zeros(3), lstm)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="input_size"):
        to_matrix_lstm(batch, nn.LSTM(3, 3))
    with pytest.raises(ConfigError, match="unidirectional"):
        to_matrix_lstm(batch, nn.LSTM(2, 3, bidirectional=True))
    with pytest.raises(ConfigError, match="time_feature"):
        to_matrix_lstm(batch, lstm, time_feature="abs")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="method"):
        to_matrix_lstm(batch, lstm, method="padded")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="keep"):
        MatrixLSTM(SIZE, keep="oldest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_events"):
        MatrixLSTM(SIZE, max_events=1)  # subsampling keeps the first and the last
    with pytest.raises(ConfigError, match="kernel_size"):
        MatrixLSTM(SIZE, kernel_size=6, keep_size=False)
    with pytest.raises(ConfigError, match="sensor_size"):
        MatrixLSTM((0, 4))
    with pytest.raises(ShapeError, match="features"):
        to_matrix_lstm(batch, lstm, features=torch.zeros(3, 1))
    with pytest.raises(ShapeError, match="sensor_size"):
        MatrixLSTM((6, 4))(batch)
