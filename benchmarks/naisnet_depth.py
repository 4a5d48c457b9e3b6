"""NAIS-Net pattern-dependent depth: inference throughput with adaptive depth vs fixed ``K_max``.

Trains a NAIS-Net briefly on the 8x8 digits (scikit-learn's bundled copy, no network) with
reprojection after every step, then times eval-mode forward passes twice in the same process:
every block unrolled for ``K_max`` stages (``tol=None``), and every block stopping each sample
once ``||x(k+1) - x(k)||_2 < tol`` (Ciccone et al., NeurIPS 2018). Prints the throughput ratio,
the mean depth per block, the largest output difference between the two and the share of the
model's FLOPs that adaptive depth saves (counted by ``visrep.analysis.stability.compute_profile``),
so the measured speed-up can be set against the arithmetic one.

    python benchmarks/naisnet_depth.py [--model both|naisnet|naisnet_fc] [--kmax 60] [--tol 1e-2]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from visrep.analysis.stability import compute_profile
from visrep.models import create_backbone
from visrep.models.layers.naisnet import iter_naisnet_blocks, reproject_


def _digits(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x.to(device), torch.tensor(d.target).to(device)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            reproject_(model)  # projected gradient descent (Sec. 5)
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _set_tol(model: nn.Module, tol: float | None) -> None:
    for _, b in iter_naisnet_blocks(model):
        b.tol = tol


def _throughput(model: nn.Module, x: torch.Tensor, batch: int, repeats: int) -> float:
    with torch.no_grad():
        model(x[:batch])  # warm-up
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            for xb in x.split(batch):
                model(xb)
        if x.is_cuda:
            torch.cuda.synchronize()
        return repeats * len(x) / (time.perf_counter() - t)


def _run(name: str, a: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> None:
    torch.manual_seed(a.seed)
    kw = {"width": 64} if name == "naisnet_fc" else {"channels": (16, 32)}
    model = create_backbone(
        name,
        in_chans=1,
        num_classes=10,
        img_size=8,
        steps=a.steps,
        max_steps=a.kmax,
        tol=a.tol,
        activation="tanh",
        **kw,
    ).to(x.device)
    acc = _train(model, x, y, a.epochs, a.seed)

    _set_tol(model, None)
    with torch.no_grad():
        ref = model(x)
    fixed = _throughput(model, x, a.batch_size, a.repeats)
    _set_tol(model, a.tol)
    with torch.no_grad():
        out = model(x)
    depths = {n: b.last_depth.float().mean().item() for n, b in iter_naisnet_blocks(model)}
    adaptive = _throughput(model, x, a.batch_size, a.repeats)
    profile = compute_profile(model, x[:1], depths)

    print(
        f"model={name} device={x.device} threads={a.threads} train_acc={acc:.3f} "
        f"K={a.steps} K_max={a.kmax} tol={a.tol} n={len(x)} batch={a.batch_size}"
    )
    print("mean depth per block: " + ", ".join(f"{n}={d:.1f}" for n, d in depths.items()))
    print(
        f"max |logits adaptive - logits K_max| = {(out - ref).abs().max().item():.2e}, "
        f"same argmax: {(out.argmax(1) == ref.argmax(1)).float().mean().item():.3f}"
    )
    print(
        f"fixed K_max: {fixed:.0f} samples/s   adaptive: {adaptive:.0f} samples/s   "
        f"ratio adaptive/fixed = {adaptive / fixed:.2f}x"
    )
    print(
        f"FLOPs/sample: fixed {profile.flops_fixed:,.0f}  adaptive {profile.flops_adaptive:,.0f}  "
        f"saved {100 * profile.saved_fraction:.1f}%  (FLOP ratio fixed/adaptive = "
        f"{profile.flops_fixed / profile.flops_adaptive:.2f}x)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["both", "naisnet", "naisnet_fc"], default="both")
    p.add_argument("--kmax", type=int, default=60, help="K_max at inference")
    p.add_argument("--steps", type=int, default=10, help="K in training")
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x, y = _digits(torch.device(a.device))
    for name in ["naisnet", "naisnet_fc"] if a.model == "both" else [a.model]:
        _run(name, a, x, y)


if __name__ == "__main__":
    main()
