"""PointNet benchmarks: farthest-point sampling against the straightforward implementations.

``--sections`` (default ``fps``):

``fps``: sampled points/s (``B * k`` indices per second) of visrep's batched
:func:`~visrep.data.pointcloud.farthest_point_sample` (one loop over the ``k`` picks, vectorised
over clouds and points; coordinates laid out ``(B, 3, N)``) against two references measured in
the same process on the same points, both from the widely used PointNet++ re-implementation
(yanx27/Pointnet_Pointnet2_pytorch), started at point 0 as visrep is:

* ``numpy``: ``farthest_point_sample`` of its ``ModelNetDataLoader``, called once per cloud (a
  Python loop over the batch; per pick a ``(N, 3)`` difference, squared norm over the last axis,
  a masked running-minimum update and an argmax);
* ``torch``: ``farthest_point_sample`` of its ``pointnet2_utils`` (batched over clouds, ``(B, N,
  3)`` layout, the distance summed over the last axis, a masked update).

All three must return the same indices (checked and printed). Cases ``BxNxk``: ``32x1024x512``
(a ModelNet batch sampled to PointNet++'s 512 centroids) and ``1x120000x16384`` (a full KITTI
velodyne scan, ~120k points, sampled to 16,384 points); the points are seeded Gaussian float32
(FPS's cost does not depend on where the points are). Timed: whole calls, sides alternating over
``--fps-rounds`` (ABBA), medians; ratios visrep / reference (above 1: visrep faster).
``--device cuda`` runs visrep and the torch reference on the GPU (synchronised), numpy on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/pointnet.py [--sections fps] [--fps-cases 32x1024x512]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from visrep.data.pointcloud import farthest_point_sample

FPS_CASES = ("32x1024x512", "1x120000x16384")


# -- fps: farthest-point sampling against the common implementations ---------------------------
def fps_numpy(point: np.ndarray, npoint: int) -> np.ndarray:
    """yanx27/Pointnet_Pointnet2_pytorch ``data_utils/ModelNetDataLoader.farthest_point_sample``
    (one cloud ``(N, D)``), starting at point 0 instead of a random one."""
    n, _ = point.shape
    xyz = point[:, :3]
    centroids = np.zeros((npoint,), dtype=np.int64)
    distance = np.ones((n,)) * 1e10
    farthest = 0
    for i in range(npoint):
        centroids[i] = farthest
        centroid = xyz[farthest, :]
        dist = np.sum((xyz - centroid) ** 2, -1)
        mask = dist < distance
        distance[mask] = dist[mask]
        farthest = np.argmax(distance, -1)
    return centroids


def fps_torch(xyz: Tensor, npoint: int) -> Tensor:
    """yanx27/Pointnet_Pointnet2_pytorch ``models/pointnet2_utils.farthest_point_sample``
    (``(B, N, 3)``), starting at point 0 instead of a random one."""
    device = xyz.device
    b, n, _ = xyz.shape
    centroids = torch.zeros(b, npoint, dtype=torch.long, device=device)
    distance = torch.ones(b, n, device=device) * 1e10
    farthest = torch.zeros(b, dtype=torch.long, device=device)
    batch_indices = torch.arange(b, dtype=torch.long, device=device)
    for i in range(npoint):
        centroids[:, i] = farthest
        centroid = xyz[batch_indices, farthest, :].view(b, 1, 3)
        dist = torch.sum((xyz - centroid) ** 2, -1)
        mask = dist < distance
        distance[mask] = dist[mask]
        farthest = torch.max(distance, -1)[1]
    return centroids


def _case(text: str) -> tuple[int, int, int]:
    try:
        b, n, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--fps-cases: expected BxNxk such as 32x1024x512, got {text!r}") from None
    if not 1 <= k <= n or b < 1:
        raise SystemExit(f"--fps-cases: need B >= 1 and 1 <= k <= N, got {text!r}")
    return b, n, k


def _fps_case(
    b: int, n: int, k: int, dev: torch.device, rounds: int
) -> tuple[dict[str, float], bool]:
    """Sampled points/s of each side on one case, and whether all returned the same indices."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    pts = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(0))
    pts_dev, pts_np = pts.to(dev), pts.numpy()

    def visrep_side() -> np.ndarray:
        out = farthest_point_sample(pts_dev, k)
        sync()
        return out.cpu().numpy()

    def numpy_side() -> np.ndarray:
        return np.stack([fps_numpy(pts_np[i], k) for i in range(b)])

    def torch_side() -> np.ndarray:
        out = fps_torch(pts_dev, k)
        sync()
        return out.cpu().numpy()

    sides: dict[str, Callable[[], np.ndarray]] = {
        "visrep": visrep_side, "numpy": numpy_side, "torch": torch_side
    }  # fmt: skip
    farthest_point_sample(pts_dev[:, : min(n, 64)], 2)  # warm-up (and the CUDA context)
    fps_torch(pts_dev[:, : min(n, 64)], 2)
    sync()
    times: dict[str, list[float]] = {s: [] for s in sides}
    results: dict[str, np.ndarray] = {}
    order = list(sides)
    for r in range(rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            results[side] = sides[side]()
            times[side].append(time.perf_counter() - t)
    same = all(np.array_equal(results["visrep"], results[s]) for s in ("numpy", "torch"))
    return {s: b * k / statistics.median(times[s]) for s in sides}, same


def bench_fps(args: argparse.Namespace) -> None:
    """Farthest-point sampling: visrep against the numpy loop and the torch reference."""
    dev = torch.device(args.device)
    print(
        f"== fps: visrep farthest_point_sample vs yanx27's numpy (per cloud) and torch (batched) "
        f"implementations; device {dev}, threads={torch.get_num_threads()}, float32 Gaussian "
        f"points, start at point 0; {args.fps_rounds} rounds, ABBA, medians; points/s = B*k "
        "sampled indices per second =="
    )
    print(
        f"  {'case BxNxk':<16} {'visrep pts/s':>13} {'numpy pts/s':>12} {'visrep/numpy':>13} "
        f"{'torch pts/s':>12} {'visrep/torch':>13}  same"
    )
    for text in args.fps_cases.split(","):
        rate, same = _fps_case(*_case(text.strip()), dev, args.fps_rounds)
        print(
            f"  {text.strip():<16} {rate['visrep']:13.0f} {rate['numpy']:12.0f} "
            f"{rate['visrep'] / rate['numpy']:13.2f} {rate['torch']:12.0f} "
            f"{rate['visrep'] / rate['torch']:13.2f}  {'yes' if same else 'NO'}"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"fps": bench_fps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="fps", help="comma-separated: " + ", ".join(SECTIONS))
    add("--fps-cases", default=",".join(FPS_CASES), help="fps: comma-separated BxNxk")
    add("--fps-rounds", type=int, default=2, help="fps: ABBA rounds")
    add("--device", default="cpu", help="fps: cpu or cuda (numpy runs on the CPU)")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
