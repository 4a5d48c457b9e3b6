"""Phased LSTM (Neil et al. 2016): the time gate against eq. 1-2, the cell against nn.LSTMCell,
the packed sequence run against a per-sequence loop, gradchecks, and a fit through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from tests.events.test_datasets import write_nmnist_folders
from visrep.analysis.runs import load_run
from visrep.errors import ConfigError, ShapeError
from visrep.events import EventBatch, EventStream
from visrep.models.event_sequence import (
    PhasedLSTMEventClassifier,
    event_addresses,
    regular_subsample,
)
from visrep.models.layers.phased_lstm import (
    PhasedLSTM,
    PhasedLSTMCell,
    phased_lstm,
    phased_lstm_cell,
    phased_time_gate,
)
from visrep.tasks import PhasedLSTMEventTask

D64 = torch.float64


def reference_gate(t: float, tau: float, s: float, r_on: float, alpha: float) -> float:
    """Eq. 1-2 written out for one neuron and one time, in plain Python."""
    phi = ((t - s) % tau) / tau
    if phi < r_on / 2:
        return 2 * phi / r_on
    if phi < r_on:
        return 2 - 2 * phi / r_on
    return alpha * phi


# tau = 10, s = 2, r_on = 0.2: open while (t - 2) mod 10 is in [0, 2), peak at 1
@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (2.5, 0.5),  # rising: phi = 0.05 -> 2 * 0.05 / 0.2
        (3.0, 1.0),  # the peak, phi = r_on / 2 (falling branch): 2 - 1
        (3.2, 0.8),  # falling: phi = 0.12 -> 2 - 1.2
        (7.0, 0.5e-3),  # closed: alpha * phi = 1e-3 * 0.5
        (12.0, 0.0),  # exact wrap: (12 - 2) mod 10 = 0 -> phi = 0
        (12.5, 0.5),  # one period later than 2.5
        (-7.5, 0.5),  # a negative time wraps into [0, tau) as well
    ],
)
def test_time_gate_matches_the_piecewise_formula(t: float, expected: float) -> None:
    k = phased_time_gate(torch.tensor([t], dtype=D64), torch.tensor([10.0], dtype=D64),
                         torch.tensor([2.0], dtype=D64), r_on=0.2, alpha=1e-3)  # fmt: skip
    assert k.shape == (1, 1)
    assert k.item() == pytest.approx(expected, abs=1e-12)
    assert k.item() == pytest.approx(reference_gate(t, 10.0, 2.0, 0.2, 1e-3), abs=1e-12)


def test_time_gate_broadcasts_over_neurons_and_matches_the_reference() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(7, generator=g, dtype=D64) * 50
    tau = torch.rand(5, generator=g, dtype=D64) * 9 + 1
    s = torch.rand(5, generator=g, dtype=D64) * tau
    k = phased_time_gate(t, tau, s, r_on=0.3, alpha=1e-3)
    assert k.shape == (7, 5)
    ref = [[reference_gate(a, b, c, 0.3, 1e-3) for b, c in zip(tau.tolist(), s.tolist(), strict=True)]
           for a in t.tolist()]  # fmt: skip
    torch.testing.assert_close(k, torch.tensor(ref, dtype=D64))
    assert phased_time_gate(t.unsqueeze(1), tau, s, 0.3, 1e-3).equal(k)


def test_time_gate_gradcheck_wrt_tau_and_shift() -> None:
    t = torch.tensor([2.5, 3.2, 7.0, 14.9, 30.9], dtype=D64)  # rising, falling, closed phases
    tau = torch.tensor([10.0, 7.0, 13.0], dtype=D64, requires_grad=True)
    s = torch.tensor([2.0, 0.5, 4.0], dtype=D64, requires_grad=True)
    assert gradcheck(lambda a, b: phased_time_gate(t, a, b, 0.2, 1e-3), (tau, s))


def _weights(d: int, h: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        (torch.rand(*shape, generator=g, dtype=D64) - 0.5).requires_grad_()
        for shape in ((4 * h, d), (4 * h, h), (4 * h,))
    )


def test_cell_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    x, hc, cc = (torch.randn(3, n, generator=g, dtype=D64).requires_grad_() for n in (4, 2, 2))
    k = torch.rand(3, 2, generator=g, dtype=D64).requires_grad_()
    w_ih, w_hh, b = _weights(4, 2)
    assert gradcheck(
        lambda *a: phased_lstm_cell(a[0], a[1], (a[2], a[3]), a[4], a[5], a[6]),
        (x, k, hc, cc, w_ih, w_hh, b),
    )


def test_sequence_gradcheck_wrt_inputs_weights_and_timing() -> None:
    g = torch.Generator().manual_seed(2)
    offsets = torch.tensor([0, 3, 3, 4, 6])  # lengths 3, 0, 1, 2
    x = torch.randn(6, 3, generator=g, dtype=D64).requires_grad_()
    t = torch.tensor([0.4, 1.1, 2.9, 0.7, 0.2, 5.3], dtype=D64)
    tau = torch.tensor([3.0, 4.5], dtype=D64, requires_grad=True)
    s = torch.tensor([0.1, 1.0], dtype=D64, requires_grad=True)
    w_ih, w_hh, b = _weights(3, 2, seed=3)

    def f(*a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return phased_lstm(a[0], t, offsets, a[1], a[2], a[3], a[4], a[5], r_on=0.6, alpha=0.01)

    assert gradcheck(f, (x, w_ih, w_hh, b, tau, s))


def test_open_gate_is_exactly_an_lstm_cell() -> None:
    torch.manual_seed(0)
    cell = PhasedLSTMCell(5, 4, tau_range=(2.0, 8.0), r_on=0.1).double()
    lstm = nn.LSTMCell(5, 4).double()
    with torch.no_grad():
        lstm.weight_ih.copy_(cell.weight_ih)
        lstm.weight_hh.copy_(cell.weight_hh)
        lstm.bias_ih.copy_(cell.bias)
        lstm.bias_hh.zero_()
    x = torch.randn(3, 5, dtype=D64)
    state = (torch.randn(3, 4, dtype=D64), torch.randn(3, 4, dtype=D64))
    ones = torch.ones(3, 4, dtype=D64)
    h, c = phased_lstm_cell(x, ones, state, cell.weight_ih, cell.weight_hh, cell.bias)
    h_ref, c_ref = lstm(x, state)
    torch.testing.assert_close((h, c), (h_ref, c_ref))
    # through the module, at the gate's peak (phi = r_on / 2 -> k = 1) for every neuron
    with torch.no_grad():
        cell.log_tau.fill_(torch.tensor(4.0).log())
        cell.shift.zero_()
    peak = torch.full((3,), 0.05 * 4.0, dtype=D64)
    torch.testing.assert_close(cell.time_gate(peak), ones)
    torch.testing.assert_close(cell(x, peak, state), (h_ref, c_ref))


def test_closed_gate_carries_the_state_unchanged() -> None:
    torch.manual_seed(0)
    w_ih, w_hh, b = _weights(5, 4)
    x = torch.randn(3, 5, dtype=D64)
    state = (torch.randn(3, 4, dtype=D64), torch.randn(3, 4, dtype=D64))
    h, c = phased_lstm_cell(x, torch.zeros(3, 4, dtype=D64), state, w_ih, w_hh, b)
    assert h.equal(state[0]) and c.equal(state[1])
    # in eval mode the leak is 0: a step in the closed phase changes nothing
    cell = PhasedLSTMCell(5, 4, tau_range=(10.0, 10.0), r_on=0.05).double().eval()
    with torch.no_grad():
        cell.shift.zero_()
    closed = torch.full((3,), 6.0, dtype=D64)  # phi = 0.6 > r_on for every neuron
    h, c = cell(x, closed, state)
    assert h.equal(state[0]) and c.equal(state[1])
    assert cell.alpha == 0.0 and cell.train().alpha == pytest.approx(1e-3)
    h, _ = cell(x, closed, state)
    assert not h.equal(state[0])  # the training leak lets a little through


def test_modules_equal_functions_and_a_per_sequence_loop() -> None:
    torch.manual_seed(0)
    layer = PhasedLSTM(3, 6, tau_range=(1.0, 5.0), r_on=0.4).double()
    lengths = [4, 0, 7, 1, 4]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    x = torch.randn(int(offsets[-1]), 3, dtype=D64)
    t = torch.cat([torch.sort(torch.rand(n, dtype=D64) * 20).values for n in lengths])
    h, c = layer(x, t, offsets)
    cell = layer.cell
    fn = phased_lstm(x, t, offsets, cell.weight_ih, cell.weight_hh, cell.bias, cell.tau,
                     cell.shift, cell.r_on, cell.alpha)  # fmt: skip
    torch.testing.assert_close((h, c), fn)
    for b, n in enumerate(lengths):  # the packed run == each sequence stepped on its own
        state = (torch.zeros(1, 6, dtype=D64), torch.zeros(1, 6, dtype=D64))
        for i in range(int(offsets[b]), int(offsets[b]) + n):
            state = cell(x[i : i + 1], t[i : i + 1], state)
        torch.testing.assert_close((h[b : b + 1], c[b : b + 1]), state)
    k = phased_time_gate(t, cell.tau, cell.shift, cell.r_on, cell.alpha)
    step = phased_lstm_cell(x[:2], k[:2], (h[:2], c[:2]), cell.weight_ih, cell.weight_hh, cell.bias)
    torch.testing.assert_close(cell(x[:2], t[:2], (h[:2], c[:2])), step)


def test_bad_options_and_shapes_raise() -> None:
    with pytest.raises(ConfigError, match="tau_range"):
        PhasedLSTMCell(3, 4, tau_range=(5.0, 1.0))
    with pytest.raises(ConfigError, match="r_on"):
        PhasedLSTMCell(3, 4, r_on=0.0)
    with pytest.raises(ConfigError, match="leak"):
        PhasedLSTMCell(3, 4, leak=1.5)
    with pytest.raises(ShapeError, match="PhasedLSTMCell expects"):
        PhasedLSTMCell(3, 4)(torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ShapeError, match="offsets"):
        PhasedLSTM(3, 4)(torch.zeros(5, 3), torch.zeros(5), torch.tensor([0, 4]))
    with pytest.raises(ConfigError, match="max_events"):
        PhasedLSTMEventClassifier((8, 8), 3, max_events=0)


def _batch(lengths: list[int], size: tuple[int, int] = (8, 6), seed: int = 0) -> EventBatch:
    g = torch.Generator().manual_seed(seed)
    streams = []
    for n in lengths:
        x = torch.randint(0, size[0], (n,), generator=g)
        y = torch.randint(0, size[1], (n,), generator=g)
        t = torch.sort(torch.randint(0, 300_000, (n,), generator=g)).values
        p = torch.randint(0, 2, (n,), generator=g)
        streams.append(EventStream(x.numpy(), y.numpy(), t.numpy(), p.numpy(), size))
    return EventBatch.from_streams(streams)


def test_regular_subsample_and_addresses() -> None:
    batch = _batch([10, 3, 0, 25])
    sub = regular_subsample(batch, 5)
    assert sub.counts().tolist() == [5, 3, 0, 5]
    first = [batch.t[i].item() for i in (0, 2, 4, 6, 8)]
    assert sub.t[:5].tolist() == first  # every second event of the 10
    assert sub.t[5:8].equal(batch.t[10:13])  # a short sample is unchanged
    assert sub.t[8:].equal(batch.t[13 + torch.tensor([0, 5, 10, 15, 20])])
    assert regular_subsample(batch, 25) is batch
    a = event_addresses(batch)
    assert int(a.min()) >= 0 and int(a.max()) < 2 * 8 * 6
    assert a[0].item() == (batch.p[0].item() * 6 + batch.y[0].item()) * 8 + batch.x[0].item()


def test_classifier_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    net = PhasedLSTMEventClassifier((8, 6), 4, embed_dim=5, hidden_size=7, max_events=16,
                                    tau_range=(1.0, 50.0), r_on=0.3)  # fmt: skip
    batch = _batch([30, 5, 0, 12])
    logits = net(batch)
    assert logits.shape == (4, 4) and torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    shifted = EventBatch(batch.x, batch.y, batch.t + 12_345, batch.p, batch.offsets, (8, 6))
    net.eval()
    torch.testing.assert_close(net(shifted), net(batch))  # times relative to each sample's start
    empty = net(_batch([0, 0]))  # no events at all: the zero state is classified
    torch.testing.assert_close(empty, net.classifier(torch.zeros(2, 7)))


def test_fit_through_the_cli(cli, tmp_path: Path) -> None:
    root = write_nmnist_folders(tmp_path / "data", classes=3, per_class=6)
    run = tmp_path / "run"
    code, _, err = cli(
        "fit", "--config", "nmnist_phased_lstm", "--data.root", root, "--run_dir", run,
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--model.hidden_size", "8", "--model.embed_dim", "4", "--model.max_events", "32",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1 and (run / "plots" / "test_predictions.png").is_file()
    loaded = load_run(run)
    assert isinstance(loaded.task, PhasedLSTMEventTask)
    loaded.datamodule.setup()
    events = next(iter(loaded.datamodule.test_dataloader()))["events"]
    with torch.no_grad():
        assert loaded.task(events).shape == (len(events), 3)
