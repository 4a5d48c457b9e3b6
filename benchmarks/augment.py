"""Per-epoch cost of training augmentation: torchvision.transforms.v2 per sample against
visrep's batched :func:`visrep.data.augment.augment_batch`, in one process.

Run: ``python benchmarks/augment.py [--repeats 3] [--device cpu]`` (set ``OMP_NUM_THREADS=1``).

The augmentation is the same on both sides: zero-padded (4) random crop, horizontal flip with
probability 0.5, colour jitter of brightness, contrast and saturation 0.2. Data: seeded synthetic
uint8 images held in memory, CIFAR-sized (10,000 x 3x32x32) and digits-sized (1,797 x 1x8x8),
read through visrep's :class:`~visrep.data.datasets.ArrayImageDataset` (float ``Image`` in
[0, 1]) and batched by 128 with visrep's collate.

Rows, for each size and for ``num_workers`` 0 and 2 (persistent workers; one warm-up epoch,
then the median of ``--repeats`` timed epochs):

- ``loader only``: the loader without augmentation (the floor both sides share).
- ``v2 float``: ``v2.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
  ColorJitter(0.2, 0.2, 0.2)])`` on each sample dict in ``__getitem__`` (visrep's float images).
- ``v2 uint8``: the same on the uint8 image, then ``ToDtype(float32, scale=True)`` (the usual
  torchvision idiom: uint8 kernels are cheaper).
- ``visrep``: the loader, then ``augment_batch`` on each batch of 128 (in the main process, on
  ``--device``; visrep does this in ``on_after_batch_transfer``).

Each row prints images/s for a whole epoch, and ``aug img/s``: images per second of the
augmentation alone (epoch time minus the ``loader only`` epoch). The ratio lines give
``v2 / visrep`` of those throughputs (< 1: v2 is slower). A last section prints, without
asserting anything, statistics showing that both sides draw the same random parameters: the
fraction flipped, the crop-offset histogram over [0, 8] and the jitter factor ranges, each
measured on probe images with that operation alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from visrep.data.augment import (
    AugmentConfig,
    augment_batch,
    color_jitter,
    random_crop,
    random_hflip,
)
from visrep.data.datasets import ArrayImageDataset
from visrep.data.samples import IMAGE, collate, image_sample

SIZES = {"CIFAR-sized": (10_000, (3, 32, 32)), "digits-sized": (1_797, (1, 8, 8))}
BATCH, PAD, JITTER = 128, 4, 0.2
CFG = AugmentConfig(
    crop_padding=PAD, hflip=True, brightness=JITTER, contrast=JITTER, saturation=JITTER
)


def v2_augment(size: int) -> v2.Compose:
    return v2.Compose([
        v2.RandomCrop(size, padding=PAD),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(JITTER, JITTER, JITTER),
    ])  # fmt: skip


def make_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> ArrayImageDataset:
    rng = np.random.default_rng(seed)
    return ArrayImageDataset(
        rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n)
    )


class V2Dataset(Dataset):
    """visrep's sample dicts with a v2 transform applied in ``__getitem__`` (the standard way).

    ``uint8``: transform the stored uint8 image, then convert to float in [0, 1].
    """

    def __init__(self, base: ArrayImageDataset, transform: Callable, uint8: bool) -> None:
        self.base, self.transform, self.uint8 = base, transform, uint8

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.uint8:
            sample = image_sample(torch.from_numpy(self.base.images[i]), int(self.base.targets[i]))
        else:
            sample = self.base[i]
        return self.transform(sample)


def loader(ds: Dataset, workers: int) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )


def epoch_seconds(dl: DataLoader, repeats: int, step: Callable[[Tensor], Tensor]) -> float:
    """Median seconds of one epoch over ``dl`` with ``step`` applied to each batch's images,
    after one warm-up epoch (worker start-up, allocator warm-up)."""
    times = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for batch in dl:
            step(batch[IMAGE])
        if r:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def benchmark(name: str, n: int, shape: tuple[int, int, int], a: argparse.Namespace) -> None:
    base = make_images(n, shape)
    dev = torch.device(a.device)

    def sync(x: Tensor) -> Tensor:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return x

    def visrep_step(x: Tensor) -> Tensor:
        return sync(augment_batch(x.to(dev, non_blocking=True), CFG))

    def no_step(x: Tensor) -> Tensor:
        return x

    print(f"\n{name}: {n} images {'x'.join(map(str, shape))}, batch {BATCH}")
    print(f"  {'setting':<22}{'epoch s':>9}{'img/s':>11}{'aug img/s':>12}")
    v2_float = V2Dataset(base, v2_augment(shape[1]), uint8=False)
    v2_uint8 = V2Dataset(
        base, v2.Compose([v2_augment(shape[1]), v2.ToDtype(torch.float32, scale=True)]), True
    )
    for workers in (0, 2):
        floor = epoch_seconds(loader(base, workers), a.repeats, no_step)
        rows = {
            "loader only": floor,
            "v2 float": epoch_seconds(loader(v2_float, workers), a.repeats, no_step),
            "v2 uint8": epoch_seconds(loader(v2_uint8, workers), a.repeats, no_step),
            f"visrep ({dev.type})": epoch_seconds(loader(base, workers), a.repeats, visrep_step),
        }
        rate = {k: n / t for k, t in rows.items()}
        aug = {k: n / max(t - floor, 1e-9) for k, t in rows.items() if k != "loader only"}
        for k, t in rows.items():
            extra = f"{aug[k]:12.0f}" if k in aug else f"{'':>12}"
            print(f"  w={workers} {k:<18}{t:9.3f}{rate[k]:11.0f}{extra}")
        ours = f"visrep ({dev.type})"
        for k in ("v2 float", "v2 uint8"):
            print(
                f"  w={workers} ratio {k} / visrep: epoch {rate[k] / rate[ours]:.2f}   "
                f"augmentation alone {aug[k] / aug[ours]:.2f}"
            )
    # The augmentation alone without any loader: per-sample v2 calls against batched calls.
    x = torch.stack([base[i][IMAGE] for i in range(n)])
    t = v2_augment(shape[1])
    v2_s = _median(a.repeats, lambda: [t(tv_tensors.Image(x[i])) for i in range(n)])
    xd = x.to(dev)
    vs_s = _median(
        a.repeats, lambda: [sync(augment_batch(xd[i : i + BATCH], CFG)) for i in range(0, n, BATCH)]
    )
    print(
        f"  no loader: v2 per sample {n / v2_s:.0f} img/s, visrep per batch {n / vs_s:.0f} img/s, "
        f"ratio v2 / visrep {vs_s / v2_s:.2f}"
    )


def _median(repeats: int, fn: Callable[[], Any]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- the same augmentation? -------------------------------------------------------------------
def _probe(shape: tuple[int, int, int]) -> Tensor:
    """An image whose pixel values code their position (1 .. H*W, per channel), scaled to (0, 1)."""
    c, h, w = shape
    pos = torch.arange(1, h * w + 1, dtype=torch.float64).view(1, h, w).expand(c, h, w)
    return (pos / (h * w + 1)).float().contiguous()


def _crop_offsets(out: Tensor, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Crop offsets (oy, ox) in [0, 2 * PAD] recovered from crops of :func:`_probe` images."""
    _, h, w = shape
    code = (out[:, 0] * (h * w + 1)).round().long()  # (B, H, W), 0 where padding came in
    b, i, j = (code > 0).nonzero(as_tuple=True)
    first = torch.ones(len(b), dtype=torch.bool)
    first[1:] = b[1:] != b[:-1]  # the first kept pixel of each image
    b, i, j, c = b[first], i[first], j[first], code[b[first], i[first], j[first]] - 1
    return c // w - i + PAD, c % w - j + PAD


