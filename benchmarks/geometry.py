"""Differentiable-geometry benchmarks (issue 18): visrep's spatial-transformer sampler against
the seed's naive kernel formula and against kornia, on the same batch.

``--sections`` (default ``sampler,softargmax``), on each case
``BxCxHxW`` of ``--cases`` (default ``64x1x28x28`` and ``16x3x64x64``): ``B`` images of ``C``
channels (uniform noise, seeded), warped by ``B`` random affine transforms (identity plus
Gaussian noise of 0.2, seeded) to an output of the input size, float32 (or ``--dtype``), on
``--device``.

``sampler``: images per second of the warp, ``--backward`` adding the backward pass to the
image and the sampling coordinates (a training step's sampler part). Sides, all on the same
images and transforms with ``align_corners=True``:

- ``visrep``: :func:`~visrep.models.layers.affine_grid` then
  :func:`~visrep.models.layers.bilinear_sample` (torch's ``affine_grid`` / ``grid_sample``);
- ``naive``: :func:`~visrep.models.layers.bilinear_kernel_reference`, seed 001's
  ``V_i = sum_n sum_m U_nm max(0, 1 - |x_i - m|) max(0, 1 - |y_i - n|)`` over every input pixel
  (``O(H W)`` per output pixel; vectorised, no Python loops);
- ``kornia``: ``kornia.geometry.transform.warp_affine`` with the same transforms as pixel
  matrices (``denormalize_homography`` of the inverse of ``theta``), bilinear, zero padding.

Checked and printed (``same``): both other sides agree with visrep to 1e-4 (float32; 1e-9 in
float64) in the output (and, with ``--backward``, in the image gradient). Timed: ``--repeat``
calls per measurement, sides alternating over ``--rounds`` (ABBA order), after one warm-up call
each; medians; ratios visrep / other in images/s (above 1: visrep faster). CUDA timings are
synchronised.

``softargmax``: heat maps per second (``B C`` maps of ``H x W``, uniform scores, ``--beta``)
of seed 001's soft-argmax ``sum_x exp(beta S(x)) x / sum_x exp(beta S(x))``, forward (and
backward to the scores with ``--backward``). Sides:

- ``visrep``: :func:`~visrep.models.layers.heatmaps.soft_argmax` (softmax over the flattened
  map, then the two marginals times the pixel coordinates);
- ``naive``: the formula as written, ``exp(beta S)`` against full ``(H, W)`` coordinate grids,
  summed and divided (no max subtraction: the scores are in [0, 1]);
- ``kornia``: ``kornia.geometry.subpix.spatial_soft_argmax2d`` with ``temperature = 1 / beta``
  and ``normalized_coordinates=False``.

    OMP_NUM_THREADS=1 python benchmarks/geometry.py [--sections sampler,softargmax] [--cases 64x1x28x28]
        [--rounds 4] [--repeat 5] [--backward] [--device cpu] [--dtype float32]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _abba import abba
from torch import Tensor

from visrep.models.layers import affine_grid, bilinear_kernel_reference, bilinear_sample
from visrep.models.layers.heatmaps import soft_argmax

CASES = ("64x1x28x28", "16x3x64x64")


def _case(text: str) -> tuple[int, int, int, int]:
    try:
        b, c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--cases: expected BxCxHxW such as 64x1x28x28, got {text!r}") from None
    if min(b, c, h, w) < 1:
        raise SystemExit(f"--cases: need B, C, H, W >= 1, got {text!r}")
    return b, c, h, w


def bench_sampler(case, args, sync, dev, dtype) -> tuple[dict[str, float], dict[str, bool]]:
    from kornia.geometry.conversions import denormalize_homography
    from kornia.geometry.transform import warp_affine

    b, c, h, w = case
    g = torch.Generator().manual_seed(0)
    image = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64).expand(b, 2, 3)
    theta = theta + 0.2 * torch.randn(b, 2, 3, generator=g, dtype=torch.float64)
    # kornia takes the source -> destination map in pixels (its align_corners=True pixels)
    full = torch.cat([theta, theta.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], dim=1)
    pixels = denormalize_homography(torch.linalg.inv(full), (h, w), (h, w))[:, :2]
    image, theta, pixels = (t.to(dev, dtype) for t in (image, theta, pixels))

    def side(fn: Callable[[Tensor], Tensor]) -> Callable[[], tuple[Tensor, Tensor | None]]:
        def run() -> tuple[Tensor, Tensor | None]:
            if not args.backward:
                with torch.no_grad():
                    return fn(image), None
            x = image.clone().requires_grad_(True)
            out = fn(x)
            out.square().sum().backward()
            return out.detach(), x.grad

        return run

    sides = {
        "visrep": side(lambda x: bilinear_sample(x, affine_grid(theta, (h, w), True), True)),
        "naive": side(
            lambda x: bilinear_kernel_reference(x, affine_grid(theta, (h, w), True), True)
        ),
        "kornia": side(
            lambda x: warp_affine(x, pixels, (h, w), "bilinear", "zeros", align_corners=True)
        ),
    }
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    ref_out, ref_grad = sides["visrep"]()
    same = {}
    for name in ("naive", "kornia"):
        out, grad = sides[name]()
        same[name] = bool(torch.allclose(out, ref_out, atol=tol, rtol=tol)) and (
            grad is None or bool(torch.allclose(grad, ref_grad, atol=tol, rtol=tol))
        )
    med = abba(sides, args.rounds, args.repeat, sync)
    return med, same


def bench_softargmax(case, args, sync, dev, dtype) -> tuple[dict[str, float], dict[str, bool]]:
    from kornia.geometry.subpix import spatial_soft_argmax2d

    b, c, h, w = case
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dev, dtype)
    beta = args.beta
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev, dtype=dtype), torch.arange(w, device=dev, dtype=dtype),
        indexing="ij",
    )  # fmt: skip

    def naive(s: Tensor) -> Tensor:
        e = torch.exp(beta * s)
        z = e.sum((-2, -1))
        return torch.stack(((e * xs).sum((-2, -1)) / z, (e * ys).sum((-2, -1)) / z), -1)

    def side(fn: Callable[[Tensor], Tensor]) -> Callable[[], tuple[Tensor, Tensor | None]]:
        def run() -> tuple[Tensor, Tensor | None]:
            if not args.backward:
                with torch.no_grad():
                    return fn(maps), None
            x = maps.clone().requires_grad_(True)
            out = fn(x)
            out.square().sum().backward()
            return out.detach(), x.grad

        return run

    sides = {
        "visrep": side(lambda s: soft_argmax(s, beta)),
        "naive": side(naive),
        "kornia": side(lambda s: spatial_soft_argmax2d(s, torch.tensor(1.0 / beta), False)),
    }
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    ref_out, ref_grad = sides["visrep"]()
    same = {}
    for name in ("naive", "kornia"):
        out, grad = sides[name]()
        same[name] = bool(torch.allclose(out, ref_out, atol=tol, rtol=tol)) and (
            grad is None or bool(torch.allclose(grad, ref_grad, atol=tol, rtol=tol))
        )
    med = abba(sides, args.rounds, args.repeat, sync)
    return {k: v / c for k, v in med.items()}, same  # per map: rates below count B C maps


SECTIONS = {"sampler": bench_sampler, "softargmax": bench_softargmax}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="sampler,softargmax", help="comma-separated: " + ", ".join(SECTIONS))
    add("--cases", default=",".join(CASES), help="comma-separated BxCxHxW")
    add("--rounds", type=int, default=4, help="ABBA rounds")
    add("--repeat", type=int, default=5, help="calls per measurement")
    add("--backward", action="store_true", help="time forward + backward")
    add("--beta", type=float, default=10.0, help="soft-argmax inverse temperature")
    add("--device", default="cpu", help="cpu or cuda")
    add("--dtype", default="float32", choices=("float32", "float64"))
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not names or sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    import kornia

    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(
        f"== geometry: visrep vs the seed's naive formula and kornia {kornia.__version__}; "
        f"device {dev}, {args.dtype}, threads={torch.get_num_threads()}, "
        f"{'forward + backward' if args.backward else 'forward'}; {args.rounds} rounds ABBA x "
        f"{args.repeat} calls, medians; img/s = images (sampler) or heat maps (softargmax) per second =="
    )
    print(
        f"  {'section':<10} {'case BxCxHxW':<13} {'visrep img/s':>13} {'naive img/s':>12} "
        f"{'kornia img/s':>13} {'vs naive':>9} {'vs kornia':>10}  same (naive, kornia)"
    )
    for text in args.cases.split(","):
        case = _case(text.strip())
        for name in names:
            med, same = SECTIONS[name](case, args, sync, dev, dtype)
            rate = {k: case[0] / v for k, v in med.items()}
            flags = ", ".join("yes" if same[k] else "NO" for k in ("naive", "kornia"))
            print(
                f"  {name:<10} {text.strip():<13} {rate['visrep']:13.0f} {rate['naive']:12.0f} "
                f"{rate['kornia']:13.0f} {rate['visrep'] / rate['naive']:9.2f} "
                f"{rate['visrep'] / rate['kornia']:10.2f}  {flags}"
            )


if __name__ == "__main__":
    main()
