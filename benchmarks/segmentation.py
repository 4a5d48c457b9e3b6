"""Segmentation speed: visrep's U-Net against segmentation_models_pytorch, dense CRF against exact.

(a) Training images/s (forward, cross-entropy, backward, SGD step with momentum; batch 8,
random ``3 x H x W`` images and 11-class targets, CamVid's 240x180 rounded to 240x176 by
default) of visrep's ``unet`` with the ``resnet18`` encoder against
``segmentation_models_pytorch.Unet("resnet18", encoder_weights=None, classes=11)``, for each
thread count asked for. The two sides alternate over ``--rounds`` so that machine load affects
both alike (in ABBA order: the side that runs first in a round was seen to be slower); each
round times ``--steps`` steps after one warm-up step; the median step time is reported. Both
are the bare segmenters (visrep's ``ImageSegmenter`` normalisation is left out). Parameter
counts are printed; the architectures are the same (see :mod:`visrep.models.segmentation.unet`),
so the counts match. The comparison is skipped, with a line saying so, when
segmentation_models_pytorch is not installed (a test-only reference:
``pip install segmentation-models-pytorch``).

(b) Dense-CRF milliseconds per 240x180 image (11 labels, 5 mean-field iterations, the paper's
defaults) of :func:`visrep.models.layers.crf.dense_crf` with windows 9 and 5 against the exact
all-pairs :func:`~visrep.models.layers.crf.dense_crf_exact` on the full image. The exact
version recomputes its ``N x N`` kernel (N = 43,200) in every iteration, so each iteration
costs the same; it runs ``--exact-iterations`` iterations (default 1: several minutes per
iteration on one core) and its 5-iteration time is that time scaled by ``5 / K`` (printed as
such; ``--exact-iterations 5`` measures it directly). The max abs difference of the marginals
``Q`` (and the mean, since the max is often a label flipped outright, 1.0) compares the
windowed and the exact CRF after the same ``K`` iterations on the full image. The input is
benchmarks/crf.py's synthetic scene (discs and rectangles plus noise, noisy one-hot unaries).

    python benchmarks/segmentation.py [--size 240x176] [--batch 8] [--threads 1,2] [--steps 3]
        [--rounds 2] [--exact-iterations 1] [--skip-unet] [--skip-crf]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visrep.models.layers.crf import dense_crf, dense_crf_exact
from visrep.models.segmentation import SEGMENTERS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crf import _scene  # the CRF benchmark's synthetic scene, not copied

NUM_CLASSES = 11


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _step_times(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """Seconds of each of ``steps`` SGD steps, after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return times


def bench_unet(args: argparse.Namespace) -> None:
    w, h = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    ours = SEGMENTERS.build(
        {"class_path": "unet", "init_args": {"encoder": "resnet18"}}, 3, NUM_CLASSES
    )
    print(f"(a) U-Net + ResNet-18 training, batch {args.batch}, 3x{h}x{w}, {NUM_CLASSES} classes")
    print(f"    visrep unet(encoder=resnet18):       {_params(ours):,} parameters")
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        print("    segmentation_models_pytorch is not installed: comparison skipped")
        return
    import segmentation_models_pytorch as smp

    ref = smp.Unet("resnet18", encoder_weights=None, classes=NUM_CLASSES)
    diff = _params(ours) - _params(ref)
    print(f"    smp.Unet('resnet18', classes=11):     {_params(ref):,} parameters")
    if diff == 0:
        print(
            "    equal: the same encoder tensors (timm's ResNet-18, torchvision's layout, no fc), "
            "the same 5 decoder blocks (256,128,64,32,16) and 3x3 head"
        )
    else:
        print(f"    difference (visrep - smp): {diff:+,} parameters")
    x = torch.rand(args.batch, 3, h, w)
    y = torch.randint(0, NUM_CLASSES, (args.batch, h, w))
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        t_ours, t_ref = [], []
        for r in range(args.rounds):  # ABBA order: whichever runs first is not favoured
            for m, times in ((ours, t_ours), (ref, t_ref))[:: 1 if r % 2 == 0 else -1]:
                times += _step_times(m, x, y, args.steps)
        ips_ours = args.batch / statistics.median(t_ours)
        ips_ref = args.batch / statistics.median(t_ref)
        print(
            f"    threads={threads}: visrep {ips_ours:6.2f} images/s | smp {ips_ref:6.2f} "
            f"images/s | visrep/smp = {ips_ours / ips_ref:.3f} "
            f"({len(t_ours)} timed steps each, median)"
        )


def _ms(fn: Callable[[], torch.Tensor], reps: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times), out


def bench_crf(args: argparse.Namespace) -> None:
    h, w, iters, k = 180, 240, 5, args.exact_iterations
    gen = torch.Generator().manual_seed(0)
    unary, image = _scene(NUM_CLASSES, h, w, gen)
    print(
        f"(b) dense CRF, {w}x{h}, {NUM_CLASSES} labels, {iters} iterations, "
        f"threads={torch.get_num_threads()}"
    )
    with torch.no_grad():
        t0 = time.perf_counter()
        q_exact = dense_crf_exact(unary, image, iterations=k)
        exact_ms = 1000 * (time.perf_counter() - t0) * iters / k
        how = "measured" if k == iters else f"{k} iteration(s) measured, x{iters / k:g}"
        print(f"    exact (all pairs):  {exact_ms:10.0f} ms/image ({how})")
        for window in (9, 5):
            ms, _ = _ms(lambda r=window: dense_crf(unary, image, iterations=iters, window=r), 3)
            q = dense_crf(unary, image, iterations=k, window=window)
            err = (q - q_exact).abs().max().item()
            mean_err = (q - q_exact).abs().mean().item()
            agree = (q.argmax(1) == q_exact.argmax(1)).float().mean().item()
            print(
                f"    window {window}: {ms:10.1f} ms/image | exact/window = {exact_ms / ms:8.0f}x "
                f"| after {k} iteration(s): max|Q_window - Q_exact| = {err:.4f} "
                f"(mean {mean_err:.4f}), same label on {100 * agree:.2f}% of pixels"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="240x176", help="WxH of the training images")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--exact-iterations", type=int, default=1, choices=range(1, 6))
    ap.add_argument("--skip-unet", action="store_true")
    ap.add_argument("--skip-crf", action="store_true")
    args = ap.parse_args()
    if not args.skip_unet:
        bench_unet(args)
    if not args.skip_crf:
        torch.set_num_threads(int(args.threads.split(",")[0]))
        bench_crf(args)


if __name__ == "__main__":
    main()
