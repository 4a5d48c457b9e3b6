"""DeepFool throughput: visrep's batched DeepFool against torchattacks' per-sample loop.

Both attack the same model and the same inputs, away from the model's own predictions (DeepFool's
``k_hat(x)``), with 50 iterations at most, overshoot 0.02 and all classes as candidates. Models:
``small_cnn`` trained for a few epochs on scikit-learn's digits (8x8 grey), and a random-init
``resnet18`` (small stem) on random 32x32 RGB images. Prints images/s of both, the ratio, and the
fooling rate of each and their median ||r||_2 on the samples both fool, so that speed is not
bought with a weaker attack.

    python benchmarks/deepfool.py [--batch 64] [--models small_cnn,resnet18] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchattacks
from sklearn.datasets import load_digits
from torch import nn

from visrep.attacks import deepfool, perturbation_norms
from visrep.models import ImageClassifier, create_backbone


def _digits_cnn(batch: int, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    backbone = create_backbone("small_cnn", in_chans=1, num_classes=10, img_size=8)
    net = ImageClassifier(backbone, [float(x.mean())], [float(x.std())]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xs, ys = x[:1400].to(device), y[:1400].to(device)
    for _ in range(5):
        for i in torch.randperm(len(xs)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(xs[i]), ys[i]).backward()
            opt.step()
    net.eval()
    acc = (net(x[1400:].to(device)).argmax(1).cpu() == y[1400:]).float().mean()
    print(f"small_cnn on digits: held-out accuracy {acc:.3f}")
    return net, x[1400 : 1400 + batch].to(device)


def _resnet(batch: int, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    backbone = create_backbone("resnet18", in_chans=3, num_classes=10, img_size=32)
    net = ImageClassifier(backbone, [0.5] * 3, [0.25] * 3).to(device).eval()
    return net, torch.rand(batch, 3, 32, 32, device=device)


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="small_cnn,resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    builders = {"small_cnn": _digits_cnn, "resnet18": _resnet}
    rows = []
    for name in args.models.split(","):
        net, x = builders[name](args.batch, device)
        for p in net.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            pred = net(x).argmax(1)
        deepfool(net, x[:2])  # warm-up
        ours, t_ours = _timed(lambda: deepfool(net, x, 0.02, 50, 10).x_adv, device)  # noqa: B023
        ref_attack = torchattacks.DeepFool(net, steps=50, overshoot=0.02)
        ref, t_ref = _timed(lambda: ref_attack(x, pred), device)  # noqa: B023
        with torch.no_grad():
            fooled = [net(adv).argmax(1) != pred for adv in (ours, ref)]
        both = fooled[0] & fooled[1]  # compare norms where both succeed
        stats = [
            (f.float().mean().item(), perturbation_norms(adv - x)[both].median().item())
            for f, adv in zip(fooled, (ours, ref), strict=True)
        ]
        rows.append((name, len(x) / t_ours, len(x) / t_ref, stats))
    print(
        f"{'model':<10} {'visrep img/s':>13} {'torchattacks img/s':>19} {'ratio':>7}   "
        "fooled / median ||r||_2 (visrep | torchattacks)"
    )
    for name, ours_ips, ref_ips, ((f1, n1), (f2, n2)) in rows:
        print(
            f"{name:<10} {ours_ips:>13.1f} {ref_ips:>19.1f} {ours_ips / ref_ips:>6.1f}x   "
            f"{f1:.3f} / {n1:.4f} | {f2:.3f} / {n2:.4f}"
        )


if __name__ == "__main__":
    main()
