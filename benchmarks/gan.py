"""GAN benchmarks: GANTask's training throughput against a plain two-optimiser loop (and where
the difference goes), and FID feature extraction against torch-fidelity with the same extractor.

``--sections`` (default ``task,fid``):

``task``: training iterations/s (iteration = training batch) of ``visrep fit --config <case>``
(LightningCLI, the data module's batch dicts, GANTask's manual optimisation through Lightning's
optimiser wrappers and ``manual_backward``, its non-finite-loss check once a batch, schedules that
are stepped when they vary, epoch means, validation, checkpoints) against a hand-written loop with
the same DCGAN (generator and discriminator sized from the data, DCGAN init, seed 0), losses
(:mod:`visrep.losses.gan`), Adam settings (:func:`~visrep.tasks.gan.default_gan_optim`), batches
(``EpochShuffleSampler`` order, drop last) and steps (one discriminator step per batch, a generator
step after every ``n_critic``, the discriminator frozen meanwhile); no scheduler (constant rate),
checks or logging. ``--plain-data``: the plain loop reads its images one by one (``items``: a
per-item ``Dataset`` and torch's default collate, what a plain loop usually does) or each batch
with one index operation (``batched``: as visrep's ``ArrayImageDataset.__getitems__`` does, so the
comparison leaves the data path out). Both sides run in this process with the same environment:
``visrep.cli`` is imported before Lightning, so ``PYTORCH_NVML_BASED_CUDA_CHECK`` is the user's on
a machine without a CUDA device (the CLI undoes Lightning's setting,
:func:`visrep.cli.main._restore_nvml_check`), and each case prints the value each side saw. Cases:
``digits_dcgan`` (the config: 8x8 digits, batches of 64, width 32, ``n_critic`` 1: the smallest
step, the worst case for a per-step cost), ``fashion_dcgan`` and ``fashion_wgangp`` (the configs on
``--task-images`` synthetic 28x28 IDX images; WGAN-GP: layer-norm critic, penalty 10, ``n_critic``
5). visrep's ``--model.eval_samples`` is 256 (validation is not timed). Timed: each epoch's
training batches (not validation, setup or the first epoch), wall and process CPU time, sides
alternating over ``--rounds`` (ABBA); medians give visrep / plain and the overhead ``1 - ratio``
(issue 14: at most 5%), and the CPU-time ratios of each round's two adjacent runs their spread.

``profile`` (not by default): thread-CPU ms per iteration of each part (data path, Lightning's
loop, hooks and wrappers, GANTask's code, networks, autograd, Adam; each exclusive of the metered
calls inside it) of ``visrep fit`` and of the plain loop on ``--profile-case`` (``--rounds`` ABBA
runs a side), with the metering's own cost, and the overhead with the shared compute (networks,
losses, autograd, Adam's math and ``zero_grad``: the same work on both sides, whose time drifts
with the load) set equal.

``fid``: images/s of :class:`~visrep.tasks.gan_metrics.GenerativeMetrics` (``update_real`` /
``update_fake``: checks, the FeatureExtractor, torchmetrics' FID and KID accumulation) against
torch-fidelity (test-only; skipped with a line when missing) with the same network as its
``FeatureExtractorBase`` (feature ``embed``), on ``--fid-images`` real and as many generated
uint8 images (real: 7x7 random blocks plus noise; generated: 14x14 blocks, more noise, 3/4 of
the brightness) in batches of ``--fid-batch``. The network: a ``small_cnn`` ImageClassifier,
random weights (seed 0), batch-norm statistics of up to 1,000 real images, frozen. visrep gets
uint8 batches / 255; torch-fidelity a ``Dataset`` of uint8 images (its convention), no workers
(``save_cpu_ram``), cache or CUDA. Rows: ``extract`` (the updates against
``get_featuresdict_from_dataset``, which ``calculate_metrics`` calls) and ``fid`` (plus the
distance: ``fid.compute()`` against ``calculate_metrics(fid=True)``); medians of
``--fid-rounds`` ABBA rounds; ratio visrep / torch-fidelity (above 1: visrep faster).

    OMP_NUM_THREADS=1 python benchmarks/gan.py [--sections task,fid,profile] [--rounds 2] ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# before anything imports Lightning: the CLI then restores PYTORCH_NVML_BASED_CUDA_CHECK
from visrep.cli import main as cli_main
from visrep.losses.gan import discriminator_loss, generator_loss, gradient_penalty

_NVML_VAR = "PYTORCH_NVML_BASED_CUDA_CHECK"
_ENV_SEEN: dict[str, str | None] = {}  # the variable each side saw while training

# -- task: GANTask training throughput against a plain loop ------------------------------------
TASK_CASES: dict[str, dict[str, Any]] = {
    "digits_dcgan": {"config": "digits_dcgan", "idx": False, "epochs": 8},
    "fashion_dcgan": {"config": "fashion_dcgan", "idx": True, "epochs": 4},
    "fashion_wgangp": {"config": "fashion_wgangp", "idx": True, "epochs": 4},
}
Epochs = list[tuple[float, float, int]]  # (wall s, CPU s, iterations) per epoch
_EPOCHS: Epochs = []  # visrep's side, filled by GANEpochTimer


def _blobs(
    rng: np.random.Generator, n: int, c: int, size: int, noise: float = 20.0, cells: int = 7
) -> np.ndarray:
    """``(n, c, size, size)`` uint8: ``cells x cells`` uniform noise upsampled (nearest) plus
    normal pixel noise of std ``noise``."""
    k = -(-size // cells)
    coarse = rng.uniform(0, 255, (n, c, cells, cells)).repeat(k, 2).repeat(k, 3)[..., :size, :size]
    return np.clip(coarse + rng.normal(0, noise, coarse.shape), 0, 255).astype(np.uint8)


def write_idx_folder(root: Path, n_train: int, size: int = 28) -> Path:
    """An MNIST-layout IDX folder of grey ``size x size`` uint8 images (:func:`_blobs`, seeded),
    10 cyclic labels: ``n_train`` training and ``max(n_train // 10, 64)`` test images."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", max(n_train // 10, 64))):
        images = _blobs(rng, n, 1, size).reshape(n, size, size)
        for kind, arr in (("images-idx3", images), ("labels-idx1", np.arange(n) % 10)):
            arr = arr.astype(np.uint8)
            head = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
            (root / f"{split}-{kind}-ubyte").write_bytes(head + arr.tobytes())
    return root


def _timer() -> type:
    import lightning as L

    class GANEpochTimer(L.Callback):
        """visrep's side: wall and process-CPU seconds of each epoch's training batches, from
        the epoch's start to the end of its last batch (validation comes after); switches the
        profile's meters (when set up) on for those of every epoch after the first."""

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            _ENV_SEEN["visrep"] = os.environ.get(_NVML_VAR, "unset")
            _PROFILE.active = bool(_PROFILE.undo) and trainer.current_epoch >= 1
            self.t0, self.c0, self.n = time.perf_counter(), time.process_time(), 0

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.n += 1
            self.t, self.c = time.perf_counter(), time.process_time()
            _PROFILE.active = _PROFILE.active and self.n < trainer.num_training_batches

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            _EPOCHS.append((self.t - self.t0, self.c - self.c0, self.n))

    return GANEpochTimer


GANEpochTimer = _timer()


def _rates(epochs: Epochs) -> tuple[float, float]:
    """Iterations per wall second and per CPU second over the epochs after the first."""
    wall, cpu, n = (sum(e[i] for e in epochs[1:]) for i in range(3))
    return n / wall, n / cpu


def _run_fit(case: str, root: Path | None, epochs: int) -> Epochs:
    """``visrep fit --config <case>`` in this process, in a temporary run directory: the epochs
    GANEpochTimer measured."""
    _EPOCHS.clear()
    data = ["--data.root", str(root)] if root is not None else []
    with tempfile.TemporaryDirectory() as d:
        code = cli_main([
            "fit", "--config", TASK_CASES[case]["config"], *data, "--trainer.max_epochs",
            str(epochs), "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--model.eval_samples", "256",
            "--model.kid_subset_size", "128", "--trainer.callbacks", f"{__name__}.GANEpochTimer",
            "--test_after_fit", "false", "--run_dir", f"{d}/run",
        ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"visrep fit ({case}) failed with exit code {code}")
    return list(_EPOCHS)


class _Batches(torch.utils.data.Dataset):
    """The plain loop's images read a batch at a time (``--plain-data batched``): ``get(indices)``
    gives the stacked batch, which torch's DataLoader asks for through ``__getitems__`` (the
    collate function then passes it through)."""

    def __init__(self, get: Callable[[list[int]], Tensor], n: int) -> None:
        self.get, self.n = get, n

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, indices: list[int]) -> Tensor:
        return self.get(indices)


class _Items(torch.utils.data.Dataset):
    """``n`` items ``get(i)``: the plain loop's images (bare float tensors in [0, 1], converted
    as :class:`~visrep.data.datasets.ArrayImageDataset` does, no sample dicts) and
    torch-fidelity's input (uint8 ``(C, H, W)`` tensors)."""

    def __init__(self, get: Callable[[int], Tensor], n: int) -> None:
        self.get, self.n = get, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        return self.get(i)


def plain_loop(
    case: str, root: Path | None, n_epochs: int, meters: _Meters | None = None,
    data: str = "items",
) -> Epochs:  # fmt: skip
    """The same DCGAN, losses, Adam settings, batches and steps in a hand-written two-optimiser
    loop; ``meters`` (the profile's) are on from the second epoch. ``data``: ``items`` reads
    each image alone (a per-item Dataset, torch's default collate), ``batched`` each batch with
    one index operation (as visrep's ArrayImageDataset does)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from visrep.configs import read_config, resolve_config
    from visrep.data import DigitsDataModule, IDXDataModule, LoaderConfig
    from visrep.data.base import EpochShuffleSampler
    from visrep.models.generative import DCGANDiscriminator, DCGANGenerator
    from visrep.tasks.gan import default_gan_optim

    cfg = read_config(resolve_config(TASK_CASES[case]["config"]))
    hp, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    L.seed_everything(cfg["seed_everything"], verbose=False)
    loader_cfg = LoaderConfig(**data["loader"])
    dm: Any = IDXDataModule(str(root), loader=loader_cfg) if root else DigitsDataModule(loader_cfg)
    dm.setup()
    spec, bs = dm.spec(), loader_cfg.batch_size
    loss, n_critic = hp.get("loss", "nonsaturating"), int(hp.get("n_critic", 1))
    gp_weight, nz, width = float(hp.get("gp_weight", 0.0)), hp["latent_size"], hp["width"]
    gen = DCGANGenerator(nz, spec.in_chans, spec.image_size, width)
    disc = DCGANDiscriminator(spec.in_chans, spec.image_size, width,
                              hp.get("discriminator_norm", "batch"))  # fmt: skip
    o = default_gan_optim(loss, gp_weight)
    g_opt = torch.optim.Adam(gen.parameters(), lr=o.lr, betas=o.betas)
    d_opt = torch.optim.Adam(disc.parameters(), lr=o.lr, betas=o.betas)
    sampler = EpochShuffleSampler(dm.train_set, torch.initial_seed())
    ds, idx = dm.train_set.dataset, dm.train_set.indices

    def image(i: int) -> Tensor:
        x = torch.from_numpy(np.array(ds.images[idx[i]], dtype=np.float32, copy=True))
        return x.mul_(ds.scale)

    def images(rows: list[int]) -> Tensor:
        at = np.asarray([idx[i] for i in rows], dtype=np.int64)
        x = np.ascontiguousarray(ds.images[at], dtype=np.float32)
        return torch.from_numpy(x).mul_(ds.scale)

    items = _Items(image, len(idx)) if data == "items" else _Batches(images, len(idx))
    loader = DataLoader(items, batch_size=bs, sampler=sampler, drop_last=len(idx) > bs,
                        collate_fn=None if data == "items" else _passthrough)  # fmt: skip
    epochs: Epochs = []
    d_steps = 0
    _ENV_SEEN["plain"] = os.environ.get(_NVML_VAR, "unset")
    for epoch in range(n_epochs):
        sampler.set_epoch(epoch)
        if meters is not None:
            meters.active = epoch >= 1
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for x in loader:
            real = x * 2 - 1
            with torch.no_grad():
                fake = gen(torch.randn(len(real), nz))
            d_loss = discriminator_loss(loss, disc(real), disc(fake))
            if gp_weight > 0:
                d_loss = d_loss + gp_weight * gradient_penalty(disc, real, fake)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d_steps += 1
            if d_steps % n_critic == 0:
                disc.requires_grad_(False)
                g_loss = generator_loss(loss, disc(gen(torch.randn(len(real), nz))))
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
                disc.requires_grad_(True)
            n += 1
        epochs.append((time.perf_counter() - t0, time.process_time() - c0, n))
        if meters is not None:
            meters.active = False
    return epochs


def _passthrough(batch: Tensor) -> Tensor:
    return batch


def bench_task(args: argparse.Namespace) -> None:
    """GANTask's training throughput against a plain loop (module docstring, ``task``)."""
    cases = [c.strip() for c in args.task_cases.split(",") if c.strip()]
    if sorted(set(cases) - set(TASK_CASES)):
        raise SystemExit(f"--task-cases: choose from {list(TASK_CASES)}, got {cases}")
    print(
        f"== task: visrep fit (GANTask) vs a plain two-optimiser loop (threads="
        f"{torch.get_num_threads()}; plain data {args.plain_data}; the first epoch of each run not "
        f"timed; {args.rounds} rounds, ABBA; iterations = training batches) =="
    )
    with tempfile.TemporaryDirectory() as d:
        idx = write_idx_folder(Path(d) / "idx", args.task_images)
        for case in cases:
            root = idx if TASK_CASES[case]["idx"] else None
            epochs = args.task_epochs or TASK_CASES[case]["epochs"]
            data = f"{args.task_images} synthetic 28x28 train images" if root else "digits"
            print(f"-- {case} ({data}; {epochs} epochs)")
            res: dict[str, list[tuple[float, float]]] = {"plain": [], "visrep": []}
            _ENV_SEEN.clear()
            for r in range(args.rounds):
                order = ("plain", "visrep") if r % 2 == 0 else ("visrep", "plain")
                for side in order:
                    if side == "plain":
                        epochs_run = plain_loop(case, root, epochs, data=args.plain_data)
                    else:
                        epochs_run = _run_fit(case, root, epochs)
                    res[side].append(_rates(epochs_run))
                (pw, pc), (vw, vc) = res["plain"][-1], res["visrep"][-1]
                print(f"  round {r} ({' then '.join(order)}): plain {pw:.2f} it/s wall, {pc:.2f} "
                      f"it/CPU-s | visrep {vw:.2f} it/s wall, {vc:.2f} it/CPU-s")  # fmt: skip
            print(f"  {_NVML_VAR}: plain {_ENV_SEEN['plain']}, visrep {_ENV_SEEN['visrep']}")
            for i, what in enumerate(("wall clock", "process CPU time")):
                p, v = (statistics.median(x[i] for x in res[k]) for k in ("plain", "visrep"))
                print(f"  median, {what}: plain {p:.2f} it/s | visrep {v:.2f} it/s | ratio "
                      f"visrep/plain {v / p:.4f} | overhead {100 * (1 - v / p):.2f}%")  # fmt: skip
            # the spread: each round's two runs were adjacent in time, so their ratio is paired
            r = sorted(v[1] / p[1] for p, v in zip(res["plain"], res["visrep"], strict=True))
            print(f"  per-round CPU-time ratios: min {r[0]:.4f}, median {statistics.median(r):.4f}, "
                  f"max {r[-1]:.4f} (overhead {100 * (1 - r[-1]):.2f}% to {100 * (1 - r[0]):.2f}%)")  # fmt: skip


# -- profile: where visrep's per-iteration time goes -------------------------------------------
class _Meters:
    """Exclusive thread-CPU seconds and calls of wrapped callables: a stack subtracts each
    metered callee's time from its metered caller's, so the parts add up without overlap.
    Metering starts with ``active``; a call entered while metering is recorded to its end."""

    def __init__(self) -> None:
        self.active = False
        self.excl: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list[float]] = []
        self.undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str | Callable[..., str]) -> None:
        """Replace ``owner.name`` (a class's own function, a module's or an object's) by a
        metered call, booked under ``label`` (or ``label(*args)``)."""
        fn = owner.__dict__[name]
        meters = self

        def metered(*a: Any, **k: Any) -> Any:
            if not (meters.active or meters.stack):
                return fn(*a, **k)
            t0 = time.thread_time()
            meters.stack.append([0.0])
            try:
                return fn(*a, **k)
            finally:
                dt = time.thread_time() - t0
                child = meters.stack.pop()[0]
                key = label(*a, **k) if callable(label) else label
                meters.excl[key] = meters.excl.get(key, 0.0) + dt - child
                meters.calls[key] = meters.calls.get(key, 0) + 1
                if meters.stack:
                    meters.stack[-1][0] += dt

        setattr(owner, name, metered)
        self.undo.append((owner, name, fn))

    def restore(self) -> None:
        for owner, name, fn in reversed(self.undo):
            setattr(owner, name, fn)
        self.undo.clear()
        self.active = False