def _flipped(out: Tensor) -> Tensor:
    return out[:, 0, 0, 0] > out[:, 0, 0, -1]


def _factors(before: Tensor, after: Tensor, kind: str) -> Tensor:
    """The jitter factor per image of one colour operation (probe values stay inside [0, 1])."""
    if kind == "brightness":
        return (after / before).mean((1, 2, 3))
    w = before.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    if kind == "contrast":
        grey = (before * w).sum(1, keepdim=True) if before.shape[1] == 3 else before
        m = grey.mean((1, 2, 3), keepdim=True)
    else:
        m = (before * w).sum(1, keepdim=True)
    return ((after - m) * (before - m)).sum((1, 2, 3)) / ((before - m) ** 2).sum((1, 2, 3))


def check(n: int = 4000) -> None:
    print(f"\nSame augmentation? Each operation alone on {n} probe images (no assertions):")
    torch.manual_seed(0)
    for name, (_, shape) in SIZES.items():
        c, h, w = shape
        probe = _probe(shape).expand(n, c, h, w).contiguous()

        def per_sample(t: Callable, x: Tensor) -> Tensor:
            return torch.stack([t(tv_tensors.Image(x[i])).as_subclass(Tensor) for i in range(n)])

        print(f"  {name} ({'x'.join(map(str, shape))})")
        for side, crop in (
            ("v2    ", per_sample(v2.RandomCrop(h, padding=PAD), probe)),
            ("visrep", random_crop(probe, PAD)),
        ):
            oy, ox = _crop_offsets(crop, shape)
            hist = torch.bincount(torch.cat([oy, ox]), minlength=2 * PAD + 1).tolist()
            print(
                f"    {side} crop offsets: y mean {oy.float().mean():.2f} x mean "
                f"{ox.float().mean():.2f} (uniform on 0..{2 * PAD}: {PAD}), range "
                f"[{min(oy.min(), ox.min())}, {max(oy.max(), ox.max())}], counts {hist}"
            )
        f_v2 = _flipped(per_sample(v2.RandomHorizontalFlip(), probe)).float().mean()
        f_vs = _flipped(random_hflip(probe)).float().mean()
        print(f"    fraction flipped: v2 {f_v2:.3f}, visrep {f_vs:.3f} (expected 0.5)")
        # colour probes: mid-range values so no jitter factor in [0.8, 1.2] reaches a clamp
        g = torch.Generator().manual_seed(1)
        colour = (0.3 + 0.4 * torch.rand(1, c, h, w, generator=g)).expand(n, c, h, w)
        for kind in ("brightness", "contrast", "saturation"):
            if kind == "saturation" and c != 3:
                print("    saturation: not applied to 1-channel images by either side")
                continue
            opts = {kind: JITTER}
            a = _factors(colour, per_sample(v2.ColorJitter(**opts), colour), kind)
            b = _factors(colour, color_jitter(colour, **opts), kind)
            print(
                f"    {kind:<10} factor: v2 [{a.min():.3f}, {a.max():.3f}] mean {a.mean():.3f}"
                f" std {a.std():.3f}; visrep [{b.min():.3f}, {b.max():.3f}] mean {b.mean():.3f}"
                f" std {b.std():.3f} (uniform on [{1 - JITTER}, {1 + JITTER}]: std "
                f"{2 * JITTER / 12**0.5:.3f})"
            )
        # the whole pipeline on the benchmark's own images: output statistics
        ds = make_images(n, shape)
        x = torch.stack([ds[i][IMAGE] for i in range(n)])
        a = per_sample(v2_augment(h), x)
        b = augment_batch(x, CFG)
        print(
            f"    whole pipeline, pixel mean/std: v2 {a.mean():.4f}/{a.std():.4f}, visrep "
            f"{b.mean():.4f}/{b.std():.4f}, zero (padding) fraction v2 {(a == 0).float().mean():.4f}"
            f" visrep {(b == 0).float().mean():.4f}"
        )
    print(
        "  Difference: v2.ColorJitter applies brightness, contrast and saturation in a random order"
        " per image; visrep always in that fixed order."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per row (median)")
    parser.add_argument("--device", default="cpu", help="where visrep's augment_batch runs")
    parser.add_argument("--no-check", action="store_true", help="skip the statistics section")
    a = parser.parse_args()
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, repeats {a.repeats}"
    )
    for name, (n, shape) in SIZES.items():
        benchmark(name, n, shape, a)
    if not a.no_check:
        check()
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
