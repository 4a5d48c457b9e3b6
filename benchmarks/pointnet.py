"""PointNet benchmarks: training throughput against a plain loop, and farthest-point sampling
against the straightforward implementations.

``--sections`` (default ``train,fps``):

``train``: training clouds/s of ``visrep fit --config modelnet10_pointnet`` (LightningCLI, the
ModelNet data module's sample dicts and per-sample augmentation, PointCloudClassificationTask's
steps with its metrics and logging, the cosine schedule) against a hand-written loop on the same
network (``POINT_NETS.build`` of the config's ``pointnet``, seed 0), data (the same
``ModelNetDataModule`` training set, so the same clouds, augmentation and ``EpochShuffleSampler``
order; torch's DataLoader with visrep's collate), loss (cross-entropy plus the net's
regulariser), Adam settings and precision (``--train-precision``: ``32-true``, or ``bf16-mixed``
as ``torch.autocast`` on both sides); no scheduler, metrics or logging. Data: ``--train-clouds``
synthetic clouds of 1,024 points in 10 classes (seeded Gaussian blobs: the cost does not depend
on the shapes), written as a ModelNet-layout npz. Timed: the training batches of each epoch after
the first (visrep: a callback from the epoch's start to its last batch, before validation), wall
and process CPU time, sides alternating over ``--rounds`` (ABBA); medians give visrep / plain.

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

    OMP_NUM_THREADS=1 python benchmarks/pointnet.py [--sections train,fps] [--rounds 2]
        [--train-clouds 320] [--train-epochs 3] [--train-precision 32-true]
        [--fps-cases 32x1024x512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
# first: it imports visrep.cli before Lightning (the CLI's environment on both sides)
from _fit_timing import Epochs, adam, compare, fit_epochs, time_epochs

from visrep.data.pointcloud import farthest_point_sample

FPS_CASES = ("32x1024x512", "1x120000x16384")
CONFIG = "modelnet10_pointnet"


# -- train: visrep fit against a plain loop ---------------------------------------------------------
def write_clouds(path: Path, n: int, points: int = 1024, classes: int = 10) -> Path:
    """A ModelNet-layout npz of ``n`` training and ``n // 4`` test clouds (seeded Gaussian blobs,
    one mean offset per class)."""
    rng = np.random.default_rng(0)

    def part(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(m) % classes
        x = rng.normal(size=(m, points, 3)) + y[:, None, None] * 0.1
        return x.astype(np.float32), y.astype(np.int64)

    (xt, yt), (xe, ye) = part(n), part(max(classes, n // 4))
    names = np.array([f"c{i}" for i in range(classes)])
    np.savez(path, x_train=xt, y_train=yt, x_test=xe, y_test=ye, classes=names)
    return path


def visrep_fit(npz: Path, epochs: int, precision: str) -> Epochs:
    """``visrep fit --config modelnet10_pointnet`` on ``npz`` in this process."""
    return fit_epochs(CONFIG, ["--data.root", str(npz), "--trainer.precision", precision], epochs)


def plain_loop(npz: Path, epochs: int, precision: str) -> Epochs:
    """The same network, data, loss, Adam settings and precision in a hand-written loop."""
    import lightning as L
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from visrep.configs import read_config, resolve_config
    from visrep.data.base import EpochShuffleSampler
    from visrep.data.pointcloud import ModelNetDataModule, PointAugmentConfig
    from visrep.data.samples import LABEL, POINTS, collate
    from visrep.models.pointcloud import POINT_NETS

    cfg = read_config(resolve_config(CONFIG))
    hp, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    L.seed_everything(cfg["seed_everything"], verbose=False)
    dm = ModelNetDataModule(str(npz), augment=PointAugmentConfig(**data["augment"]))
    dm.setup()
    net = POINT_NETS.build(hp["net"], dm.spec().point_dim, dm.spec().num_classes)
    opt = adam(net, hp["optim"])
    bs = data["loader"]["batch_size"]
    sampler = EpochShuffleSampler(dm.train_set, torch.initial_seed())
    loader = DataLoader(
        dm.train_set, batch_size=bs, sampler=sampler, drop_last=True, collate_fn=collate
    )
    bf16 = precision == "bf16-mixed"

    def run_epoch(epoch: int) -> int:
        sampler.set_epoch(epoch)
        n = 0
        for batch in loader:
            x, y = batch[POINTS], batch[LABEL]
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                logits, reg = net.forward_with_aux(x)
                loss = F.cross_entropy(logits, y) + (reg if reg is not None else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        return n

    net.train()
    return time_epochs(epochs, run_epoch)


def bench_train(args: argparse.Namespace) -> None:
    """PointCloudClassificationTask's training throughput against a plain loop."""
    print(
        f"== train: visrep fit --config {CONFIG} vs a plain loop (threads="
        f"{torch.get_num_threads()}; {args.train_clouds} synthetic clouds of 1,024 points, "
        f"precision {args.train_precision}; {args.train_epochs} epochs, the first not timed; "
        f"{args.rounds} rounds, ABBA) =="
    )
    with tempfile.TemporaryDirectory() as d:
        npz = write_clouds(Path(d) / "clouds.npz", args.train_clouds)
        e, p = args.train_epochs, args.train_precision
        compare(args.rounds, lambda: plain_loop(npz, e, p), lambda: visrep_fit(npz, e, p), "clouds")


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


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"train": bench_train, "fps": bench_fps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="train,fps", help="comma-separated: " + ", ".join(SECTIONS))
    add("--rounds", type=int, default=2, help="train: ABBA rounds")
    add("--train-clouds", type=int, default=320, help="train: synthetic training clouds")
    add("--train-epochs", type=int, default=3, help="train: epochs per run (the first not timed)")
    add("--train-precision", default="32-true", choices=("32-true", "bf16-mixed"))
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