_PROFILE = _Meters()


def _meter_both(m: _Meters, losses: Any) -> None:
    """What both sides run: data loading, the two networks, losses, autograd and Adam."""
    import torch.utils.data.dataloader as dl

    from visrep.models import generative as g

    opt, health = torch.optim.Optimizer, "_accelerator_graph_capture_health_check"
    for owner, name, label in [
        (dl._SingleProcessDataLoaderIter, "_next_data", "data: DataLoader (sampler, collate)"),
        (torch.utils.data.Subset, "__getitems__", "data: dataset items"),
        (g.DCGANGenerator, "forward", "G forward"), (g.DCGANDiscriminator, "forward", "D forward"),
        *((losses, f, f"{f} (excl. D forward, autograd.grad)") for f in
          ("discriminator_loss", "generator_loss", "gradient_penalty")),
        (torch.autograd, "backward", "autograd backward"),
        (torch.autograd, "grad", "autograd.grad (gradient penalty)"),
        (torch.optim.Adam, "step", "Adam.step (math)"), (opt, "zero_grad", "zero_grad"),
        *([(opt, health, "Adam.step: capture health check (cuda.is_available)")]
          if health in opt.__dict__ else []),
    ]:  # fmt: skip
        m.wrap(owner, name, label)


def _meter_visrep(m: _Meters) -> None:
    """What only ``visrep fit`` runs: Lightning's loop, hooks and wrappers, GANTask's code."""
    import lightning.pytorch as pl
    from lightning.pytorch.core.optimizer import LightningOptimizer
    from lightning.pytorch.loops import fetchers
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
    from lightning.pytorch.strategies import Strategy
    from lightning.pytorch.trainer import call

    import visrep.tasks.gan as gan
    from visrep.tasks.base import Task

    _meter_both(m, gan)
    parts = [
        (_TrainingEpochLoop, "advance", "Lightning: batch loop (rest of advance)"),
        (fetchers._PrefetchDataFetcher, "__next__", "Lightning: data fetcher"),
        (Strategy, "batch_to_device", "Lightning: batch_to_device"),
        (call, "_call_callback_hooks", lambda t, h, *a, **k: f"Lightning: callback hooks ({h})"),
        (call, "_call_lightning_module_hook", "Lightning: module hooks"),
        (call, "_call_strategy_hook", "Lightning: strategy hooks"),
        (pl.LightningModule, "manual_backward", "Lightning: manual_backward plumbing"),
        (pl.LightningModule, "optimizers", "Lightning: optimizers()"),
        (pl.LightningModule, "lr_schedulers", "Lightning: lr_schedulers()"),
        (pl.LightningModule, "log", "Lightning: self.log"),
        (LightningOptimizer, "step", "Lightning: LightningOptimizer.step plumbing"),
        (Task, "on_before_backward", "visrep: non-finite loss check"),
        (torch.optim.lr_scheduler.LRScheduler, "step", "visrep: lr scheduler steps"),
        (gan.GANTask, "training_step", "visrep: training_step (rest)"),
        (gan.GANTask, "discriminator_step", "visrep: discriminator_step (rest)"),
        (gan.GANTask, "generator_step", "visrep: generator_step (rest)"),
        (gan.GANTask, "to_model", "visrep: to_model"),
        (gan.EpochMeans, "add", "visrep: EpochMeans.add"),
        (gan.EpochMeans, "log", "visrep: EpochMeans.log"),
    ]  # fmt: skip
    for owner, name, label in parts:
        m.wrap(owner, name, label)


