"""Matrix-LSTM forward + backward throughput: visrep's padding-free runs vs the official padding.

Run: ``python benchmarks/matrix_lstm.py [--repeats 5] [--threads 1] [--clock wall|cpu]``.

All runs share visrep's grouping (:func:`pixel_sequences`: the same features, caps and output
scatter), so the ratios measure how the LSTM meets sequences of different lengths. The baseline
is the official code's algorithm (marcocannici/matrixlstm, ``MatrixLSTM.forward``): every active
pixel sequence of the batch is zero-padded to the longest one into a ``(L_max, G, D)`` tensor,
``nn.LSTM`` runs all ``L_max`` steps for all ``G`` sequences and the output at each sequence's
last valid step is gathered. visrep runs exactly ``sum(lengths)`` steps, either with one dense
``nn.LSTM`` call per distinct length (``by_length``, the CPU default) or with one call on a
``PackedSequence`` (``packed``, the CUDA default); see :func:`last_hidden`. Throughput is events
per second of one forward + backward of the batch (median of ``--repeats``); ``X / padded`` is
the speed-up over the baseline (> 1: faster). The outputs of all three are checked equal first.

Batches: 16 real N-MNIST recordings when ``shared/data/nmnist-small`` is present, and seeded
simulations shaped like N-MNIST (34x34, 4.1k events, 300 ms, events on 40 % of the pixels with
gamma(6) weights) and N-Cars (120x100, 3k events, 100 ms, 15 % of the pixels, gamma(0.3)
weights: a heavy tail of busy pixels). ``mean L``, ``L_max`` and ``pad x = G L_max / sum(L)``
describe the sequences of each row.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visrep.events import EventBatch, EventStream
from visrep.events.io import read_atis_bin
from visrep.events.representations import to_matrix_lstm
from visrep.events.representations.matrix_lstm import (
    PixelSequences,
    num_input_features,
    pixel_sequences,
)

NMNIST = (
    Path(__file__).resolve().parents[2] / "shared/data/nmnist-small/test/test_files/NMNISTsmall"
)
METHODS = ("by_length", "packed")  # visrep's two exact ways, see last_hidden
CONFIGS = {  # name: to_matrix_lstm options
    "delay_norm per pixel, 1 bin": dict(bins=1, time_feature="delay_norm", relative=True),
    "ts global, 2 bins": dict(bins=2, time_feature="ts", relative=False),
}


def simulate(n: int, size: tuple[int, int], duration: int, active: float, shape: float,
             seed: int) -> EventStream:  # fmt: skip
    """``n`` events on a random ``active`` fraction of the pixels, gamma(``shape``) weights."""
    rng = np.random.default_rng(seed)
    W, H = size
    k = max(1, int(active * W * H))
    pixels = rng.choice(W * H, size=k, replace=False)
    w = rng.gamma(shape, size=k)
    pix = pixels[rng.choice(k, size=n, p=w / w.sum())]
    t = np.sort(rng.integers(0, duration, n))
    return EventStream(pix % W, pix // W, t, rng.integers(0, 2, n), size)


def batches(batch_size: int) -> dict[str, EventBatch]:
    out = {}
    files = sorted(NMNIST.glob("*.bs2"))[:batch_size]
    if len(files) == batch_size:
        real = [read_atis_bin(f, sensor_size=(34, 34)) for f in files]
        out["N-MNIST real, 34x34"] = EventBatch.from_streams(real)
    out["N-MNIST-like sim, 34x34"] = EventBatch.from_streams(
        [simulate(4100, (34, 34), 300_000, 0.4, 6.0, s) for s in range(batch_size)]
    )
    out["N-Cars-like sim, 120x100"] = EventBatch.from_streams(
        [simulate(3000, (120, 100), 100_000, 0.15, 0.3, 100 + s) for s in range(batch_size)]
    )
    return out


def padded_matrix_lstm(batch: EventBatch, lstm: nn.LSTM, bins: int, **opts) -> torch.Tensor:
    """The official algorithm: zero-pad all sequences to ``L_max`` and run every step."""
    seq: PixelSequences = pixel_sequences(batch, bins, **opts)
    G, L = seq.lengths.numel(), int(seq.lengths.max())
    padded = seq.features.new_zeros(L, G, seq.features.shape[1])
    padded = padded.index_put((seq.pos, seq.group), seq.features)
    out, _ = lstm(padded)
    last = out[seq.lengths - 1, torch.arange(G, device=out.device)]
    (h, w), hid = seq.out_size, lstm.hidden_size
    frame = last.new_zeros(len(batch) * bins * h * w, hid).index_copy(0, seq.key, last)
    return frame.view(len(batch), bins, h, w, hid).permute(0, 1, 4, 2, 3).flatten(1, 2)


def seconds(fn: Callable[[], torch.Tensor], repeats: int, sync: Callable[[], None],
            clock: Callable[[], float]) -> float:  # fmt: skip
    fn().sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = clock()
        fn().sum().backward()
        sync()
        times.append(clock() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier on a shared machine with --threads 1",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {dev}, {args.clock} clock, "
          f"batch {args.batch_size}, hidden {args.hidden}, forward + backward")  # fmt: skip
    head = (
        f"{'batch':24s} {'config':27s} {'ev/sample':>9s} {'mean L':>6s} {'L_max':>5s} {'pad x':>5s}"
    )
    print(head + "".join(f"{m + ' ev/s':>16s}" for m in METHODS) + f"{'padded ev/s':>14s}"
          + "".join(f"{m + ' / padded':>20s}" for m in METHODS))  # fmt: skip
    for name, batch in batches(args.batch_size).items():
        batch = batch.to(dev)
        for cname, opts in CONFIGS.items():
            torch.manual_seed(0)
            lstm = nn.LSTM(num_input_features(), args.hidden).to(dev)
            seq = pixel_sequences(batch, **opts)
            mean_len = seq.lengths.double().mean().item()
            l_max = int(seq.lengths.max())
            pad = seq.lengths.numel() * l_max / seq.lengths.sum().item()
            runs = {m: partial(to_matrix_lstm, batch, lstm, method=m, **opts) for m in METHODS}
            runs["padded"] = partial(padded_matrix_lstm, batch, lstm, **opts)
            with torch.no_grad():  # all give one surface
                ref = runs["padded"]()
                for m in METHODS:
                    diff = (runs[m]() - ref).abs().max().item()
                    if diff > 1e-4:
                        raise RuntimeError(f"{m} and padded differ by {diff:.2e}")
            t = {m: seconds(fn, args.repeats, sync, clock) for m, fn in runs.items()}
            n = batch.num_events
            print(f"{name:24s} {cname:27s} {n / len(batch):9.0f} {mean_len:6.2f} {l_max:5d} "
                  f"{pad:5.1f}" + "".join(f"{n / t[m]:16,.0f}" for m in METHODS)
                  + f"{n / t['padded']:14,.0f}"
                  + "".join(f"{t['padded'] / t[m]:20.2f}" for m in METHODS))  # fmt: skip


if __name__ == "__main__":
    main()
