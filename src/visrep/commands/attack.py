"""``visrep attack RUN_DIR``: FGSM, PGD and DeepFool robustness of a trained classification run.

Writes into the run directory: ``robustness.csv`` (accuracy per attack and budget),
``plots/robustness.png`` (accuracy-vs-epsilon curves and DeepFool's perturbation norms),
``plots/adversarial_examples.png`` (clean, amplified perturbation and adversarial images with
their predictions), the keys ``attack/...`` of ``metrics.json``, then rebuilds ``report.html``.
DeepFool's accuracy at a budget counts the samples whose minimal-L2 perturbation, measured in
``--norm``, exceeds it: an upper bound on the robust accuracy, not an attack at that budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from visrep.analysis.robustness import ATTACKS, Robustness, gradient_attack, read_robustness
from visrep.analysis.robustness import robustness as measure_robustness
from visrep.analysis.runs import load_run
from visrep.analysis.samples import class_names, classifier, split_dataset, spread_batch
from visrep.commands._common import (
    Command,
    Split,
    Which,
    check_positive,
    resolve_device,
    run_command,
)
from visrep.errors import ConfigError
from visrep.plots.robustness import (
    plot_adversarial_examples,
    plot_robustness,
    plot_robustness_comparison,
)
from visrep.report import build_report
from visrep.runs import RunDir

DEFAULT_EPS = {
    "linf": (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2),
    "l2": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
}
AttackName = Literal["fgsm", "pgd", "deepfool"]


def attack(
    run_dir: str,
    *,
    attacks: Sequence[AttackName] = ATTACKS,
    eps: Sequence[float] | None = None,
    norm: Literal["linf", "l2"] = "linf",
    split: Split = "test",
    max_samples: int = 512,
    steps: int = 20,
    step_size: float | None = None,
    overshoot: float = 0.02,
    max_iter: int = 50,
    batch_size: int = 256,
    which: Which = "best",
    device: str = "auto",
    seed: int = 0,
    compare: Sequence[str] = (),
) -> int:
    """FGSM, PGD and DeepFool robustness of a trained classification run.

    Args:
        run_dir: a run directory written by `visrep fit`, or a .ckpt inside one.
        attacks: the attacks, a subset of fgsm,pgd,deepfool.
        eps: the budgets in [0, 1] pixel units (default linf: 0,0.01,0.02,0.03,0.05,0.1,0.2;
            l2: 0,0.1,0.25,0.5,1,2).
        norm: the budget's norm.
        split: the split the samples come from.
        max_samples: attack N samples spread evenly over the split.
        steps: PGD iterations.
        step_size: PGD step (default 2.5 eps / steps).
        overshoot: DeepFool overshoot.
        max_iter: DeepFool iterations.
        batch_size: samples per attack batch.
        which: the checkpoint of the run.
        device: auto, cpu, cuda or cuda:N.
        seed: seed of PGD's random start.
        compare: run directories already attacked (their robustness.csv): their curves are
            overlaid on this run's in plots/robustness_compare.png.
    """
    eps_list = sorted(set(DEFAULT_EPS[norm] if eps is None else eps))
    if not eps_list or any(not e >= 0 or math.isinf(e) for e in eps_list):
        raise ConfigError(
            f"--eps must be comma-separated finite numbers >= 0, got {','.join(map(str, eps))}"
        )
    check_positive(max_samples=max_samples, steps=steps, max_iter=max_iter, batch_size=batch_size)
    if step_size is not None and not step_size > 0:
        raise ConfigError(f"--step_size must be > 0, got {step_size}")
    if not overshoot >= 0:
        raise ConfigError(f"--overshoot must be >= 0, got {overshoot}")
    names = list(dict.fromkeys(attacks))
    others = {Path(r).name: read_robustness(r) for r in compare}  # fail before attacking
    dev = resolve_device(device)
    loaded = load_run(run_dir, which)
    loaded.run.lock().check()  # before the attacks, not after
    net = classifier(loaded, "visrep attack")
    x, y = spread_batch(split_dataset(loaded, split), max_samples)
    net, x, y = net.to(dev), x.to(dev), y.to(dev)
    run = loaded.run
    with run.lock():
        torch.manual_seed(seed)
        result = measure_robustness(net, x, y, names, eps_list, norm, steps, step_size,
                                    overshoot, max_iter, batch_size)  # fmt: skip
        _write(run, result, split)
        with torch.no_grad():  # the grid: the first correctly classified samples
            right = (net(x[:batch_size]).argmax(1) == y[:batch_size]).nonzero().squeeze(1)[:6]
        attack_at = {  # FGSM/PGD at the largest budget
            n: gradient_attack(net, n, eps_list[-1], norm, steps, step_size)
            for n in names
            if n != "deepfool"
        }
        _plot(run, result, net, x[right], y[right], right, attack_at, class_names(loaded.task),
              others)  # fmt: skip
        report = build_report(run.root)
    print(f"{len(x)} {split} samples, clean accuracy {result.clean_acc:.4f}, budgets in {norm}")
    for name, pts in result.curves.items():
        print(f"  {name:<9}" + "  ".join(f"acc@{e:g}={a:.4f}" for e, a in pts))
    if result.deepfool is not None:
        d = result.deepfool_stats
        print(f"  deepfool rho={d['rho']:.4f} median ||r||_2={d['median_l2']:.4f} "
              f"success={d['success_rate']:.4f}")  # fmt: skip
    print(f"wrote {run.root / 'robustness.csv'}, {run.plots / 'robustness.png'}, {report}")
    return 0


def _write(run: RunDir, result: Robustness, split: str) -> None:
    """metrics.json without the previous attack's keys, plus this one's; robustness.csv."""
    kept = {k: v for k, v in run.read_metrics().items() if not k.startswith("attack/")}
    run.write_text(run.metrics_json, json.dumps(kept, indent=2, sort_keys=True) + "\n")
    run.update_metrics({**result.metrics(), "attack/split": split})
    run.write_text(run.root / "robustness.csv", result.csv())


def _plot(
    run: RunDir,
    result: Robustness,
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    right: Tensor,
    attack_at: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
    labels: Sequence[str],
    others: Mapping[str, Any],
) -> None:
    """robustness.png, robustness_compare.png (with --compare), adversarial_examples.png.

    ``x, y`` are the samples of the example grid (indices ``right`` of the attacked samples).
    """
    df = result.deepfool
    norms = None if df is None else df.r[df.success].flatten(1).norm(dim=1)
    plot_robustness(result.curves, result.clean_acc, result.norm, norms,
                    run.plots / "robustness.png")  # fmt: skip
    compare_png = run.plots / "robustness_compare.png"
    compare_png.unlink(missing_ok=True)
    if others:
        curves = {run.root.name: read_robustness(run.root), **others}
        plot_robustness_comparison(curves, result.norm, compare_png)
    grid = run.plots / "adversarial_examples.png"
    grid.unlink(missing_ok=True)
    if not len(x):
        return
    shown = {n: make(x, y) for n, make in attack_at.items()}
    if df is not None:
        shown["deepfool"] = df.x_adv[right]
    largest = max(e for pts in result.curves.values() for e, _ in pts)
    suffix = f" (fgsm/pgd at {result.norm} eps {largest:g})" if attack_at else ""
    with torch.no_grad():
        probs = {k: net(v).softmax(-1) for k, v in {"clean": x, **shown}.items()}
    plot_adversarial_examples(x, y, shown, probs, labels, grid, suffix)


COMMAND = Command(
    attack,
    messages={
        "eps": "--eps must be comma-separated finite numbers >= 0",
        "attacks": f"--attacks must be a comma-separated subset of {','.join(ATTACKS)}",
    },
)


def main(argv: Sequence[str]) -> int:
    """Run ``visrep attack ...``; returns the exit code."""
    return run_command(COMMAND, "visrep attack", argv)