def _metering_cost(n: int = 20000) -> float:
    """Thread-CPU seconds one metered call adds (a metered no-op)."""
    probe, ns = _Meters(), argparse.Namespace(f=lambda: None)
    probe.wrap(ns, "f", "no-op")
    probe.active, t0 = True, time.thread_time()
    for _ in range(n):
        ns.f()
    return (time.thread_time() - t0) / n


def bench_profile(args: argparse.Namespace) -> None:
    """Thread-CPU ms per iteration of each part of ``visrep fit`` and of the plain loop
    (``--rounds`` ABBA runs of ``--profile-case``, ``--profile-epochs``, the first not metered)."""
    case, m = args.profile_case, _PROFILE
    acc: dict[str, list[Any]] = {k: [{}, 0.0, 0, 0] for k in ("visrep", "plain")}
    with tempfile.TemporaryDirectory() as d:
        root = write_idx_folder(Path(d) / "idx", args.task_images)
        root = root if TASK_CASES[case]["idx"] else None
        for r in range(args.rounds):
            for side in ("visrep", "plain") if r % 2 == 0 else ("plain", "visrep"):
                m.excl, m.calls = {}, {}
                try:
                    if side == "visrep":
                        _meter_visrep(m)
                        epochs = _run_fit(case, root, args.profile_epochs)
                    else:
                        _meter_both(m, sys.modules[__name__])
                        epochs = plain_loop(case, root, args.profile_epochs, m, args.plain_data)
                finally:
                    m.restore()
                a = acc[side]  # {part: s}, CPU s, iterations, metered calls
                a[0] = {k: a[0].get(k, 0.0) + m.excl.get(k, 0.0) for k in {*a[0], *m.excl}}
                a[1:] = [a[1] + sum(e[1] for e in epochs[1:]), a[2] + sum(e[2] for e in epochs[1:]),
                         a[3] + sum(m.calls.values())]  # fmt: skip
    parts = {k: {p: 1000 * v / a[2] for p, v in a[0].items()} for k, a in acc.items()}
    totals = {k: 1000 * a[1] / a[2] for k, a in acc.items()}
    calls = {k: a[3] / a[2] for k, a in acc.items()}
    cost = _metering_cost()
    print(
        f"== profile: {case}, thread-CPU ms per training iteration (epochs 2..{args.profile_epochs}"
        f" of {args.rounds} runs a side, ABBA; plain data {args.plain_data}; {_NVML_VAR} plain {_ENV_SEEN.get('plain')}, "
        f"visrep {_ENV_SEEN.get('visrep')}; parts exclude the "
        f"metered calls inside them; metering {1e6 * cost:.1f} us a call, visrep "
        f"{calls['visrep']:.0f} calls per iteration, plain {calls['plain']:.0f}) =="
    )
    vb, pb = parts["visrep"], parts["plain"]
    rows = [(k, vb.get(k, 0.0), pb.get(k, 0.0)) for k in set(vb) | set(pb)]
    rows.sort(key=lambda r: r[2] - r[1])
    vt, pt = totals["visrep"], totals["plain"]
    vt0, pt0 = vt - 1000 * cost * calls["visrep"], pt - 1000 * cost * calls["plain"]
    rows += [("not in any part (loop body; process - thread CPU)", vt - sum(vb.values()),
              pt - sum(pb.values())), ("total (process CPU)", vt, pt),
             ("total less the metering cost", vt0, pt0)]  # fmt: skip
    print(f"  {'part':<56} {'visrep':>8} {'plain':>8} {'diff':>8}")
    for k, v, p in rows:
        print(f"  {k:<56} {v:8.3f} {p:8.3f} {v - p:+8.3f}")
    print(f"  overhead 1 - plain/visrep: {100 * (1 - pt / vt):.2f}% (less the metering cost: "
          f"{100 * (1 - pt0 / vt0):.2f}%)")  # fmt: skip
    # the shared compute (networks, losses, autograd, Adam's math) is the same work on both sides, but
    # its time drifts with the machine's load between runs: the overhead with it set equal
    compute = [k for k in {*vb, *pb}
               if not k.startswith(("data:", "Lightning:", "visrep:")) and "health" not in k]  # fmt: skip
    pc = sum(pb.get(k, 0.0) for k in compute)
    vr, pr = vt0 - sum(vb.get(k, 0.0) for k in compute), pt0 - pc
    print(f"  outside the shared compute (less the metering cost): visrep {vr:.3f} ms, plain "
          f"{pr:.3f} ms; with the compute equal (plain's {pc:.3f} ms): overhead "
          f"{100 * (1 - pt0 / (pc + vr)):.2f}%")  # fmt: skip


