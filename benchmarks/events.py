"""Throughput of visrep's hand-crafted event representations against tonic, in one process.

Run: ``python benchmarks/events.py [--repeats 5] [--threads 1]``. Needs ``tonic`` (test extra).

For each stream size it prints events per second of visrep (from an ``EventBatch``) and of
tonic (from its structured array), and the ratio ``visrep / tonic`` (> 1: visrep is faster).
Both baselines are measured in this run on the same synthetic, seeded streams. The batched row
compares one visrep call on 32 samples with 32 tonic calls. tonic's HATS is a per-event Python
loop; it is only timed on streams of at most ``--hats-limit`` events.

Memory bandwidth: the script first times copying a 512 MiB tensor into an already written one
(bytes read + bytes written per second; the issue's "large ``torch.clone``" is also printed,
which pays for its fresh output pages and comes out several times lower) and, per
representation, prints ``GB/s``: the event columns it reads (x, y int32; t int64; p int8: 17
bytes an event, or 9 for the count, which ignores t) times its events per second, and ``%bw``,
that rate as a share of the copy's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from visrep.events import (
    EventBatch,
    EventStream,
    to_event_count,
    to_hats,
    to_last_timestamp,
    to_time_surface,
    to_voxel_grid,
)

SIZES = {  # name: (events, (W, H), duration in us)
    "N-MNIST-sized": (4_300, (34, 34), 300_000),
    "N-Cars-sized": (4_000, (120, 100), 100_000),
    "1M events": (1_000_000, (640, 480), 1_000_000),
}
BINS, TAU, HATS = 5, 50_000.0, {"cell_size": 10, "radius": 3, "tau": 1e5, "delta_t": 100_000}


def make_stream(n: int, size: tuple[int, int], duration: int, seed: int) -> EventStream:
    rng = np.random.default_rng(seed)
    return EventStream(
        x=rng.integers(0, size[0], n),
        y=rng.integers(0, size[1], n),
        t=np.sort(rng.integers(0, duration, n)),
        p=rng.integers(0, 2, n),
        sensor_size=size,
    )


def structured(s: EventStream) -> np.ndarray:
    import tonic.io

    ev = np.zeros(len(s), dtype=tonic.io.events_struct)
    for k in "xytp":
        ev[k] = getattr(s, k)
    return ev


BYTES = {"event count": 9}  # x, y int32 and p int8; the others read t (int64) too: 17


def bandwidth(repeats: int = 5) -> tuple[float, float]:
    """Bytes read + written per second copying 512 MiB: into a written tensor, and by clone."""
    big, dst = torch.ones(1 << 27), torch.zeros(1 << 27)
    moved = 2 * big.numel() * big.element_size()
    return moved / seconds(lambda: dst.copy_(big), repeats), moved / seconds(big.clone, repeats)


def seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cases(
    streams: list[EventStream], hats_limit: int
) -> dict[str, tuple[Callable, Callable | None]]:
    import tonic.functional as F

    batch = EventBatch.from_streams(streams)
    evs = [structured(s) for s in streams]
    W, H = streams[0].sensor_size
    sensor = (W, H, 2)
    n = batch.num_events

    def each(fn: Callable[[np.ndarray], object]) -> Callable[[], list]:
        return lambda: [fn(ev) for ev in evs]

    dt = max(int(streams[0].duration), 1)
    return {
        "event count": (
            lambda: to_event_count(batch),
            each(lambda ev: F.to_frame_numpy(ev, sensor, event_count=len(ev))),
        ),
        "voxel grid": (
            lambda: to_voxel_grid(batch, BINS),
            each(lambda ev: F.to_voxel_grid_numpy(ev.copy(), sensor, BINS)),
        ),
        "time surface": (
            lambda: to_time_surface(batch, TAU),
            each(lambda ev: F.to_timesurface_numpy(ev, sensor, dt=dt, tau=TAU)),
        ),
        "last timestamp": (lambda: to_last_timestamp(batch), None),
        "HATS": (
            lambda: to_hats(batch, **HATS),
            each(
                lambda ev: F.to_averaged_timesurface_numpy(
                    ev,
                    sensor,
                    HATS["cell_size"],
                    2 * HATS["radius"] + 1,
                    HATS["delta_t"],
                    HATS["tau"],
                    "exp",
                )
            )
            if n <= hats_limit
            else None,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--hats-limit", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bw, bw_clone = bandwidth()
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(
        f"memory bandwidth, 512 MiB read + written: copy_ {bw / 1e9:.2f} GB/s "
        f"(clone, fresh pages: {bw_clone / 1e9:.2f} GB/s)"
    )
    print(
        f"{'stream':<26}{'representation':<16}{'visrep ev/s':>14}{'tonic ev/s':>14}{'ratio':>9}"
        f"{'GB/s':>8}{'%bw':>7}"
    )
    rows = [(name, [make_stream(n, size, d, seed=0)]) for name, (n, size, d) in SIZES.items()]
    n, size, d = SIZES["N-MNIST-sized"]
    rows.insert(
        1, ("N-MNIST-sized, batch 32", [make_stream(n, size, d, seed=i) for i in range(32)])
    )
    for name, streams in rows:
        total = sum(len(s) for s in streams)
        for rep, (ours, theirs) in cases(streams, args.hats_limit).items():
            v = total / seconds(ours, args.repeats)
            gbs = v * BYTES.get(rep, 17) / 1e9
            mem = f"{gbs:>8.2f}{100 * gbs * 1e9 / bw:>6.1f}%"
            if theirs is None:
                print(f"{name:<26}{rep:<16}{v:>14,.0f}{'-':>14}{'-':>9}{mem}")
                continue
            # tonic's per-event HATS loop on 1M events would take minutes: one call there
            t = total / seconds(theirs, 1 if total > 100_000 else args.repeats)
            print(f"{name:<26}{rep:<16}{v:>14,.0f}{t:>14,.0f}{v / t:>8.1f}x{mem}")


if __name__ == "__main__":
    main()
