"""visrep's training throughput against a plain PyTorch loop on the same model, data and batch size.

Both train an ImageClassifier (ResNet-18, small-image stem, 32x32 RGB, 10 classes) with the
same SGD optimiser and per-step schedule on the same in-memory images. visrep runs through
its real CLI (`visrep fit`: LightningCLI, sample dicts and their collate, the epoch-seeded
sampler, metrics, checkpoints, run directory); the baseline is a hand-written loop over
``(image, label)`` tuples with torch's default collate and shuffling. Only training batches are timed (from the first batch of an epoch to the
end of its last batch; validation and the first, warm-up epoch are excluded), and the two
sides alternate over several rounds so machine load affects both alike.

    python benchmarks/train_overhead.py [--images 1024] [--batch 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from visrep.cli import main
from visrep.data.base import ImageDataModule, LoaderConfig, SplitConfig, Splits
from visrep.data.datasets import ArrayImageDataset
from visrep.data.samples import batch_size
from visrep.models import ImageClassifier, create_backbone
from visrep.tasks import OptimConfig, build_optimizer, build_scheduler

N_IMAGES = 1024


def make_data(n: int) -> ArrayImageDataset:
    rng = np.random.default_rng(0)
    return ArrayImageDataset(
        rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)
    )


class PlainDataset(Dataset):
    """What a plain PyTorch loop reads: ``(image, label)`` tuples of the same arrays, converted
    to float in [0, 1] exactly as :class:`ArrayImageDataset` does, without sample dicts."""

    def __init__(self, ds: ArrayImageDataset, indices: list[int]) -> None:
        self.images, self.targets, self.scale = ds.images, ds.targets, ds.scale
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.indices[i]
        x = torch.from_numpy(np.array(self.images[j], dtype=np.float32, copy=True))
        return x.mul_(self.scale), int(self.targets[j])


class SyntheticDataModule(ImageDataModule):
    """Random 32x32 RGB images (the benchmark's data), split like any visrep source."""

    def __init__(
        self,
        loader: LoaderConfig = LoaderConfig(batch_size=64),
        split: SplitConfig = SplitConfig(val_fraction=0.1, test_fraction=0.1),
    ) -> None:
        super().__init__(loader, split)

    def load(self) -> Splits:
        ds = make_data(N_IMAGES)
        return Splits(ds, ds.targets, [str(i) for i in range(10)])


EPOCHS: list[tuple[float, int]] = []  # filled by the EpochTimer that the CLI instantiates


class EpochTimer(L.Callback):
    """Records the seconds and images of each training epoch's batches into ``EPOCHS``."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t0, self.n = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.n += batch_size(batch)
        self.t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        EPOCHS.append((self.t - self.t0, self.n))


def visrep_run(batch: int, epochs: int) -> float:
    EPOCHS.clear()
    with tempfile.TemporaryDirectory() as d:
        code = main([
            "fit", "--model.backbone", "resnet18", "--model.backbone.small_stem", "true",
            "--data", f"{__name__}.SyntheticDataModule", "--data.loader.batch_size", str(batch),
            "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.callbacks", f"{__name__}.EpochTimer", "--test_after_fit", "false", "--run_dir", f"{d}/run",
        ])  # fmt: skip
    assert code == 0
    return _rate(EPOCHS[1:])


def plain_run(batch: int, epochs: int) -> float:
    dm = SyntheticDataModule(loader=LoaderConfig(batch_size=batch))
    dm.setup()
    torch.manual_seed(0)
    net = ImageClassifier(
        create_backbone("resnet18", in_chans=3, num_classes=10, img_size=32, small_stem=True),
        dm.mean,
        dm.std,
    )
    cfg = OptimConfig()
    loader = DataLoader(
        PlainDataset(dm.train_set.dataset, dm.train_set.indices),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
    )
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, cfg, len(loader), epochs)
    net.train()
    times = []
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n += len(y)
        times.append((time.perf_counter() - t0, n))
    return _rate(times[1:])


def _rate(epochs: list[tuple[float, int]]) -> float:
    return sum(n for _, n in epochs) / sum(t for t, _ in epochs)


def run() -> None:
    global N_IMAGES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    N_IMAGES = a.images
    print(
        f"ResNet-18 (small stem), 32x32x3, batch {a.batch}, {a.images} images, torch threads {torch.get_num_threads()}"
    )
    plain, ours = [], []
    for r in range(a.rounds):
        plain.append(plain_run(a.batch, a.epochs))
        ours.append(visrep_run(a.batch, a.epochs))
        print(f"round {r}: plain {plain[-1]:.1f} img/s   visrep {ours[-1]:.1f} img/s")
    p, v = statistics.median(plain), statistics.median(ours)
    print(f"plain PyTorch loop: {p:.1f} img/s")
    print(f"visrep fit:         {v:.1f} img/s")
    print(f"ratio visrep/plain: {v / p:.3f}   overhead: {100 * (1 - v / p):.1f}%")


if __name__ == "__main__":
    run()