# -- fid: feature extraction against torch-fidelity --------------------------------------------
_TF_NAME = "visrep-bench-small-cnn"


def fid_extractor(args: argparse.Namespace, calibrate: Tensor) -> Any:
    """A visrep ``small_cnn`` ImageClassifier with random weights (seed 0) and batch-norm
    statistics estimated on ``calibrate`` (uint8; so the features are of order one), frozen, as
    a :class:`~visrep.tasks.gan_metrics.FeatureExtractor`."""
    from visrep.models import ImageClassifier, create_backbone
    from visrep.tasks.gan_metrics import FeatureExtractor

    c, h, w = args.fid_shape
    torch.manual_seed(0)
    channels = tuple(int(v) for v in args.fid_channels.split(","))
    bb = create_backbone("small_cnn", in_chans=c, num_classes=10, img_size=(h, w),
                         channels=channels)  # fmt: skip
    net = ImageClassifier(bb, [0.5] * c, [0.25] * c).train()
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # a cumulative average over the calibration batches
    with torch.no_grad():
        for chunk in calibrate.split(250):
            net(chunk.float() / 255)
    return FeatureExtractor(net, c, (h, w), tuple(str(i) for i in range(10)), "random small_cnn")


def _register_torch_fidelity(extractor: Any) -> Any:
    """``extractor`` registered with torch-fidelity as a ``FeatureExtractorBase`` (feature
    ``embed``) reading uint8 images (its convention); returns torch-fidelity's instance."""
    from torch_fidelity import FeatureExtractorBase, register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    class VisrepExtractor(FeatureExtractorBase):
        def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
            super().__init__(name, features_list)
            self.extractor = extractor

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("embed",)

        def forward(self, x: Tensor) -> tuple[Tensor]:
            return (self.extractor(x.float().div_(255)),)

    FEATURE_EXTRACTORS_REGISTRY.pop(_TF_NAME, None)  # a re-run in the same process
    register_feature_extractor(_TF_NAME, VisrepExtractor)
    return create_feature_extractor(_TF_NAME, ["embed"], cuda=False, verbose=False)


