"""Batch-norm folding: eval-mode inference throughput before and after ``fold_batchnorm``.

Times ``resnet18`` (small stem) on 32x32 images and ``small_cnn`` in the same process, eager and
in eval mode under ``torch.inference_mode``, alternating the two variants over several rounds and
keeping the median so that load from other processes affects both alike. Prints images/s before
and after folding, the speed-up ratio and the largest output difference (seed 002: "no overhead
at test-time: can be fused with previous layer").

    python benchmarks/bn_fold.py [--batch 32] [--rounds 3] [--iters 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from visrep.analysis.bn_fold import find_conv_bn_pairs, fold_batchnorm
from visrep.models import create_backbone


def _throughput(model: nn.Module, x: torch.Tensor, iters: int) -> float:
    with torch.inference_mode():
        model(x)  # warm-up (allocator, cuDNN autotune)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return iters * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'model':<10} {'pairs':>5} {'before img/s':>13} {'after img/s':>12} {'speed-up':>9}")
    for name in ("resnet18", "small_cnn"):
        model = create_backbone(name, in_chans=3, num_classes=10, img_size=32).to(device).eval()
        folded = fold_batchnorm(model)
        x = torch.randn(args.batch, 3, 32, 32, device=device)
        before, after = [], []
        for _ in range(args.rounds):
            before.append(_throughput(model, x, args.iters))
            after.append(_throughput(folded, x, args.iters))
        b, a = statistics.median(before), statistics.median(after)
        with torch.inference_mode():
            diff = (model(x) - folded(x)).abs().max().item()
        pairs = len(find_conv_bn_pairs(model))
        print(f"{name:<10} {pairs:>5} {b:>13.1f} {a:>12.1f} {a / b:>8.2f}x   max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