def bench_fid(args: argparse.Namespace) -> None:
    """FID feature extraction: GenerativeMetrics against torch-fidelity (module docstring)."""
    try:
        import torch_fidelity
        from torch_fidelity.utils import get_featuresdict_from_dataset
    except ImportError:
        print("fid: torch-fidelity is not installed; nothing to compare against")
        return
    from visrep.tasks.gan_metrics import GenerativeMetrics

    (c, h, w), n, bs = args.fid_shape, args.fid_images, args.fid_batch
    real = torch.from_numpy(_blobs(np.random.default_rng(0), n, c, h))
    fake = _blobs(np.random.default_rng(1), n, c, h, noise=40.0, cells=14)
    fake = torch.from_numpy((fake * 0.75).astype(np.uint8))  # finer, noisier and darker
    extractor = fid_extractor(args, real[:1000])
    tf_extractor = _register_torch_fidelity(extractor)
    real_ds, fake_ds = _Items(real.__getitem__, n), _Items(fake.__getitem__, n)
    print(
        f"== fid: visrep GenerativeMetrics vs torch-fidelity {torch_fidelity.__version__}, same "
        f"extractor (small_cnn {args.fid_channels}, random weights, BN statistics of real images, "
        f"{extractor.num_features}-d features; threads={torch.get_num_threads()}; {n} real + {n} "
        f"generated uint8 {c}x{h}x{w} images, batches of {bs}; {args.fid_rounds} rounds, ABBA) =="
    )

    def visrep_side(distance: bool) -> float | None:
        m = GenerativeMetrics(extractor, kid_subsets=10, kid_subset_size=min(1000, n))
        for images, update in ((real, m.update_real), (fake, m.update_fake)):
            for chunk in images.split(bs):
                update(chunk.float().div_(255))
        return float(m.fid.compute()) if distance else None

    def tf_side(distance: bool) -> float | None:
        if distance:
            out = torch_fidelity.calculate_metrics(
                input1=real_ds, input2=fake_ds, fid=True, feature_extractor=_TF_NAME,
                feature_layer_fid="embed", cuda=False, cache=False, verbose=False,
                save_cpu_ram=True, batch_size=bs,
            )  # fmt: skip
            return float(out[torch_fidelity.KEY_METRIC_FID])
        for ds in (real_ds, fake_ds):
            get_featuresdict_from_dataset(ds, tf_extractor, bs, False, True, False)
        return None

    ours, theirs = visrep_side(True), tf_side(True)  # also the warm-up
    print(f"  FID: visrep (torchmetrics) {ours:.6f} | torch-fidelity {theirs:.6f} | difference "
          f"{ours - theirs:.3e}")  # fmt: skip
    print(f"  {'row':<8} {'visrep img/s':>13} {'t-f img/s':>11} {'visrep/t-f':>11}")
    sides: dict[str, Callable[[bool], float | None]] = {"visrep": visrep_side, "t-f": tf_side}
    for row, distance in (("extract", False), ("fid", True)):
        times: dict[str, list[float]] = {"visrep": [], "t-f": []}
        for r in range(args.fid_rounds):
            for side in ("visrep", "t-f") if r % 2 == 0 else ("t-f", "visrep"):
                t = time.perf_counter()
                sides[side](distance)
                times[side].append(time.perf_counter() - t)
        v, t = (2 * n / statistics.median(times[s]) for s in ("visrep", "t-f"))
        print(f"  {row:<8} {v:13.1f} {t:11.1f} {v / t:11.3f}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "task": bench_task, "fid": bench_fid, "profile": bench_profile
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--sections", default="task,fid", help="comma-separated: " + ", ".join(SECTIONS))
    add("--rounds", type=int, default=2, help="task: ABBA rounds")
    add("--task-cases", default="digits_dcgan,fashion_wgangp", help=f"task: of {list(TASK_CASES)}")
    add("--task-epochs", type=int, default=None,
        help="task: epochs per run, the first untimed (default: 8 digits, 4 fashion)")  # fmt: skip
    add("--task-images", type=int, default=1500, help="task: synthetic 28x28 training images")
    add("--plain-data", choices=("items", "batched"), default="items",
        help="task, profile: the plain loop reads images one by one or a batch at once")  # fmt: skip
    add("--profile-case", default="digits_dcgan", choices=list(TASK_CASES), help="profile: case")
    add("--profile-epochs", type=int, default=12, help="profile: epochs (first not metered)")
    add("--fid-images", type=int, default=2000, help="fid: real (and generated) images")
    add("--fid-size", dest="fid_shape", default=(1, 28, 28), help="fid: CxHxW",
        type=lambda t: tuple(int(v) for v in t.lower().split("x")))  # fmt: skip
    add("--fid-channels", default="16,32,64", help="fid: small_cnn stage channels")
    add("--fid-batch", type=int, default=250, help="fid: images per batch")
    add("--fid-rounds", type=int, default=2, help="fid: ABBA rounds")
    args = ap.parse_args()
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    if sorted(set(names) - set(SECTIONS)):
        ap.error(f"--sections: choose from {list(SECTIONS)}, got {names}")
    for name in names:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
